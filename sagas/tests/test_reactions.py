"""How one choreographed reaction runs, on the real database: a refusal past the
pivot leaves no trace but the operator's note, an ended saga takes no more, and the
reaction records its outcome, and clears what held its step up, with its work."""

import dataclasses
import threading
import time
import uuid
from datetime import timedelta

import pytest
from django.db import connection, connections
from django.utils import timezone
from prometheus_client import REGISTRY

from inventory.tests.factories import product_make
from orders.models import InboxMessage as OrdersInbox
from orders.models import Order, OrderStatus
from orders.tests.factories import order_make
from payments.models import InboxMessage as PaymentsInbox
from payments.models import OutboxMessage as PaymentsOutbox
from payments.models import Payment
from payments.tests.factories import customer_make
from sagas import lifecycle
from sagas.choreography import handlers, tasks, tracker
from sagas.definitions import Mode
from sagas.exceptions import BusinessError
from sagas.messaging.outbox import outbox_emit
from sagas.models import Barrier, Saga, SagaStatus, StepStatus
from sagas.models import OutboxMessage as SagaOutbox

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def saga():
    product_make(sku="TEA", price="10.00", units=10)
    user, method = customer_make(balance="100.00")
    order = order_make(customer=user, payment_method_id=method.pk, mode="choreography")
    return Saga.objects.get(pk=order.saga_id)


def message(saga: Saga, topic: str) -> dict:
    return {
        "message_id": str(uuid.uuid4()),
        "topic": topic,
        "aggregate_id": str(saga.context["order_id"]),
        "payload": {},
        "headers": {"saga_id": saga.pk, "mode": Mode.CHOREOGRAPHY},
        "created_at": timezone.now().isoformat(),
    }


def handler(name: str) -> handlers.Handler:
    return next(h for h in handlers.declared(saga="purchase") if h.name == name)


def test_a_step_refused_after_the_pivot_leaves_nothing_but_a_note_and_is_tried_again(
    saga,
):
    confirm = handler("orders.confirm_order")

    def refusing(context):
        raise BusinessError("the order desk is closed")

    refusing.__name__ = confirm.function.__name__
    committed = message(saga, "StockCommitted")

    with pytest.raises(handlers.RefusedAfterPivot):
        handlers.handle(dataclasses.replace(confirm, function=refusing), committed)

    # Rolled back whole: the copy that comes next is no duplicate, no fence stops it.
    assert not OrdersInbox.objects.exists()
    assert not Barrier.objects.filter(saga=saga, branch="confirm_order").exists()
    assert Order.objects.get().status == OrderStatus.PENDING
    saga.refresh_from_db()
    assert saga.attention == "confirm_order was refused: the order desk is closed"

    handlers.handle(confirm, committed)  # tried again, and it goes through

    assert Order.objects.get().status == OrderStatus.CONFIRMED


def test_an_event_that_comes_after_its_saga_ended_does_nothing(saga):
    Saga.objects.filter(pk=saga.pk).update(status=SagaStatus.COMPENSATED)

    handlers.handle(handler("payments.charge_payment"), message(saga, "OrderPlaced"))

    assert not Payment.objects.exists()
    assert not Barrier.objects.filter(saga=saga).exists()


def test_a_step_getting_done_clears_its_losses_and_the_note(saga):
    # Losses are counted per step: those of one step must not time out the next.
    Saga.objects.filter(pk=saga.pk).update(recoveries=3, attention="held up")

    handlers.handle(handler("payments.charge_payment"), message(saga, "OrderPlaced"))

    saga.refresh_from_db()
    assert (saga.recoveries, saga.attention) == (0, "")
    assert saga.steps.get(name="charge_payment").status == StepStatus.SUCCEEDED


def test_a_reaction_records_its_outcome_with_its_work(saga):
    """The step's record and the next step's commit with the reaction's own work:
    nothing else has to read the event for the saga to show where it is."""
    before = timezone.now()

    handlers.handle(handler("payments.charge_payment"), message(saga, "OrderPlaced"))

    saga.refresh_from_db()
    charge, reserve = saga.steps.order_by("index")[:2]
    assert Payment.objects.filter(order_ref=saga.context["order_id"]).exists()
    assert (charge.status, charge.attempts) == (StepStatus.SUCCEEDED, 1)
    assert before <= charge.started_at <= charge.finished_at
    assert reserve.status == StepStatus.RUNNING  # its trigger is on its way
    assert (saga.status, saga.current_step) == (SagaStatus.RUNNING, 1)
    assert saga.deadline_at > charge.finished_at  # the next step's, now


def test_a_refusal_records_the_failure_and_the_undoing_with_it(saga):
    Payment.objects.all().delete()
    poor = dataclasses.replace(
        handler("payments.charge_payment"), function=_refusing("balance too low")
    )

    handlers.handle(poor, message(saga, "OrderPlaced"))

    saga.refresh_from_db()
    charge = saga.steps.get(name="charge_payment")
    assert charge.status == StepStatus.FAILED
    assert charge.error == "PaymentFailed: balance too low"
    assert (saga.status, saga.reason) == (SagaStatus.COMPENSATING, "balance too low")


def test_a_refused_step_keeps_nothing_its_work_wrote_and_its_failure_once(saga):
    """The work is rolled back with its whole transaction, then the message, the
    step's try and its failure are recorded in a transaction of their own."""
    order_id = saga.context["order_id"]

    def charge_payment(purchase: dict) -> None:
        time.sleep(0.2)  # the attempt's time is the work's, not the recording's
        Order.objects.filter(pk=order_id).update(cancel_reason="written by the work")
        outbox_emit(
            PaymentsOutbox, topic="PaymentCaptured", aggregate_id=order_id, payload={}
        )
        raise BusinessError("balance too low")

    poor = dataclasses.replace(
        handler("payments.charge_payment"), function=charge_payment
    )
    received = message(saga, "OrderPlaced")

    called, counted = timezone.now(), refusals_counted()
    handlers.handle(poor, received)
    handlers.handle(poor, received)  # a copy: the inbox has it

    assert Order.objects.get().cancel_reason == ""
    assert list(PaymentsOutbox.objects.values_list("topic", flat=True)) == [
        "PaymentFailed"
    ]
    assert PaymentsInbox.objects.get().message_id == uuid.UUID(received["message_id"])
    assert Barrier.objects.filter(saga=saga, branch="charge_payment").count() == 1
    saga.refresh_from_db()
    charge = saga.steps.get(name="charge_payment")
    assert (charge.status, charge.attempts) == (StepStatus.FAILED, 1)
    assert charge.started_at - called < timedelta(seconds=0.1)
    assert charge.finished_at - charge.started_at >= timedelta(seconds=0.2)
    assert refusals_counted() == counted + 1  # in the metrics, once
    assert (saga.status, saga.reason) == (SagaStatus.COMPENSATING, "balance too low")


def test_a_cancel_between_a_refusal_and_its_recording_is_found_as_it_stands(saga):
    """An operator cancels the saga while the refused work rolls back: the cancel's
    fence stands when the refusal is recorded, so the step's failure is announced
    once, by the cancel, and the refusal adds none."""
    cancelled = threading.Event()

    def cancel_once_the_lock_is_free() -> None:
        try:
            lifecycle.saga_cancel(saga_id=saga.pk, actor="operator")  # waits
            cancelled.set()
        finally:
            connection.close()

    # Started by the work, which runs once (a second start would raise), and joined
    # before the test ends, its connection closed.
    canceller = threading.Thread(target=cancel_once_the_lock_is_free)

    def charge_payment(purchase: dict) -> None:
        canceller.start()
        _wait_for_a_lock_wait()  # the cancel now waits on this reaction's lock
        raise BusinessError("balance too low")

    poor = dataclasses.replace(
        handler("payments.charge_payment"), function=charge_payment
    )

    handlers.handle(poor, message(saga, "OrderPlaced"))
    canceller.join(10)

    assert cancelled.is_set()
    assert not PaymentsOutbox.objects.filter(topic="PaymentFailed").exists()
    failures = SagaOutbox.objects.filter(saga_id=saga.pk, topic="PaymentFailed")
    assert [row.payload["by"] for row in failures] == ["engine"]
    assert PaymentsInbox.objects.count() == 1  # the message counts as handled
    saga.refresh_from_db()
    assert (saga.status, saga.reason) == (
        SagaStatus.COMPENSATING,
        "cancelled by the shop",
    )


def refusals_counted() -> float:
    return (
        REGISTRY.get_sample_value(
            "saga_step_failures_total",
            {
                "saga": "purchase",
                "mode": "choreography",
                "step": "charge_payment",
                "phase": "action",
                "kind": "business",
            },
        )
        or 0.0
    )


def _wait_for_a_lock_wait(timeout: float = 10.0) -> None:
    """Until another session of this database waits for a lock. (Read inside the
    reaction's transaction, which keeps the first reading unless told to forget it.)"""
    deadline = time.monotonic() + timeout
    with connections["default"].cursor() as cursor:
        while time.monotonic() < deadline:
            cursor.execute("SELECT pg_stat_clear_snapshot()")
            cursor.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE datname ="
                " current_database() AND wait_event_type = 'Lock'"
            )
            if cursor.fetchone()[0]:
                return
            time.sleep(0.01)
    raise AssertionError("nothing waited for a lock")


def _refusing(why: str):
    def refuse(purchase: dict) -> None:
        raise BusinessError(why)

    refuse.__name__ = "charge_payment"
    return refuse


def test_a_reaction_commits_its_work_even_where_its_sagas_records_lag_behind(saga):
    """The saga is still PENDING (its earlier events not followed yet, as after an
    upgrade): the last step's work commits, and the records catch up with it."""
    committed = message(saga, "StockCommitted")

    handlers.handle(handler("orders.confirm_order"), committed)

    assert Order.objects.get().status == OrderStatus.CONFIRMED
    saga.refresh_from_db()
    assert (saga.status, saga.attention) == (SagaStatus.COMPLETED, "")


def test_a_move_the_records_cannot_make_is_flagged_not_raised(saga):
    Saga.objects.filter(pk=saga.pk).update(status=SagaStatus.COMPENSATING)
    saga.refresh_from_db()

    tracker._saga_to(saga, SagaStatus.COMPLETED)

    assert saga.status == SagaStatus.COMPENSATING
    assert "cannot follow its events to COMPLETED" in saga.attention


def test_an_event_queued_for_the_tracker_task_before_an_upgrade_is_followed(saga):
    tasks.track(message(saga, "PaymentCaptured"))  # as a worker runs it
    tasks.track(message(saga, "PaymentCaptured"))  # a copy changes nothing

    saga.refresh_from_db()
    charge = saga.steps.get(name="charge_payment")
    assert (charge.status, charge.attempts) == (StepStatus.SUCCEEDED, 1)
    assert saga.steps.get(name="reserve_stock").status == StepStatus.RUNNING
