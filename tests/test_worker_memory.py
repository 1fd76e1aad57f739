"""A worker's memory over failing sagas, in a real solo worker: what a failed task
leaves behind (Celery's exception info, a reference cycle) does not pile up."""

import json
import subprocess

import pytest

from shop.devenv import BIN
from tests import world
from tests.world import place

pytestmark = pytest.mark.django_db(transaction=True)

FAILING = 20


def garbage_of(cluster) -> dict:
    """What the cluster's only worker answers to `celery inspect garbage`, asked as
    an operator would."""
    out = subprocess.run(
        [str(BIN / "celery"), "-A", "shop", "inspect", "garbage", "--json", "-t", "10"],
        env=cluster.env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout
    [answer] = json.loads(out.splitlines()[0]).values()
    return answer


@pytest.mark.parametrize("broker", ["redis"], indirect=True)
def test_a_solo_worker_keeps_nothing_of_the_tasks_that_failed(start_cluster, broker):
    cluster = start_cluster(pool="solo", concurrency=1, CELERY_BROKER_URL=broker.url)
    world.product("TEA", units=100)
    broke = world.customer("0.00")
    # Each is refused at payment: a business error raised in a task, then undone.
    failed = world.wait_ended(
        [place(broke, {"TEA": 1}).pk for _ in range(FAILING)], timeout=60
    )
    # They did fail, as the test needs (else nothing would be left to collect).
    assert {saga.status for saga in failed} == {"COMPENSATED"}
    assert all("insufficient" in saga.error.lower() for saga in failed), failed
    # Tasks after the last failure, as any worker goes on to run.
    [ok] = world.wait_ended([place(world.customer(), {"TEA": 1}).pk], timeout=30)
    assert ok.status == "COMPLETED"

    answer = garbage_of(cluster)

    # Without the collection each failure's ExceptionInfo (tens of KB) would still
    # be held, until a full collection came round: rarely, in a loaded worker.
    assert answer["exception_infos"] <= 1, answer
    # What the worker loaded at start is frozen: collections skip it.
    assert answer["frozen_objects"] > 50_000, answer
