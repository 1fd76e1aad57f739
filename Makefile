# sagashop. `make run` starts the whole system, `make test` runs every test, `make demo`
# runs the demo batch unattended, `make loadtest` the load test (options in ARGS). Each
# creates .venv and installs requirements.txt first.

SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: run test demo loadtest lint bench

$(STAMP): requirements.txt
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' \
		|| { echo "sagashop needs Python 3.11 or newer (found $(PYTHON))"; exit 1; }
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements.txt
	@touch $@

run: $(STAMP)
	@exec $(PY) -m shop.devenv run

test: lint
	@exec $(PY) -m shop.devenv test $(ARGS)

demo: $(STAMP)
	@exec $(PY) -m shop.devenv demo

bench: $(STAMP)
	@exec $(PY) -m shop.devenv bench $(ARGS)

loadtest: $(STAMP)
	@exec $(PY) -m shop.devenv loadtest $(ARGS)

lint: $(STAMP)
	@$(VENV)/bin/ruff format --check --quiet . && $(VENV)/bin/ruff check --quiet .
