"""Metrics, logs and tracing through real processes.

A batch of sagas with one of each outcome runs through a gunicorn, a worker (two pool
processes) and a relay sharing a Prometheus multiprocess directory, all logging JSON
lines: the web's /metrics counts each outcome exactly, and every line about a saga
carries it. Then the task messages themselves, and what Flower is told.
"""

import json
import threading
from collections import Counter
from dataclasses import dataclass, field

import pytest
import requests
from django.core.management import call_command
from django.db import connection
from kombu import Connection
from prometheus_client.parser import text_string_to_metric_families
from rest_framework.authtoken.models import Token

from orders.models import Order
from orders.models import OutboxMessage as OrdersOutbox
from sagas.messaging import subscriptions
from sagas.messaging.outbox import outbox_republish
from sagas.models import Saga, SagaStatus, SagaStep
from shop.celery import app
from tests import world
from tests.cluster import Cluster, free_port, wait_until
from tests.conftest import TIMING

pytestmark = [pytest.mark.faults, pytest.mark.django_db(transaction=True)]

METRICS_TOKEN = "scrape-me-0123456789-abcdefghijklmnop"
# The TCC try of the payment stalls past its deadline (the step timeout is 3 s), and
# a refund keeps failing as if the payment service were away: only one saga of the
# batch comes to either.
FAULTS = "payments.authorize:delay=5s:1,payments.refund:transient:1"
# What Celery's worker prints from its signal handler as it stops, where it must not
# log: the one plain line of a JSON log.
SIGNAL_NOTICES = ("worker: Warm shutdown (MainProcess)",)


@dataclass
class Batch:
    """What the batch left behind: its sagas by outcome, the metrics, the logs."""

    sagas: dict[str, Saga]
    orders: dict[int, int]  # saga id -> order id
    steps: dict[int, dict[str, SagaStep]]  # saga id -> its steps by name
    metrics: dict = field(default_factory=dict)  # (name, labels) -> value
    logs: dict[str, str] = field(default_factory=dict)  # process -> its output
    secrets: list[str] = field(default_factory=list)

    def lines(self, *processes: str) -> list[dict]:
        """The JSON lines of ``processes``, each with its ``process``."""
        return [
            {**json.loads(line), "process": process}
            for process in processes
            for line in self.logs[process].splitlines()
            if line.strip() and line not in SIGNAL_NOTICES
        ]


def scrape(url: str) -> dict:
    response = requests.get(
        f"{url}/metrics", headers={"Authorization": f"Bearer {METRICS_TOKEN}"}
    )
    response.raise_for_status()
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }


def select(metrics: dict, prefix: str, suffix: str = "") -> dict:
    """The samples of metrics named ``prefix...suffix``: {(name, labels): value}."""
    return {
        (name, labels): value
        for (name, labels), value in metrics.items()
        if name.startswith(prefix) and name.endswith(suffix)
    }


def key(name: str, **labels) -> tuple:
    return name, frozenset(labels.items())


@pytest.fixture(scope="module")
def batch(django_db_setup, django_db_blocker, tmp_path_factory) -> Batch:
    """Run once for the module, which reads what it kept: its rows are flushed
    after it, as a transactional test's are."""
    with django_db_blocker.unblock():
        cluster = Cluster(
            db_name=connection.settings_dict["NAME"],
            env={
                **TIMING,
                "SAGA_FAULTS": FAULTS,
                "PROMETHEUS_MULTIPROC_DIR": str(tmp_path_factory.mktemp("metrics")),
                "METRICS_TOKEN": METRICS_TOKEN,
                "LOG_FORMAT": "json",
            },
        )
        try:
            cluster.start()  # no beat: no sweep sends anything again
            return run_batch(cluster, cluster.start_web(free_port()))
        finally:
            cluster.stop()
            call_command("flush", interactive=False, verbosity=0)


def run_batch(cluster: Cluster, url: str) -> Batch:
    world.product("TEA", price="10.00", units=100)
    rich, poor = world.customer("1000.00"), world.customer("1.00")
    tokens = {c.user.pk: Token.objects.create(user=c.user).key for c in (rich, poor)}

    def place(customer, mode: str, ship_to: str = "JP") -> int:
        token = tokens[customer.user.pk]
        return world.place_over_http(url, customer, token, ship_to=ship_to, mode=mode)

    ids = {
        "completed": place(rich, "orchestration"),
        "refused": place(poor, "orchestration"),  # insufficient balance
        "timed out": place(rich, "tcc"),  # its payment's try stalls
        "failed": place(rich, "orchestration", ship_to="AQ"),  # refunds keep failing
        "choreographed": place(rich, "choreography"),
    }
    world.wait_ended(ids.values(), timeout=120)
    # A copy of the choreographed saga's first event: every consumer drops it.
    outbox_republish(
        list(
            OrdersOutbox.objects.filter(saga_id=ids["choreographed"]).filter(
                topic="OrderPlaced"
            )
        )
    )
    wait_until(
        lambda: len(select(scrape(url), "saga_inbox_duplicates_total")) == 1,
        timeout=30,
        what="the copies to be dropped",
    )
    wait_until(cluster.idle, timeout=30, what="the worker to finish")
    sagas = {outcome: Saga.objects.get(pk=pk) for outcome, pk in ids.items()}
    orders = dict(
        Order.objects.filter(saga_id__in=ids.values()).values_list("saga_id", "pk")
    )
    steps = {
        pk: {step.name: step for step in SagaStep.objects.filter(saga_id=pk)}
        for pk in ids.values()
    }
    found = Batch(sagas=sagas, orders=orders, steps=steps, metrics=scrape(url))
    found.secrets = [
        METRICS_TOKEN,
        *tokens.values(),
        connection.settings_dict["PASSWORD"],
        cluster.env["SECRET_KEY"],
    ]
    cluster.stop()  # every line written
    found.logs = {
        "web": cluster.log("web"),
        "worker": cluster.log("worker1"),
        "relay": cluster.log("relay"),
    }
    return found


# METRICS -----------------------------------------------------------------------------


def test_the_batch_ended_as_planned(batch):
    status = {outcome: saga.status for outcome, saga in batch.sagas.items()}

    assert status == {
        "completed": SagaStatus.COMPLETED,
        "refused": SagaStatus.COMPENSATED,
        "timed out": SagaStatus.COMPENSATED,
        "failed": SagaStatus.FAILED,
        "choreographed": SagaStatus.COMPLETED,
    }


def test_every_counter_of_the_sagas_counts_each_outcome_exactly(batch):
    """Counted by the web (started) and by both pool processes of the worker
    (everything else), read from the web's /metrics: they add up."""
    o, t, c = "orchestration", "tcc", "choreography"
    p = {"saga": "purchase"}
    expected = {
        key("saga_started_total", **p, mode=o): 3,
        key("saga_started_total", **p, mode=t): 1,
        key("saga_started_total", **p, mode=c): 1,
        key("saga_completed_total", **p, mode=o): 1,
        key("saga_completed_total", **p, mode=c): 1,
        key("saga_compensated_total", **p, mode=o): 1,
        key("saga_compensated_total", **p, mode=t): 1,
        key("saga_failed_total", **p, mode=o): 1,
        # the poor customer's charge, refused; the unserved shipment, refused
        key(
            "saga_step_failures_total",
            **p,
            mode=o,
            step="charge_payment",
            phase="action",
            kind="business",
        ): 1,
        key(
            "saga_step_failures_total",
            **p,
            mode=o,
            step="create_shipment",
            phase="action",
            kind="business",
        ): 1,
        # its refund: four attempts, three of them retried, then FAILED
        key(
            "saga_step_failures_total",
            **p,
            mode=o,
            step="charge_payment",
            phase="compensation",
            kind="transient",
        ): 4,
        key(
            "saga_step_retries_total",
            **p,
            mode=o,
            step="charge_payment",
            phase="compensation",
        ): 3,
        key("saga_step_compensations_total", **p, mode=o, step="reserve_stock"): 1,
        # the stalled try, timed out; every participant cancelled
        key(
            "saga_step_failures_total",
            **p,
            mode=t,
            step="try_payment",
            phase="action",
            kind="timeout",
        ): 1,
        key(
            "saga_step_timeouts_total", **p, mode=t, step="try_payment", phase="action"
        ): 1,
        key("saga_step_compensations_total", **p, mode=t, step="try_payment"): 1,
        key("saga_step_compensations_total", **p, mode=t, step="try_stock"): 1,
        key("saga_step_compensations_total", **p, mode=t, step="try_shipment"): 1,
        # the copy of OrderPlaced, dropped by the charge, its one consumer
        key(
            "saga_inbox_duplicates_total",
            app="payments",
            consumer="payments.charge_payment",
        ): 1,
    }
    subscribed = subscriptions.subscribers("OrderPlaced", {"mode": c})
    assert [s.consumer for s in subscribed] == ["payments.charge_payment"]

    counted = select(batch.metrics, "saga_", "_total")
    sent = select(counted, "saga_outbox_sent_total")  # the relay's: rows vary

    assert {k: v for k, v in counted.items() if k not in sent} == expected
    assert sum(sent.values()) > 0


def test_durations_are_observed_once_per_step_and_saga_done(batch):
    o, t, c = "orchestration", "tcc", "choreography"
    p = {"saga": "purchase"}
    steps = {
        (o, "charge_payment", "action"): 2,
        (o, "reserve_stock", "action"): 2,
        (o, "create_shipment", "action"): 1,
        (o, "confirm_order", "action"): 1,
        (o, "reserve_stock", "compensation"): 1,
        (t, "try_payment", "compensation"): 1,
        (t, "try_stock", "compensation"): 1,
        (t, "try_shipment", "compensation"): 1,
        **{
            (c, step, "action"): 1
            for step in (
                "charge_payment",
                "reserve_stock",
                "create_shipment",
                "commit_stock",
                "confirm_order",
            )
        },
    }
    expected_steps = {
        key("saga_step_duration_seconds_count", **p, mode=m, step=s, phase=ph): n
        for (m, s, ph), n in steps.items()
    }
    expected_sagas = {
        key("saga_duration_seconds_count", **p, mode=o, status="COMPLETED"): 1,
        key("saga_duration_seconds_count", **p, mode=c, status="COMPLETED"): 1,
        key("saga_duration_seconds_count", **p, mode=o, status="COMPENSATED"): 1,
        key("saga_duration_seconds_count", **p, mode=t, status="COMPENSATED"): 1,
    }

    assert select(batch.metrics, "saga_step_duration_seconds_count") == expected_steps
    assert select(batch.metrics, "saga_duration_seconds_count") == expected_sagas


def test_the_outboxes_have_nothing_left_and_requests_are_counted_by_view(batch):
    backlog = select(batch.metrics, "saga_outbox_backlog")
    ages = select(batch.metrics, "saga_outbox_oldest_pending_age_seconds")

    assert backlog and set(backlog.values()) == {0.0}
    assert ages and set(ages.values()) == {0.0}
    placed = key(
        "django_http_responses_total_by_status_view_method_total",
        method="POST",
        status="202",
        view="orders:list",
    )
    assert batch.metrics[placed] == 5


# LOGS --------------------------------------------------------------------------------


def test_every_line_of_the_web_the_worker_and_the_relay_is_json(batch):
    for process, text in batch.logs.items():
        for line in text.splitlines():
            if line.strip() and line not in SIGNAL_NOTICES:
                assert isinstance(json.loads(line), dict), (process, line)


def test_every_line_about_a_task_of_the_sagas_carries_its_saga(batch):
    """Celery's own lines (received, succeeded, raised, a time limit) and the
    engine's, in the worker's main process and in its pool processes."""
    modes = {s.pk: s.mode for s in batch.sagas.values()}
    about_tasks = [line for line in batch.lines("worker") if line.get("task_id")]

    assert len(about_tasks) > 50
    for line in about_tasks:
        saga_id = line.get("saga_id")
        assert saga_id in modes, line
        assert line["mode"] == modes[saga_id], line
        assert line["order_id"] == batch.orders[saga_id], line
    # received in the main process: the message's headers said which saga
    received = [line for line in about_tasks if line["message"].endswith("received")]
    assert {line["saga_id"] for line in received} == set(modes)
    timed_out = [line for line in about_tasks if "Soft time limit" in line["message"]]
    assert [line["saga_id"] for line in timed_out] == [batch.sagas["timed out"].pk]


def test_the_lines_of_one_saga_tell_its_story_across_processes(batch):
    saga = batch.sagas["failed"]
    lines = [
        line
        for line in batch.lines("web", "relay", "worker")
        if line.get("saga_id") == saga.pk
    ]
    steps = batch.steps[saga.pk]

    for line in lines:
        assert line["order_id"] == batch.orders[saga.pk]
        assert line["mode"] == "orchestration"
    events = [line["message"] for line in lines]
    assert events[0] == "saga.started"
    assert {line["process"] for line in lines} == {"web", "relay", "worker"}
    done = {
        line["step"]: line for line in lines if line["message"] == "saga.step.completed"
    }
    assert set(done) == {"charge_payment", "reserve_stock"}
    for step, line in done.items():
        assert line["duration_ms"] == pytest.approx(steps[step].duration_ms, abs=1)
        assert line["task_id"] == steps[step].task_id
    failed = [line for line in lines if line["message"] == "saga.step.failed"]
    assert [(f["step"], f["phase"], f["error_class"]) for f in failed] == [
        ("create_shipment", "action", "DestinationNotServed"),
        *[("charge_payment", "compensation", "TransientError")] * 4,
    ]
    assert events.count("saga.step.retry") == 3
    assert "saga.step.compensated" in events
    assert "saga.failed" in events
    # Celery's lines of its step tasks name the step each one works on
    for line in lines:
        if line.get("task", "").startswith("purchase."):
            assert line["step"] in steps or line["step"] == "end", line


def test_a_timeout_is_logged_with_its_error_class(batch):
    saga = batch.sagas["timed out"]
    [failed] = [
        line
        for line in batch.lines("worker")
        if line.get("saga_id") == saga.pk and line["message"] == "saga.step.failed"
    ]

    assert failed["kind"] == "timeout"
    assert failed["error_class"] == "SoftTimeLimitExceeded"
    assert failed["step"] == "try_payment"


def test_no_token_or_password_reaches_a_log(batch):
    assert all(batch.secrets)
    for process, text in batch.logs.items():
        for secret in batch.secrets:
            assert secret not in text, process


def test_a_refusal_tells_its_customer_why_but_keeps_the_amounts_out_of_the_logs(
    batch,
):
    refused = batch.sagas["refused"]
    assert "available" in refused.reason  # the customer reads it on the order
    for process, text in batch.logs.items():
        assert "available" not in text, process  # no balance in any line


# TRACING -----------------------------------------------------------------------------


def take(queue: str, *, purge: bool = False) -> object:
    """The next message on ``queue``, taken off it (no worker serves it here);
    ``purge``: the rest too, so that no later worker gets them."""
    with Connection(
        app.conf.broker_url, transport_options=app.conf.broker_transport_options
    ) as conn:
        simple = conn.SimpleQueue(queue)
        try:
            message = simple.get(timeout=20)
            message.ack()
            if purge:
                simple.clear()
            return message
        finally:
            simple.close()


def test_task_messages_carry_the_saga_and_say_it_to_flower(test_db_name, timing):
    """The relay sends each outbox row's headers with its task messages; the step
    tasks take the saga's id by keyword, and the reactions show it in their args."""
    relay = Cluster(db_name=test_db_name)
    relay.start_relay()  # no worker: the messages stay on their queues
    try:
        world.product("TEA", units=10)
        customer = world.customer()
        orchestrated = customer.order({"TEA": 1}).json()
        step = take("sagas")
        choreographed = customer.order({"TEA": 1}, mode="choreography").json()
        reaction = take("payments", purge=True)
    finally:
        relay.stop()

    assert step.headers["task"] == "purchase.charge_payment"
    assert step.headers["saga_id"] == orchestrated["saga_id"]
    assert step.headers["mode"] == "orchestration"
    assert step.headers["order_id"] == orchestrated["order_id"]
    args, kwargs, _ = step.decode()
    assert (args, kwargs) == ([], {"saga_id": orchestrated["saga_id"], "generation": 1})
    assert "'saga_id': " in step.headers["kwargsrepr"]

    assert reaction.headers["task"] == "payments.charge_payment"
    assert reaction.headers["saga_id"] == choreographed["saga_id"]
    assert reaction.headers["mode"] == "choreography"
    assert reaction.headers["order_id"] == choreographed["order_id"]
    assert reaction.headers["argsrepr"].startswith(
        f"(saga_id={choreographed['saga_id']}, OrderPlaced, "
    )


# FLOWER ------------------------------------------------------------------------------


def test_flower_hears_of_the_sagas_work_and_not_of_upkeep(test_db_name, timing):
    """Beat sends the relay's and the recovery's sweeps every second here: they run,
    and no event of theirs reaches Flower; the step tasks' events do, with their
    saga's id among their arguments."""
    cluster = Cluster(
        db_name=test_db_name,
        env={**TIMING, "CELERY_WORKER_SEND_TASK_EVENTS": "true"},
    )
    events: list[dict] = []
    with app.connection_for_read() as conn:
        receiver = app.events.Receiver(conn, handlers={"*": events.append})
        listening = threading.Thread(target=receiver.capture, daemon=True)
        listening.start()
        try:
            cluster.start(beat=True)
            world.product("TEA", units=10)
            placed = world.customer().order({"TEA": 1}).json()
            world.wait_ended([placed["saga_id"]])
            wait_until(
                lambda: cluster.received("sagas.recover_sagas") >= 3,
                timeout=30,
                what="beat's sweeps to run",
            )
        finally:
            receiver.should_stop = True
            cluster.stop()
            listening.join(10)

    names = {e["uuid"]: e["name"] for e in events if e.get("name")}
    by_name = Counter(names.values())
    assert by_name["purchase.charge_payment"] == 1
    assert by_name["purchase.confirm_order"] == 1
    assert not [n for n in by_name if n.startswith(("sagas.", "orders.", "shop."))]
    upkeep = {u for u, n in names.items() if not n.startswith("purchase.")}
    assert not [e for e in events if e.get("uuid") in upkeep]
    [received] = [
        e
        for e in events
        if e["type"] == "task-received" and e.get("name") == "purchase.charge_payment"
    ]
    assert f"'saga_id': {placed['saga_id']}" in received["kwargs"]
