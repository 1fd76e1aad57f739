"""How one choreographed reaction runs, on the real database: a refusal past the
pivot leaves no trace but the operator's note, an ended saga takes no more, and the
reaction records its outcome, and clears what held its step up, with its work."""

import dataclasses
import uuid

import pytest
from django.utils import timezone

from inventory.tests.factories import product_make
from orders.models import InboxMessage as OrdersInbox
from orders.models import Order, OrderStatus
from orders.tests.factories import order_make
from payments.models import Payment
from payments.tests.factories import customer_make
from sagas.choreography import handlers
from sagas.definitions import Mode
from sagas.exceptions import BusinessError
from sagas.models import Barrier, Saga, SagaStatus, StepStatus

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
    # As the steps before it left the saga: running, at its last step.
    Saga.objects.filter(pk=saga.pk).update(status=SagaStatus.RUNNING, current_step=4)

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


def _refusing(why: str):
    def refuse(purchase: dict) -> None:
        raise BusinessError(why)

    refuse.__name__ = "charge_payment"
    return refuse
