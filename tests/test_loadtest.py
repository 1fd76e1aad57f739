"""A small load test end to end: a real WSGI server, worker and relay on the test
database, every scenario in every mode, and the report it writes."""

import csv
import io
import json

import pytest
from django.core.management import call_command

from orders.models import Order
from shop.devenv import PidFile
from shop.loadtest.plan import MODES, SCENARIOS
from shop.loadtest.plots import PLOTS
from tests.cluster import Cluster, free_port
from tests.world import assert_consistent

pytestmark = pytest.mark.django_db(transaction=True)

PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture
def system(test_db_name, tmp_path):
    """Web, worker and relay, their pids where the load test looks for them."""
    cluster = Cluster(db_name=test_db_name).start()
    try:
        url = cluster.start_web(free_port())
        pids = tmp_path / "pids"
        for name, process in cluster.procs.items():
            PidFile(pids, name).write(process.pid)
        yield url, pids
    finally:
        cluster.stop()


def test_a_small_load_test_writes_its_report_and_leaves_the_books_clean(
    system, tmp_path
):
    url, pids = system
    out, printed = tmp_path / "report", io.StringIO()

    call_command(
        "loadtest",
        f"--url={url}",
        "--stages=smoke=5",
        "--mix=" + ",".join(f"{name}=1" for name in SCENARIOS),
        f"--out={out}",
        f"--pids={pids}",
        "--clients=3",
        "--customers=2",
        "--timeout=120",
        stdout=printed,
    )

    with open(out / "requests.csv", newline="") as file:
        rows = list(csv.DictReader(file))
    records = json.loads((out / "requests.json").read_text())
    # One request per scenario in each mode, recorded alike in both files.
    assert sorted((r["mode"], r["scenario"]) for r in rows) == sorted(
        (mode, name) for mode in MODES for name in SCENARIOS
    )
    assert [(r["order_id"] or None, r["outcome"]) for r in rows] == [
        (str(r["order_id"]) if r["order_id"] else None, r["outcome"]) for r in records
    ]
    # Each outcome as its scenario expects, and each accepted order placed as recorded.
    for record in records:
        assert record["as_expected"], record
        assert record["outcome"] == SCENARIOS[record["scenario"]].expected
        if record["outcome"] == "REJECTED":
            assert record["http_status"] == 400
            continue
        assert record["e2e_ms"] > 0
        order = Order.objects.get(pk=record["order_id"])
        assert (order.mode, order.status) == (record["mode"], record["outcome"])
    assert Order.objects.count() == 4 * len(MODES)

    for name in PLOTS:
        picture = (out / name).read_bytes()
        assert picture.startswith(PNG), name
        assert len(picture) > 10_000, name
    page = (out / "index.html").read_text()
    assert all(f'src="{name}"' in page for name in PLOTS)
    assert "0 violations" in page

    summary = json.loads((out / "summary.json").read_text())
    assert summary["reconciliation"]["count"] == 0
    assert summary["every_saga_ended"]
    assert [(s["mode"], s["stage"], s["requests"]) for s in summary["summary"]] == [
        (mode, "smoke", 5) for mode in MODES
    ]
    for line in summary["summary"]:
        assert line["success_rate"] == 1.0
        assert {"web", "worker1", "relay", "postgres", "redis"} <= set(
            line["cpu_by_process"]
        )
        assert line["cpu_per_saga"] > 0
    assert f"report in {out}/index.html" in printed.getvalue()
    assert "reconciliation: 0 violations" in printed.getvalue()
    assert_consistent()
