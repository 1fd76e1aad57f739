"""gunicorn's settings for the web process, read from the working directory by every
gunicorn started here (`make run`, the tests' servers); their command lines add the
address, workers and threads."""

import os

from shop.observability.logs import logging_config

# A request line (method, URL, version) of up to 8 KiB, gunicorn's largest limit and
# nginx's default, reaches Django, which answers bad query parameters in the API's
# error shape; past it gunicorn answers 414 in plain HTML. Headers keep gunicorn's
# limits (100 of 8190 bytes each); bodies are bounded by DATA_UPLOAD_MAX_MEMORY_SIZE.
limit_request_line = 8190

# gunicorn's own lines (its start, its workers, each request) as every process logs:
# LOG_FORMAT=json makes them JSON lines too.
logconfig_dict = logging_config(
    log_format=os.environ.get("LOG_FORMAT", "console"),
    level=os.environ.get("LOG_LEVEL", "INFO"),
)


def child_exit(server, worker) -> None:
    """A web process that ended: in Prometheus multiprocess mode its counters stay
    in the sum, its live gauges leave it."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(worker.pid)
