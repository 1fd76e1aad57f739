"""Crashes, outages and overload, for real: killed workers, a restarted or frozen
broker, a backlog far longer than any deadline, on Redis and on RabbitMQ.

Each test runs its own worker, relay and beat, and its own broker where it stops,
restarts or freezes one; it acts only on the processes it started.
"""

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import psycopg2
import pytest
from django.db import connection
from rest_framework.test import APIClient

from orders.models import Order, OrderStatus
from sagas.models import OutboxMessage as SagaOutbox
from sagas.models import Saga, SagaEventKind, SagaStep
from shop import brokers
from shop.devenv import RUN, LocalPostgres
from tests import world
from tests.cluster import BASE, Cluster, free_port, wait_until
from tests.conftest import TIMING
from tests.world import assert_consistent, ended, place_batch

pytestmark = [pytest.mark.faults, pytest.mark.django_db(transaction=True)]

BROKERS = ["redis", "rabbitmq"]


def own_cluster(test_db_name, broker, **env) -> Cluster:
    return Cluster(
        db_name=test_db_name,
        env={**TIMING, "CELERY_BROKER_URL": broker.url, "SAGA_FAULTS": "", **env},
    )


def busy(cluster: Cluster) -> tuple[list, list[int]]:
    """Start ``cluster``, supervised as `make run` is, with a batch of sagas under
    way (some of them ended); return the buyers and the sagas."""
    cluster.start(beat=True).supervise()
    world.product("TEA", price="3.00", units=1000)
    buyers = [world.customer("100.00") for _ in range(8)]
    sagas = place_batch(buyers, 40)
    wait_until(lambda: ended(sagas) >= 5, timeout=60, what="some sagas to end")
    return buyers, sagas


# CRASHES -----------------------------------------------------------------------------


@pytest.mark.parametrize("broker", BROKERS, indirect=True)
def test_killing_the_worker_mid_batch_loses_and_doubles_nothing(
    test_db_name, timing, broker
):
    # Steps slowed down a little, so that the kills land in the middle of the batch.
    cluster = own_cluster(
        test_db_name, broker, SAGA_FAULTS="inventory.reserve:delay=0.2s:1"
    )
    try:
        cluster.start(beat=True)
        world.product("TEA", price="3.00", units=1000)
        world.product("RARE", price="5.00", units=15)
        buyers = [world.customer("50.00") for _ in range(10)]
        sagas = place_batch(buyers, 60, rare=True)

        wait_until(
            lambda: ended(sagas) >= 10, timeout=60, what="a sixth of the batch to end"
        )
        cluster.kill("worker1", signal.SIGKILL)  # the whole worker and its pool
        time.sleep(1)
        cluster.start_worker()
        wait_until(
            lambda: ended(sagas) >= 35, timeout=90, what="half of the batch to end"
        )
        cluster.kill("worker2", signal.SIGKILL)
        cluster.start_worker()
        world.wait_ended(sagas, timeout=180)

        if broker.url.startswith("redis"):
            # Redis keeps a dead worker's messages out of sight for the visibility
            # timeout: the recovery sweep brought them back. RabbitMQ requeues them
            # at once, so there nothing may need recovering.
            assert Saga.objects.filter(events__kind=SagaEventKind.RECOVERED).exists()
        assert_consistent()
    finally:
        cluster.stop()


@pytest.mark.parametrize("broker", BROKERS, indirect=True)
def test_a_broker_restart_mid_batch_loses_and_doubles_nothing(
    test_db_name, timing, broker
):
    cluster = own_cluster(test_db_name, broker)
    try:
        buyers, sagas = busy(cluster)
        broker.stop()  # Redis here keeps nothing: every queued message is gone
        sagas += place_batch(buyers, 10)  # orders keep coming while it is down
        health = APIClient().get("/api/health/")
        assert health.status_code == 503
        time.sleep(3)
        broker.start()
        world.wait_ended(sagas, timeout=180)

        assert_consistent()
        world.wait_all_published(timeout=30)
    finally:
        cluster.stop()


@pytest.mark.parametrize("broker", ["rabbitmq"], indirect=True)
def test_a_message_rabbitmq_refuses_is_not_marked_published(
    test_db_name, timing, broker
):
    """Publisher confirms: while the broker refuses every message to the saga queue
    (a policy rejects publishes), the relay keeps the launch row pending; once the
    broker takes messages again, the row is published and the saga runs."""
    broker.ctl(
        "set_policy",
        "refuse",
        "^sagas$",
        '{"max-length": 0, "overflow": "reject-publish"}',
        "--apply-to",
        "queues",
    )
    cluster = own_cluster(test_db_name, broker)
    try:
        cluster.start()
        world.product("TEA", units=10)
        saga = world.place(world.customer(), {"TEA": 1})
        launch = SagaOutbox.objects.get(aggregate_id=str(saga.pk))
        wait_until(
            lambda: SagaOutbox.objects.get(pk=launch.pk).attempts >= 2,
            timeout=30,
            what="the relay to try the launch and be refused",
        )
        launch.refresh_from_db()
        assert launch.published_at is None
        assert "MessageNacked" in launch.last_error

        broker.ctl("clear_policy", "refuse")
        [saga] = world.wait_ended([saga.pk], timeout=90)
        assert SagaOutbox.objects.get(pk=launch.pk).published_at is not None
        assert_consistent()
    finally:
        cluster.stop()


# A FROZEN BROKER ---------------------------------------------------------------------


@pytest.mark.parametrize("broker", BROKERS, indirect=True)
def test_a_frozen_broker_hangs_nothing_and_loses_nothing(test_db_name, timing, broker):
    """A broker that stops answering (SIGSTOP: connections stay open, nothing is
    read) for 20 s: orders are still accepted, health says 503 within seconds, no
    transaction waits on the broker for long, and every saga ends after the thaw."""
    cluster = own_cluster(test_db_name, broker, BROKER_TIMEOUT="2")
    try:
        buyers, sagas = busy(cluster)
        publisher = publisher_connection(broker.url)  # connected before the freeze

        broker.freeze()
        frozen = time.monotonic()
        health, health_seconds = timed(lambda: APIClient().get("/api/health/"))
        placed, place_seconds = timed(lambda: place_batch(buyers, 10))
        # Any process's publish (a sweep's probe, an errback's report) gives up.
        publish_seconds = seconds_to_give_up(publisher)
        longest_transaction = 0.0
        while time.monotonic() - frozen < 20:
            longest_transaction = max(longest_transaction, oldest_transaction())
            time.sleep(0.5)
        broker.thaw()
        thawed = time.time()
        sagas += placed
        world.wait_ended(sagas, timeout=180)
        last_end = max(Saga.objects.filter(pk__in=sagas).values_list("finished_at"))
        report(
            f"frozen {broker.__class__.__name__}",
            health_status=health.status_code,
            health_seconds=round(health_seconds, 2),
            ten_orders_placed_while_frozen_seconds=round(place_seconds, 2),
            publish_gave_up_after_seconds=publish_seconds,
            longest_transaction_while_frozen_seconds=round(longest_transaction, 2),
            thaw_to_last_saga_end_seconds=round(last_end[0].timestamp() - thawed, 2),
        )

        assert health.status_code == 503
        assert health.json() == {"status": "error", "database": "ok", "broker": "error"}
        assert health_seconds < 6
        assert place_seconds < 10  # the outbox decouples orders from the broker
        assert publish_seconds is not None and publish_seconds < 10
        # The relay holds outbox row locks while it calls the broker: bounded.
        assert longest_transaction < 15
        assert_consistent()
        world.wait_all_published(timeout=30)
    finally:
        cluster.stop()


def publisher_connection(url: str):
    """A connection as the project configures one (shop.settings), opened now."""
    from kombu import Connection

    options = brokers.transport_options(url, timeout=2, visibility_timeout=600)
    publisher = Connection(url, connect_timeout=2, transport_options=options)
    publisher.ensure_connection(max_retries=1)
    publisher.default_channel  # noqa: B018 (opened now, while the broker answers)
    return publisher


def seconds_to_give_up(publisher) -> float | None:
    """How long a publish on a frozen broker takes to fail; None if it still waits
    after 30 s (it would wait for ever)."""
    outcome: list[float] = []

    def publish():
        started = time.monotonic()
        with contextlib.suppress(Exception):
            publisher.Producer().publish({"probe": 1}, routing_key="frozen-test")
        outcome.append(round(time.monotonic() - started, 2))

    thread = threading.Thread(target=publish, daemon=True)
    thread.start()
    thread.join(30)
    return outcome[0] if outcome else None


def timed(call):
    started = time.monotonic()
    result = call()
    return result, time.monotonic() - started


def oldest_transaction() -> float:
    """Seconds the oldest open transaction on the test database (but ours) has run."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT coalesce(max(extract(epoch FROM now() - xact_start)), 0)"
            " FROM pg_stat_activity WHERE datname = current_database()"
            " AND pid <> pg_backend_pid() AND xact_start IS NOT NULL"
        )
        return float(cursor.fetchone()[0])


# A RESTARTED DATABASE ----------------------------------------------------------------


@pytest.fixture
def own_postgres():
    """A PostgreSQL of the test's own (the project-local kind, under .run/), so the
    test may restart it: the suite's own database server is never touched."""
    RUN.mkdir(exist_ok=True)
    server = LocalPostgres(Path(tempfile.mkdtemp(prefix="test-", dir=RUN)))
    url = server.acquire()
    yield server, url
    server.release()
    shutil.rmtree(server.run, ignore_errors=True)
    shutil.rmtree(server.socket_dir, ignore_errors=True)


def test_workers_survive_a_postgresql_restart_with_no_failed_step(own_postgres):
    """Restarted between two batches, the database has closed every worker's
    connection: the next tasks reconnect first, so not one attempt fails. Restarted
    in the middle of a batch, what was in flight is retried; nothing is lost."""
    server, url = own_postgres
    env = {**os.environ, **TIMING, "DATABASE_URL": url, "SAGA_FAULTS": ""}
    manage = [sys.executable, "manage.py"]
    subprocess.run([*manage, "migrate", "-v0"], env=env, check=True, cwd=BASE)
    seeded = subprocess.run(
        [*manage, "seed_demo", "--json"],
        env=env,
        check=True,
        cwd=BASE,
        capture_output=True,
        text=True,
    )
    customers = json.loads(seeded.stdout)["customers"][:5]
    cluster = Cluster(db_name="sagashop", env=env)
    try:
        cluster.start(beat=True)
        api = cluster.start_web(free_port())
        first = place_over_http(api, customers, 20)
        wait_for_sagas(server, first)

        server.stop()  # every worker's connection is now closed under it
        server.start()
        second = place_over_http(api, customers, 20)
        wait_for_sagas(server, second)
        assert failed_attempts(server, second) == 0

        third = place_over_http(api, customers, 40)
        wait_until(
            lambda: completed(server, third) >= 5, timeout=60, what="some to end"
        )
        server.stop()  # mid-batch: steps in flight fail and are retried
        time.sleep(1)
        server.start()
        wait_for_sagas(server, third)
    finally:
        cluster.stop()

    sagas = first + second + third
    assert completed(server, sagas) == len(sagas)
    assert (
        sql(server, "SELECT count(*) FROM sagas_sagastep WHERE status='FAILED'")[0][0]
        == 0
    )
    reconciled = subprocess.run(
        [*manage, "reconcile"], env=env, cwd=BASE, capture_output=True, text=True
    )
    assert reconciled.returncode == 0, reconciled.stdout


def place_over_http(api: str, customers: list[dict], n: int) -> list[int]:
    def one(i: int) -> int:
        customer = customers[i % len(customers)]
        body = {
            "items": [{"sku": "SENCHA", "quantity": 1}],
            "payment_method_id": customer["payment_method_id"],
        }
        request = urllib.request.Request(
            f"{api}/api/orders/",
            data=json.dumps(body).encode(),
            method="POST",
            headers={
                "Authorization": f"Token {customer['token']}",
                "Content-Type": "application/json",
            },
        )
        with urllib.request.urlopen(request, timeout=30) as answer:
            return json.load(answer)["saga_id"]

    with ThreadPoolExecutor(max_workers=4) as pool:
        return list(pool.map(one, range(n)))


def sql(server: LocalPostgres, query: str, params=()) -> list[tuple]:
    """Read the test's own database (its password, its socket)."""
    with (
        contextlib.closing(
            psycopg2.connect(
                host=str(server.socket_dir),
                user="postgres",
                password=server.password,
                dbname="sagashop",
            )
        ) as db,
        db.cursor() as cursor,
    ):
        cursor.execute(query, params)
        return cursor.fetchall()


def completed(server: LocalPostgres, saga_ids: list[int]) -> int:
    query = "SELECT count(*) FROM sagas_saga WHERE id = ANY(%s) AND status='COMPLETED'"
    return sql(server, query, (saga_ids,))[0][0]


def wait_for_sagas(server: LocalPostgres, saga_ids: list[int]) -> None:
    wait_until(
        lambda: completed(server, saga_ids) == len(saga_ids),
        timeout=180,
        what=f"{len(saga_ids)} sagas to complete",
    )


def failed_attempts(server: LocalPostgres, saga_ids: list[int]) -> int:
    """Attempts that failed: every attempt beyond the one that succeeded."""
    query = (
        "SELECT coalesce(sum(attempts - 1), 0) FROM sagas_sagastep"
        " WHERE saga_id = ANY(%s)"
    )
    return sql(server, query, (saga_ids,))[0][0]


# OVERLOAD ----------------------------------------------------------------------------


def test_a_backlog_longer_than_every_deadline_cancels_no_healthy_order(start_cluster):
    """A thousand sagas on one worker process, with a 2 s deadline, 1 s of grace and 2
    recoveries: most wait in the queue many times longer than any of that (a few
    hundred no longer do: the engine drains 400 in about 5 s here). A backlog is not a
    loss: every healthy order is confirmed, none resent, none timed out. A tenth are
    declined at the payment: their failure's report waits behind the backlog too, long
    after the step's own message was taken, and is not taken for lost work either."""
    start_cluster(
        concurrency=1,
        SAGA_STEP_TIMEOUT="2",
        SAGA_RECOVERY_GRACE="1",
        SAGA_MAX_RECOVERIES="2",
    )
    world.product("TEA", price="1.00", units=10_000)
    buyers = [world.customer("1000.00") for _ in range(18)]
    buyers += [world.customer("0.00") for _ in range(2)]  # declined: 100 orders
    sagas = place_batch(buyers, 1000)
    world.wait_ended(sagas, timeout=600)

    waits = queue_waits(sagas)
    resent = SagaEventKind.RECOVERED
    declined = Order.objects.filter(customer__in=[b.user for b in buyers[18:]])
    report(
        "overload",
        orders=len(sagas),
        longest_queue_wait_seconds=round(max(waits), 2),
        sagas_resent=Saga.objects.filter(pk__in=sagas, events__kind=resent).count(),
        confirmed=Order.objects.filter(status=OrderStatus.CONFIRMED).count(),
        cancelled=Order.objects.filter(status=OrderStatus.CANCELLED).count(),
    )

    # The backlog was real: sagas waited for twice their deadline and grace (3 s)
    # and more, through as many sweeps (one a second) as that takes.
    assert max(waits) > 2 * (2 + 1)
    assert declined.count() == 100
    assert set(declined.values_list("status", flat=True)) == {OrderStatus.CANCELLED}
    healthy = Order.objects.exclude(pk__in=declined)
    assert set(healthy.values_list("status", flat=True)) == {OrderStatus.CONFIRMED}
    assert not Saga.objects.filter(pk__in=sagas, events__kind=resent).exists()
    # Nothing made stale: one dispatch each for the healthy (none when choreographed).
    healthy_sagas = healthy.values_list("saga_id", flat=True)
    assert not Saga.objects.filter(pk__in=healthy_sagas, generation__gt=1).exists()
    assert_consistent()


def queue_waits(saga_ids: list[int]) -> list[float]:
    """Per saga, the longest a step waited between being sent and starting."""
    waits = []
    for saga in Saga.objects.filter(pk__in=saga_ids):
        sent = saga.created_at
        longest = 0.0
        ran = SagaStep.objects.filter(saga=saga, started_at__isnull=False)
        for step in ran.order_by("index"):
            longest = max(longest, (step.started_at - sent).total_seconds())
            sent = step.finished_at
        waits.append(longest)
    return waits


def report(what: str, **numbers) -> None:
    """Print what a fault test measured (shown with -s or on failure)."""
    print(f"\n{what}: {json.dumps(numbers)}")
