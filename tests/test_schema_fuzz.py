"""The schema fuzzer: Schemathesis, every check on, against a live gunicorn on the test
database (the ``web`` fixture), as a customer and as staff. The orders it places are
real: the session's worker and relay run their sagas."""

import json
import re
import subprocess
from types import SimpleNamespace

import pytest
import requests
from django.contrib.auth import get_user_model

from orders.models import Order
from orders.tests.factories import order_make
from payments.services import payment_method_create
from shop.seeding import demo_data_seed
from tests.cluster import BASE, BIN

pytestmark = pytest.mark.django_db(transaction=True)

# Bounded for two shared cores: one seed (the same cases every run), at most this many
# cases per operation and phase; each run takes about half a minute.
SEED = 9
MAX_EXAMPLES = 25
_SUMMARY = re.compile(r"(\d+) generated, (\d+) passed")
_TESTED = re.compile(r"Selected: (\d+)/(\d+)\s+Tested: (\d+)")


@pytest.fixture
def shop():
    """The demo's data, and real objects of the first customer's for the fuzzer to
    reach past a 404: an order, its saga, the account, a spare card to deactivate."""
    data = demo_data_seed()
    alice = data["customers"][0]
    order = order_make(
        customer=get_user_model().objects.get(pk=alice["id"]),
        payment_method_id=alice["payment_method_id"],
        items=[{"sku": "SENCHA", "quantity": 1}],
    )
    spare = payment_method_create(customer_id=alice["id"], label="spare")
    return SimpleNamespace(
        customer=alice["token"],
        staff=data["staff"]["token"],
        ids={
            "path.order_id": order.pk,
            "path.saga_id": order.saga_id,
            "path.account_id": order.customer.account.pk,
            "path.method_id": spare.pk,
        },
        skus=[product["sku"] for product in data["products"]],
        method=alice["payment_method_id"],
    )


def fuzz(url: str, *, token: str, shop, tmp_path) -> subprocess.CompletedProcess:
    """`st run` with the project's schemathesis.toml, plus the ids of real objects and
    values that make real orders half of the time (random skus and cards are 400s)."""
    config = tmp_path / "schemathesis.toml"
    config.write_text(
        (BASE / "schemathesis.toml").read_text()
        + "\n[dictionaries.skus]\n"
        + f"values = {json.dumps(shop.skus)}\n"
        + "[dictionaries.methods]\n"
        + f"values = [{shop.method}]\n"
        + "[parameters]\n"
        + "".join(f'"{name}" = {value}\n' for name, value in shop.ids.items())
        + '"body.items[*].sku" = { dictionary = "skus", probability = 0.5 }\n'
        + '"body.payment_method_id" = { dictionary = "methods", probability = 0.5 }\n'
    )
    command = [
        str(BIN / "st"),
        f"--config-file={config}",
        "--no-color",
        "run",
        f"{url}/api/schema/",
        "--checks=all",
        f"--header=Authorization: Token {token}",
        f"--seed={SEED}",
        f"--max-examples={MAX_EXAMPLES}",
        "--generation-database=none",
        "--workers=1",
        "--output-truncate=false",
        # Every request and answer, for a failure's post-mortem: the test's tmp_path.
        "--report=har",
        f"--report-dir={tmp_path}",
    ]
    return subprocess.run(
        command, cwd=tmp_path, capture_output=True, text=True, timeout=600
    )


def assert_no_failure(run: subprocess.CompletedProcess) -> None:
    report = run.stdout + run.stderr
    summary = _SUMMARY.search(report)
    assert run.returncode == 0 and summary, report[-30_000:]
    generated, passed = map(int, summary.groups())
    assert generated == passed > 0, report[-30_000:]
    # Every operation in the schema was tested: none filtered out or skipped unseen.
    selected, total, tested = map(int, _TESTED.search(report).groups())
    assert selected == total == tested, report[-30_000:]


@pytest.mark.parametrize("who", ["customer", "staff"])
def test_every_answer_matches_the_schema(web, shop, who, tmp_path):
    orders_before = Order.objects.count()

    run = fuzz(web, token=getattr(shop, who), shop=shop, tmp_path=tmp_path)

    assert_no_failure(run)
    if who == "customer":
        # The fuzzer got past validation to real orders, not only to refusals.
        assert Order.objects.count() > orders_before


@pytest.mark.parametrize(
    "path",
    ["/api/orders/abc/", "/api/nothing/", "/api/orders/1/extra/", "/api/products//"],
)
def test_a_url_that_matches_no_route_under_api_is_a_json_404(web, path):
    # What the fuzzer cannot ask (it keeps to the schema's paths), through the server.
    response = requests.get(f"{web}{path}")

    assert response.status_code == 404
    assert response.headers["Content-Type"] == "application/json"
    assert response.json() == {"message": "Not found.", "extra": {}}


def test_elsewhere_an_unmatched_url_is_djangos_page(web):
    response = requests.get(f"{web}/nothing/")

    assert response.status_code == 404
    assert response.headers["Content-Type"].startswith("text/html")
