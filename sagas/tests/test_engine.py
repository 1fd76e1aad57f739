"""The engine's decisions, called directly: once-only steps, retry, compensate, give up.

These tests call the lifecycle services the Celery tasks call, in order, without a
worker; the end-to-end tests in tests/ prove the same through real processes.
"""

import contextlib
import threading
import time
from datetime import timedelta
from types import SimpleNamespace

import psycopg2
import pytest
from billiard.exceptions import (
    SoftTimeLimitExceeded,
    TimeLimitExceeded,
    WorkerLostError,
)
from django.db import IntegrityError, OperationalError, connection, transaction
from django.utils import timezone

from inventory.exceptions import InsufficientStock
from inventory.tests.factories import product_make
from orders.models import Order, OrderStatus
from orders.tests.factories import order_make
from payments.exceptions import InsufficientFunds
from payments.tests.factories import customer_make
from sagas import lifecycle, probes, recovery, registry, selectors
from sagas.definitions import Phase, SagaDefinition, Step
from sagas.exceptions import ActionNotAllowed, StepTimeout, TransientError
from sagas.failures import FailureKind, classify, failure_of
from sagas.models import (
    OutboxMessage,
    QueueProbe,
    QueueProbeArrival,
    Saga,
    SagaEventKind,
    SagaStatus,
    StepStatus,
)
from sagas.orchestration import engine, tasks
from sagas.orchestration.engine import StepOutcome
from sagas.orchestration.tasks import dispatch_signature
from shop.states import InvalidTransition

pytestmark = pytest.mark.django_db

PURCHASE = registry.definition("purchase")
CHARGE, RESERVE, SHIP, CONFIRM = range(4)


@pytest.fixture
def saga() -> Saga:
    product_make(sku="TEA", units=10)
    user, method = customer_make()
    order = order_make(customer=user, payment_method_id=method.pk)
    return Saga.objects.get(pk=order.saga_id)


def run(
    saga,
    index,
    phase=Phase.ACTION,
    *,
    generation=None,
    definition=PURCHASE,
    task_id="t",
):
    """What a step task does: by default as the saga's live chain would."""
    return engine.saga_step_run(
        saga_id=saga.pk,
        generation=generation or live_generation(saga),
        definition=definition,
        index=index,
        phase=phase,
        task_id=task_id,
    )


def fail(
    saga,
    index,
    error,
    phase=Phase.ACTION,
    *,
    generation=None,
    definition=PURCHASE,
    task_id="t",
):
    """What the errback and record_failure do when a step raises ``error``."""
    engine.saga_step_failed(
        saga_id=saga.pk,
        generation=generation or live_generation(saga),
        definition=definition,
        index=index,
        phase=phase,
        failure=failure_of(error, unit_name=definition.task_name(index, phase)),
        task_id=task_id,
    )
    saga.refresh_from_db()
    return saga


def live_generation(saga) -> int:
    return Saga.objects.values_list("generation", flat=True).get(pk=saga.pk)


def past_the_pivot(saga) -> None:
    """Run the steps up to and with the pivot: what follows only goes forward."""
    for index in (CHARGE, RESERVE, SHIP):
        run(saga, index)


def dispatches(saga) -> list[dict]:
    rows = OutboxMessage.objects.filter(aggregate_id=str(saga.pk)).order_by("pk")
    return [{"topic": r.topic, **r.payload} for r in rows]


def statuses(saga) -> list[str]:
    return list(saga.steps.order_by("index").values_list("status", flat=True))


def test_starting_a_saga_writes_its_launch_in_the_callers_transaction(saga):
    assert saga.status == SagaStatus.PENDING
    assert statuses(saga) == [StepStatus.PENDING] * 4
    [launch] = dispatches(saga)
    assert (launch["topic"], launch["direction"], launch["from_step"]) == (
        "SagaStarted",
        "forward",
        0,
    )


def test_a_saga_started_in_a_rolled_back_transaction_leaves_nothing():
    product_make(sku="TEA")
    user, _ = customer_make()
    with pytest.raises(RuntimeError), transaction.atomic():
        lifecycle.saga_start(name="purchase", context={"order_id": 1}, owner_id=user.pk)
        raise RuntimeError("the caller fails after starting the saga")
    assert not Saga.objects.exists()
    assert not OutboxMessage.objects.exists()


def test_steps_run_in_order_and_each_only_once(saga):
    assert [run(saga, i) for i in range(4)] == [StepOutcome.APPLIED] * 4
    saga.refresh_from_db()
    assert saga.status == SagaStatus.COMPLETED
    assert statuses(saga) == [StepStatus.SUCCEEDED] * 4
    # Delivered again later, every step finds the saga over and does nothing.
    assert [run(saga, i) for i in range(4)] == [StepOutcome.STALE] * 4
    assert list(saga.steps.values_list("attempts", flat=True)) == [1, 1, 1, 1]


def test_a_redelivery_of_a_done_step_lets_its_chain_go_on_while_the_saga_runs(saga):
    run(saga, CHARGE, task_id="first")
    assert run(saga, CHARGE, task_id="first") is StepOutcome.DUPLICATE
    assert run(saga, SHIP) is StepOutcome.STALE  # not its turn


def test_a_second_copy_of_a_done_step_stops_so_one_chain_lives(saga):
    # A resend or a republished dispatch: a copy with another task id finds the step
    # done by the first copy, which carries the saga on; this one stops its chain.
    run(saga, CHARGE, task_id="first")
    assert run(saga, CHARGE, task_id="resent") is StepOutcome.STALE
    run(saga, RESERVE, task_id="first-2")
    assert run(saga, RESERVE, task_id="resent-2") is StepOutcome.STALE


def test_a_business_error_compensates_what_succeeded_at_once(saga):
    run(saga, CHARGE)
    saga = fail(saga, RESERVE, InsufficientStock("TEA", 2, 0))
    assert saga.status == SagaStatus.COMPENSATING
    assert statuses(saga) == [
        StepStatus.SUCCEEDED,
        StepStatus.FAILED,
        "PENDING",
        "PENDING",
    ]
    assert dispatches(saga)[-1]["topic"] == "SagaCompensating"
    assert dispatches(saga)[-1]["steps"] == [CHARGE]

    assert run(saga, CHARGE, Phase.COMPENSATION) is StepOutcome.APPLIED
    assert run(saga, -1, Phase.END) is StepOutcome.APPLIED
    saga.refresh_from_db()
    assert saga.status == SagaStatus.COMPENSATED
    order = Order.objects.get(saga_id=saga.pk)
    assert order.status == OrderStatus.CANCELLED
    # The customer reads plain words; staff read the technical error on the saga.
    assert order.cancel_reason == "insufficient stock for TEA: 2 requested, 0 available"
    assert "purchase.reserve_stock: InsufficientStock" in saga.error


def test_a_transient_error_is_retried_with_backoff_until_the_budget_runs_out(saga):
    for attempt in (1, 2, 3):
        saga = fail(saga, CHARGE, TransientError("gateway"))
        assert saga.status == SagaStatus.PENDING
        retry = dispatches(saga)[-1]
        assert (retry["topic"], retry["from_step"]) == ("SagaStepRetry", CHARGE)
        assert (
            0.9 * 2 ** (attempt - 1) <= retry["countdown"] <= 1.1 * 2 ** (attempt - 1)
        )
    saga = fail(saga, CHARGE, TransientError("gateway"))
    assert saga.status == SagaStatus.COMPENSATING
    assert saga.steps.get(index=CHARGE).attempts == 4
    assert saga.events.filter(kind=SagaEventKind.RETRY_SCHEDULED).count() == 3
    assert saga.reason == "a service needed for the purchase was unavailable"


def test_outages_are_transient_and_bugs_unexpected():
    assert classify(OperationalError("connection lost")) is FailureKind.TRANSIENT
    assert classify(TransientError("gateway")) is FailureKind.TRANSIENT
    assert classify(ConnectionResetError()) is FailureKind.TRANSIENT
    assert classify(ValueError("boom")) is FailureKind.UNEXPECTED
    assert classify(IntegrityError("duplicate key")) is FailureKind.UNEXPECTED
    assert classify(InvalidTransition("x", "A", "B")) is FailureKind.UNEXPECTED


def test_a_bug_after_the_pivot_is_not_retried_forever(saga, settings):
    settings.SAGA_UNEXPECTED_RETRIES = 2
    past_the_pivot(saga)
    for _ in range(2):
        saga = fail(saga, CONFIRM, IntegrityError("duplicate key"))
        assert saga.status == SagaStatus.RUNNING  # retried, for now
    saga = fail(saga, CONFIRM, IntegrityError("duplicate key"))
    assert saga.status == SagaStatus.FAILED  # the third attempt: an operator's turn
    assert saga.steps.get(index=CONFIRM).status == StepStatus.FAILED


def test_outages_before_a_bug_do_not_use_up_the_bugs_own_budget(saga, settings):
    settings.SAGA_UNEXPECTED_RETRIES = 1
    past_the_pivot(saga)
    for _ in range(3):
        saga = fail(saga, CONFIRM, TransientError("orders down"))
    saga = fail(saga, CONFIRM, IntegrityError("duplicate key"))
    assert saga.status == SagaStatus.RUNNING  # the bug's first failure: retried
    saga = fail(saga, CONFIRM, IntegrityError("duplicate key"))
    assert saga.status == SagaStatus.FAILED


def test_a_saga_whose_steps_no_longer_match_its_definition_is_left_alone(saga):
    # As if the definition's first two steps had been swapped while it ran.
    saga.steps.filter(index=CHARGE).update(name="reserve_stock")
    saga.steps.filter(index=RESERVE).update(name="charge_payment")

    assert run(saga, CHARGE) is StepOutcome.STALE
    saga.refresh_from_db()
    assert "no longer match the definition" in saga.attention
    assert saga.steps.get(index=CHARGE).status == StepStatus.PENDING  # nothing ran
    with pytest.raises(ActionNotAllowed, match="no longer match"):
        lifecycle.saga_cancel(saga_id=saga.pk, actor="ops")


def test_a_saga_whose_step_rows_are_gone_is_flagged_not_run(saga):
    saga.steps.all().delete()  # by hand, in the database

    assert run(saga, CHARGE) is StepOutcome.STALE
    saga.refresh_from_db()
    assert "no longer match the definition" in saga.attention


def test_an_outage_after_the_pivot_is_retried_and_shows_it_needs_attention(
    saga, settings
):
    settings.SAGA_ATTENTION_ATTEMPTS = 3
    past_the_pivot(saga)
    saga = fail(saga, CONFIRM, TransientError("orders down"))
    saga = fail(saga, CONFIRM, TransientError("orders down"))
    assert saga.attention == ""
    saga = fail(saga, CONFIRM, TransientError("orders down"))
    assert saga.status == SagaStatus.RUNNING  # still retried: outages end
    assert "confirm_order has failed 3 times" in saga.attention
    needing = selectors.sagas_needing_attention(now=timezone.now())
    assert needing["attention"] == 1
    assert saga.events.filter(kind=SagaEventKind.ATTENTION).count() == 1
    fail(saga, CONFIRM, TransientError("orders down"))  # flagged once, not again
    assert saga.events.filter(kind=SagaEventKind.ATTENTION).count() == 1

    assert run(saga, CONFIRM) is StepOutcome.APPLIED
    saga.refresh_from_db()
    assert (saga.status, saga.attention) == (SagaStatus.COMPLETED, "")


def test_a_statement_timeout_counts_as_a_timeout(saga):
    with (
        pytest.raises(OperationalError) as caught,
        transaction.atomic(),
        connection.cursor() as cursor,
    ):
        cursor.execute("SET LOCAL statement_timeout = 10")
        cursor.execute("SELECT pg_sleep(1)")
    assert classify(caught.value) is FailureKind.TIMEOUT


def test_a_timeout_before_the_pivot_compensates_and_after_it_retries(saga):
    run(saga, CHARGE)
    run(saga, RESERVE)
    run(saga, SHIP)
    saga = fail(saga, CONFIRM, SoftTimeLimitExceeded())
    assert saga.status == SagaStatus.RUNNING  # past the pivot: only forward
    assert dispatches(saga)[-1]["topic"] == "SagaStepRetry"
    with pytest.raises(ActionNotAllowed, match="pivot"):
        lifecycle.saga_cancel(saga_id=saga.pk, actor="ops")

    product_make(sku="MATE", units=5)
    user, method = customer_make(username="bo")
    other = Saga.objects.get(
        pk=order_make(
            customer=user,
            payment_method_id=method.pk,
            items=[{"sku": "MATE", "quantity": 1}],
        ).saga_id
    )
    run(other, CHARGE)
    other = fail(other, RESERVE, SoftTimeLimitExceeded())
    assert other.status == SagaStatus.COMPENSATING


def test_a_business_error_after_the_pivot_needs_an_operator(saga, caplog):
    past_the_pivot(saga)
    saga = fail(saga, CONFIRM, InsufficientStock("TEA", 1, 0))
    assert saga.status == SagaStatus.FAILED
    assert "needs attention" in caplog.text and str(saga.pk) in caplog.text
    with pytest.raises(ActionNotAllowed, match="only a running saga"):
        lifecycle.saga_cancel(saga_id=saga.pk, actor="ops")

    lifecycle.saga_retry(saga_id=saga.pk, actor="ops")
    saga.refresh_from_db()
    assert saga.status == SagaStatus.RUNNING
    assert dispatches(saga)[-1]["topic"] == "SagaRetriedByOperator"
    assert run(saga, CONFIRM) is StepOutcome.APPLIED


def test_a_compensation_that_keeps_failing_fails_the_saga_and_can_be_retried(saga):
    run(saga, CHARGE)
    fail(saga, RESERVE, InsufficientStock("TEA", 2, 0))
    for _ in range(4):
        saga = fail(saga, CHARGE, TransientError("payments down"), Phase.COMPENSATION)
    assert saga.status == SagaStatus.FAILED
    assert saga.steps.get(index=CHARGE).compensation_attempts == 4

    lifecycle.saga_retry(saga_id=saga.pk, actor="ops")
    saga.refresh_from_db()
    assert saga.status == SagaStatus.COMPENSATING
    assert dispatches(saga)[-1]["steps"] == [CHARGE]
    run(saga, CHARGE, Phase.COMPENSATION)
    run(saga, -1, Phase.END)
    saga.refresh_from_db()
    assert saga.status == SagaStatus.COMPENSATED
    # The order is cancelled for the first cause, not for the failed compensation.
    assert "insufficient stock" in Order.objects.get(saga_id=saga.pk).cancel_reason


def test_an_operator_cancel_compensates_a_running_saga(saga):
    run(saga, CHARGE)
    lifecycle.saga_cancel(saga_id=saga.pk, actor="ops", reason="fraud check")
    saga.refresh_from_db()
    assert saga.status == SagaStatus.COMPENSATING
    assert "cancelled by ops: fraud check" in saga.error
    assert saga.reason == "cancelled by the shop: fraud check"  # not who did it
    assert saga.steps.get(index=RESERVE).status == StepStatus.PENDING  # never ran
    assert run(saga, RESERVE) is StepOutcome.STALE  # its queued message is ignored
    assert saga.events.filter(kind=SagaEventKind.OPERATOR_CANCEL, actor="ops").exists()
    with pytest.raises(ActionNotAllowed):
        lifecycle.saga_retry(saga_id=saga.pk, actor="ops")


def test_a_step_that_committed_before_its_task_failed_sends_on_what_follows(saga):
    # A soft time limit (or a broker lost) just after the step's commit: the chain
    # never sent the next step. The failure path sees the step done by this very
    # task and sends what follows itself, in the same generation.
    run(saga, CHARGE, task_id="late")
    generation = live_generation(saga)
    saga = fail(saga, CHARGE, SoftTimeLimitExceeded(), task_id="late")
    sent_on = dispatches(saga)[-1]
    assert (sent_on["topic"], sent_on["from_step"], sent_on["generation"]) == (
        "SagaStepContinued",
        RESERVE,
        generation,
    )
    assert saga.status == SagaStatus.RUNNING
    assert saga.steps.get(index=CHARGE).attempts == 1  # not counted as a failure
    # A failed second copy of the same step sends nothing: its first copy went on.
    count = OutboxMessage.objects.count()
    fail(saga, CHARGE, SoftTimeLimitExceeded(), task_id="copy")
    assert OutboxMessage.objects.count() == count


# RECOVERY ----------------------------------------------------------------------------


def overdue(saga, *, sent_ago: float = 3600.0, published_ago: float | None = None):
    """The saga's work went out ``sent_ago`` seconds ago and its deadline passed."""
    now = timezone.now()
    published = published_ago if published_ago is not None else sent_ago
    OutboxMessage.objects.filter(aggregate_id=str(saga.pk)).update(
        published_at=now - timedelta(seconds=published)
    )
    Saga.objects.filter(pk=saga.pk).update(
        sent_at=now - timedelta(seconds=sent_ago),
        deadline_at=now - timedelta(seconds=1),
    )


def queues_consumed(*, sent_ago: float, seen_ago: float = 600.0) -> None:
    """Every saga queue carried a probe sent ``sent_ago`` seconds ago to a worker
    ``seen_ago`` seconds ago."""
    now = timezone.now()
    for queue in probes.saga_queues():
        QueueProbeArrival.objects.create(
            queue=queue,
            sent_at=now - timedelta(seconds=sent_ago),
            reached_at=now - timedelta(seconds=seen_ago),
        )


def recovered(saga) -> int:
    return saga.events.filter(kind=SagaEventKind.RECOVERED).count()


def test_overdue_work_still_in_the_outbox_is_waited_for(saga):
    overdue(saga)
    OutboxMessage.objects.update(published_at=None)  # the relay has not sent it yet
    queues_consumed(sent_ago=1800)

    assert recovery.sagas_recover() == 1

    saga.refresh_from_db()
    assert (recovered(saga), saga.recoveries) == (0, 0)
    assert saga.deadline_at > timezone.now()


def test_overdue_work_is_never_resent_while_the_queues_may_still_hold_it(saga):
    # A backlog: the deadline passed long ago, but no probe shows the queues consumed
    # past the saga's work. However often the sweep runs, nothing is resent, nothing
    # made stale, nothing timed out.
    overdue(saga)
    generation = live_generation(saga)
    for _ in range(8):
        recovery.sagas_recover()
    assert QueueProbe.objects.filter(sent_at__isnull=False).exists()  # one was sent
    queues_consumed(sent_ago=7200)  # a probe sent before the saga's work arrived
    for _ in range(8):
        recovery.sagas_recover()

    saga.refresh_from_db()
    assert (recovered(saga), saga.recoveries) == (0, 0)
    assert (saga.status, saga.generation) == (SagaStatus.PENDING, generation)
    assert [d["topic"] for d in dispatches(saga)] == ["SagaStarted"]


def test_work_sent_before_the_queues_were_consumed_was_lost_and_is_resent(saga):
    overdue(saga)
    generation = live_generation(saga)
    queues_consumed(sent_ago=1800)

    assert recovery.sagas_recover() == 1

    saga.refresh_from_db()
    assert (recovered(saga), saga.recoveries) == (1, 1)
    resent = dispatches(saga)[-1]
    # The same generation: a copy still queued somewhere stays valid.
    assert (resent["topic"], resent["generation"]) == ("SagaRecovered", generation)
    assert saga.generation == generation
    assert saga.deadline_at > timezone.now()
    assert recovery.sagas_recover() == 0  # not overdue any more


def test_work_sent_just_before_a_probe_is_not_proven_lost(saga, settings):
    # The commit is stamped before the chain publishes, and hosts' clocks differ:
    # a probe must follow the work by the grace to prove it lost.
    overdue(saga, sent_ago=1800 + settings.SAGA_RECOVERY_GRACE / 2)
    queues_consumed(sent_ago=1800)
    recovery.sagas_recover()
    assert recovered(saga) == 0


def test_work_that_waited_out_a_countdown_needs_a_longer_settled_probe(saga, settings):
    # A retry waits inside the worker that took it until it is due, then for a free
    # process: up to the longest a step may run.
    fail(saga, CHARGE, TransientError("gateway"))
    overdue(saga)
    queues_consumed(sent_ago=1800, seen_ago=settings.SAGA_RECOVERY_GRACE + 1)
    recovery.sagas_recover()
    assert recovered(saga) == 0
    queues_consumed(sent_ago=1800, seen_ago=600)
    recovery.sagas_recover()
    assert recovered(saga) == 1


def test_a_probe_counts_only_once_it_has_settled(saga):
    overdue(saga)
    queues_consumed(sent_ago=1800, seen_ago=0)  # just seen: a message taken before
    recovery.sagas_recover()  # it may not have started yet
    assert recovered(saga) == 0


def test_a_probe_arriving_every_sweep_does_not_hide_the_one_that_settled(saga):
    # Probes come and go every few seconds while sagas are overdue: the newest one
    # has not settled yet, an older one has, and it is enough.
    overdue(saga)
    queues_consumed(sent_ago=1800, seen_ago=60)
    queues_consumed(sent_ago=5, seen_ago=0)
    recovery.sagas_recover()
    assert recovered(saga) == 1


def test_work_lost_again_and_again_counts_as_a_timeout(saga, settings):
    overdue(saga)
    queues_consumed(sent_ago=1800)
    Saga.objects.filter(pk=saga.pk).update(recoveries=settings.SAGA_MAX_RECOVERIES)
    recovery.sagas_recover()
    saga.refresh_from_db()
    assert saga.status == SagaStatus.COMPENSATING
    assert "its work was lost" in saga.error
    assert saga.reason == "the purchase could not be completed in time"


def report_sent(saga, *, generation=None, at=None) -> None:
    """What the errback records once it has sent a failed charge's report."""
    engine.saga_report_sent(
        saga_id=saga.pk,
        generation=generation or live_generation(saga),
        definition=PURCHASE,
        index=CHARGE,
        phase=Phase.ACTION,
        at=at or timezone.now(),
    )


def test_a_failure_report_still_queued_is_not_taken_for_lost_work(saga):
    # The step's message was taken long ago and failed; its errback sent the report,
    # which waits behind a backlog. The probe proves the step's message gone, not the
    # report: the sweep must wait for the report.
    overdue(saga, sent_ago=1800)
    queues_consumed(sent_ago=600)
    report_sent(saga)
    Saga.objects.filter(pk=saga.pk).update(deadline_at=timezone.now())  # overdue

    recovery.sagas_recover()

    saga.refresh_from_db()
    assert (recovered(saga), saga.recoveries) == (0, 0)
    assert saga.sent_at > timezone.now() - timedelta(seconds=60)


def test_the_errback_records_its_report_once_it_has_sent_it(saga, monkeypatch):
    sent = []
    monkeypatch.setattr(  # the broker's part: what goes out, and when
        tasks.record_failure,
        "apply_async",
        lambda **options: sent.append((timezone.now(), options["kwargs"])),
    )
    overdue(saga, sent_ago=1800)
    request = SimpleNamespace(task=PURCHASE.task_name(CHARGE, Phase.ACTION), id="t1")

    tasks.step_failed(
        request, InsufficientFunds("9.00", "1.00"), None, saga.pk, saga.generation
    )

    saga.refresh_from_db()
    [(at, report)] = sent
    assert (report["saga_id"], report["kind"]) == (saga.pk, FailureKind.BUSINESS)
    assert saga.sent_at >= at  # never earlier than the report went
    assert saga.deadline_at > timezone.now()


@pytest.mark.parametrize("lost", [WorkerLostError(), TimeLimitExceeded(60)])
def test_a_failure_in_the_main_process_sends_its_report_and_records_nothing(
    saga, monkeypatch, lost
):
    # Celery calls this errback in the worker's own loop: no database wait there.
    sent = []
    monkeypatch.setattr(
        tasks.record_failure,
        "apply_async",
        lambda **options: sent.append(options["kwargs"]),
    )
    overdue(saga, sent_ago=1800)
    before = Saga.objects.values_list("sent_at", flat=True).get(pk=saga.pk)
    request = SimpleNamespace(task=PURCHASE.task_name(CHARGE, Phase.ACTION), id="t1")

    tasks.step_failed(request, lost, None, saga.pk, saga.generation)

    assert [report["saga_id"] for report in sent] == [saga.pk]
    assert Saga.objects.values_list("sent_at", flat=True).get(pk=saga.pk) == before


def test_a_failure_report_only_moves_times_later(saga):
    overdue(saga, sent_ago=1800)
    later = timezone.now() + timedelta(hours=1)  # a retry's long countdown
    Saga.objects.filter(pk=saga.pk).update(sent_at=later, deadline_at=later)
    report_sent(saga)
    saga.refresh_from_db()
    assert (saga.sent_at, saga.deadline_at) == (later, later)


@pytest.mark.parametrize("moved_on", ["generation", "failed"])
def test_a_failure_report_leaves_a_saga_that_moved_on_alone(saga, moved_on):
    overdue(saga, sent_ago=1800)
    generation = live_generation(saga)
    if moved_on == "failed":
        Saga.objects.filter(pk=saga.pk).update(
            status=SagaStatus.FAILED, deadline_at=None
        )
    else:  # the report's unit belongs to a dispatch that a later one replaced
        Saga.objects.filter(pk=saga.pk).update(generation=generation + 1)
    before = Saga.objects.values_list("sent_at", "deadline_at").get(pk=saga.pk)
    report_sent(saga, generation=generation)
    assert Saga.objects.values_list("sent_at", "deadline_at").get(pk=saga.pk) == before


def test_recovery_counts_from_when_the_relay_sent_the_work(saga):
    overdue(saga, sent_ago=3600, published_ago=0)  # the relay only just sent it
    queues_consumed(sent_ago=1800)

    recovery.sagas_recover()

    saga.refresh_from_db()
    assert saga.recoveries == 0  # not sent again: it only just went out
    assert saga.sent_at > timezone.now() - timedelta(seconds=5)


def test_work_that_can_never_be_sent_needs_attention(saga):
    overdue(saga)
    OutboxMessage.objects.update(
        published_at=None, dead_at=timezone.now(), last_error="no saga 'gone'"
    )
    queues_consumed(sent_ago=1800)

    recovery.sagas_recover()

    saga.refresh_from_db()
    assert "its work cannot be sent: no saga 'gone'" in saga.attention
    needing = selectors.sagas_needing_attention(now=timezone.now())
    assert needing["attention"] == 1


def test_probes_go_one_per_queue_until_one_arrives(monkeypatch):
    # A queue no worker reads: the session's worker, if one runs, must not answer.
    monkeypatch.setattr(probes, "saga_queues", lambda: ["test-probes-nobody-reads"])
    now = timezone.now()
    assert probes.probes_send(now=now) == len(probes.saga_queues())  # a real broker
    assert probes.probes_send(now=now) == 0  # one on its way is enough
    for queue in probes.saga_queues():
        probes.probe_arrived(queue=queue, sent_at=now, now=now)
    assert probes.queues_consumed_up_to(now=now + timedelta(hours=1), settle=1) == now
    assert probes.probes_send(now=now + timedelta(seconds=1)) == len(
        probes.saga_queues()
    )


# WHAT THE REVIEW FOUND ---------------------------------------------------------------


def first(context):
    return {"first": "done"}


def undo_first(context):
    OutboxMessage.objects.create(topic="FirstUndone", aggregate_id="test", payload={})


def second(context):
    raise TransientError("never works")


NO_HOOK = registry.register(
    SagaDefinition(
        name="test_no_hook",
        steps=(Step("first", first, compensate=undo_first), Step("second", second)),
    )
)


def test_a_saga_without_an_end_hook_still_finishes_compensating():
    saga = lifecycle.saga_start(name="test_no_hook", context={})
    run(saga, 0, definition=NO_HOOK)
    saga = fail(saga, 1, InsufficientStock("X", 1, 0), definition=NO_HOOK)
    backward = OutboxMessage.objects.filter(topic="SagaCompensating").get()
    chain = dispatch_signature(backward.payload)  # the relay can build it
    assert [task.name for task in chain.tasks] == [
        "test_no_hook.undo_first",
        "test_no_hook.compensated",
    ]

    run(saga, 0, Phase.COMPENSATION, definition=NO_HOOK)
    assert run(saga, -1, Phase.END, definition=NO_HOOK) is StepOutcome.APPLIED
    saga.refresh_from_db()
    assert saga.status == SagaStatus.COMPENSATED
    assert OutboxMessage.objects.filter(topic="FirstUndone").count() == 1


def test_a_task_or_failure_of_a_replaced_dispatch_is_stale(saga):
    old = live_generation(saga)
    saga = fail(saga, CHARGE, TransientError("down"))  # a retry: a new dispatch
    assert live_generation(saga) == old + 1
    # The first copy's chain, delivered late, does nothing; its failure counts not.
    assert run(saga, CHARGE, generation=old) is StepOutcome.STALE
    fail(saga, CHARGE, TransientError("down"), generation=old)
    assert saga.steps.get(index=CHARGE).attempts == 1
    assert run(saga, CHARGE) is StepOutcome.APPLIED


def test_two_copies_failing_count_as_one_attempt(saga):
    generation = live_generation(saga)
    fail(saga, CHARGE, TransientError("down"), generation=generation)
    fail(saga, CHARGE, TransientError("down"), generation=generation)
    assert saga.steps.get(index=CHARGE).attempts == 1
    assert OutboxMessage.objects.filter(topic="SagaStepRetry").count() == 1


def test_one_broken_saga_does_not_stop_the_recovery_of_the_others(saga):
    overdue(saga)
    queues_consumed(sent_ago=1800)
    past = timezone.now() - timedelta(seconds=1)
    ghost = Saga.objects.create(name="no_longer_defined", deadline_at=past)

    assert recovery.sagas_recover() == 2

    saga.refresh_from_db()
    assert saga.recoveries == 1
    ghost.refresh_from_db()
    assert ghost.deadline_at > timezone.now()  # looked at again later, not every sweep
    assert "the recovery sweep cannot handle it" in ghost.attention
    assert ghost.events.filter(kind=SagaEventKind.ATTENTION).count() == 1


def test_turning_to_compensation_gives_a_fresh_recovery_budget(saga):
    run(saga, CHARGE)
    Saga.objects.filter(pk=saga.pk).update(recoveries=4)
    saga = fail(saga, RESERVE, InsufficientStock("TEA", 1, 0))
    assert (saga.status, saga.recoveries) == (SagaStatus.COMPENSATING, 0)


def test_the_end_hook_has_its_own_retry_budget_renewed_by_an_operator(saga):
    fail(saga, CHARGE, InsufficientStock("TEA", 1, 0))
    for _ in range(4):
        saga = fail(saga, -1, TransientError("orders down"), Phase.END)
    assert (saga.status, saga.end_attempts) == (SagaStatus.FAILED, 4)

    lifecycle.saga_retry(saga_id=saga.pk, actor="ops")
    saga = fail(saga, -1, TransientError("still down"), Phase.END)
    assert (saga.status, saga.end_attempts) == (SagaStatus.COMPENSATING, 1)


# DEADLINES, WITHOUT CELERY'S TIME LIMITS --------------------------------------------


def slow_in_python(context):
    OutboxMessage.objects.create(topic="SlowStepWrote", aggregate_id="test", payload={})
    time.sleep(0.4)  # a slow call outside the database: only the late check sees it


def slow_in_sql(context):
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_sleep(2)")


SLOW = registry.register(
    SagaDefinition(
        name="test_slow",
        steps=(
            Step("slow_in_python", slow_in_python, timeout=0.2, pivot=True),
            Step("slow_in_sql", slow_in_sql, timeout=0.2),
        ),
    )
)


@pytest.mark.django_db(transaction=True)
def test_a_step_that_overran_its_deadline_does_not_commit():
    saga = lifecycle.saga_start(name="test_slow", context={})
    with pytest.raises(StepTimeout):
        run(saga, 0, definition=SLOW)
    assert not OutboxMessage.objects.filter(topic="SlowStepWrote").exists()
    assert saga.steps.get(index=0).status == StepStatus.PENDING


@pytest.mark.django_db(transaction=True)
def test_a_database_wait_past_the_deadline_is_cut_off_as_a_timeout():
    saga = lifecycle.saga_start(name="test_slow", context={})
    Saga.objects.filter(pk=saga.pk).update(current_step=1)
    started = time.monotonic()
    with pytest.raises(OperationalError) as caught:
        run(saga, 1, definition=SLOW)
    assert time.monotonic() - started < 1.5  # cut at ~0.2 s, not after the 2 s sleep
    assert classify(caught.value) is FailureKind.TIMEOUT


@pytest.mark.django_db(transaction=True)
def test_a_report_whose_saga_row_is_held_goes_unrecorded_within_the_wait(
    monkeypatch, caplog
):
    # The recovery sweep holds the row: the errback waits REPORT_WAIT_MS, no more,
    # and the report still goes.
    sent = []
    monkeypatch.setattr(
        tasks.record_failure,
        "apply_async",
        lambda **options: sent.append(options["kwargs"]),
    )
    saga = lifecycle.saga_start(name="test_slow", context={})
    before = Saga.objects.values_list("sent_at", flat=True).get(pk=saga.pk)
    request = SimpleNamespace(task=SLOW.task_name(0, Phase.ACTION), id="t1")
    holder = psycopg2.connect(**connection.get_connection_params())
    with contextlib.closing(holder), holder.cursor() as cursor:
        cursor.execute("SELECT id FROM sagas_saga WHERE id = %s FOR UPDATE", [saga.pk])

        # In a thread of its own: an errback that waited for the row would hang
        # here for good, so the test gives it 5 s and then fails.
        def fail() -> None:
            try:
                tasks.step_failed(request, TransientError("x"), None, saga.pk, 1)
            finally:
                connection.close()  # the thread's own

        errback = threading.Thread(target=fail)
        errback.start()
        errback.join(timeout=5)
        gave_up = not errback.is_alive()
        holder.rollback()  # frees the row, and a hung errback with it
        errback.join()

    assert gave_up
    assert [report["saga_id"] for report in sent] == [saga.pk]
    assert Saga.objects.values_list("sent_at", flat=True).get(pk=saga.pk) == before
    assert "failure report was sent is not recorded" in caplog.text
