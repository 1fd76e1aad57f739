"""Try-confirm-cancel, phase by phase on the real database: each phase once, a cancel
that finds no try, a try that comes after its cancel, and what the barrier records."""

from decimal import Decimal

import pytest
from django.db import transaction
from django.utils import timezone

from inventory.exceptions import InsufficientStock
from inventory.models import Product
from inventory.tests.factories import product_make
from orders.tests.factories import order_make
from payments.models import Account, Payment, PaymentStatus
from payments.tests.factories import customer_make
from sagas import barriers, registry
from sagas.barriers import Passage
from sagas.definitions import Mode, Phase
from sagas.definitions.tcc import Participant, TryConfirmCancel
from sagas.exceptions import StepTimeout
from sagas.failures import failure_of
from sagas.models import Barrier, Saga, SagaStatus, StepStatus
from sagas.orchestration import engine
from sagas.orchestration.engine import StepOutcome

pytestmark = pytest.mark.django_db

TCC = registry.definition("purchase", Mode.TCC)
TRY_PAYMENT, TRY_STOCK, TRY_SHIPMENT = range(3)
CONFIRM_PAYMENT, CONFIRM_STOCK, CONFIRM_SHIPMENT, CONFIRM_ORDER = range(3, 7)


@pytest.fixture
def buyer():
    product_make(sku="TEA", price="10.00", units=10)
    return customer_make(balance="1000.00")


def tcc_saga(buyer, *, quantity=2, ship_to="JP") -> Saga:
    user, method = buyer
    order = order_make(
        customer=user,
        payment_method_id=method.pk,
        items=[{"sku": "TEA", "quantity": quantity}],
        ship_to=ship_to,
        mode=Mode.TCC,
    )
    return Saga.objects.get(pk=order.saga_id)


def run(saga, index, phase=Phase.ACTION, *, task_id="t"):
    generation = Saga.objects.values_list("generation", flat=True).get(pk=saga.pk)
    return engine.saga_step_run(
        saga_id=saga.pk,
        generation=generation,
        definition=TCC,
        index=index,
        phase=phase,
        task_id=task_id,
    )


def fail(saga, index, error):
    generation = Saga.objects.values_list("generation", flat=True).get(pk=saga.pk)
    engine.saga_step_failed(
        saga_id=saga.pk,
        generation=generation,
        definition=TCC,
        index=index,
        phase=Phase.ACTION,
        failure=failure_of(error, unit_name=TCC.task_name(index, Phase.ACTION)),
        task_id="t",
    )
    saga.refresh_from_db()


def barrier_rows(saga) -> set[tuple[str, str, str]]:
    return set(Barrier.objects.filter(saga=saga).values_list("branch", "op", "reason"))


def balance(buyer) -> Decimal:
    return Account.objects.get(customer=buyer[0]).balance


def test_all_tried_then_all_confirmed_each_through_its_barrier(buyer):
    saga = tcc_saga(buyer)
    for index in range(7):
        assert run(saga, index) is StepOutcome.APPLIED

    saga.refresh_from_db()
    assert saga.status == SagaStatus.COMPLETED
    payment = Payment.objects.get(order_ref=saga.context["order_id"])
    assert (payment.status, balance(buyer)) == (PaymentStatus.CAPTURED, 980)
    tea = Product.objects.get(sku="TEA")
    assert (tea.available, tea.reserved, tea.sold) == (8, 0, 2)
    assert barrier_rows(saga) == {
        (p, op, op)
        for p in ("payment", "stock", "shipment")
        for op in ("try", "confirm")
    }


def test_a_confirm_delivered_twice_confirms_once(buyer):
    saga = tcc_saga(buyer)
    for index in range(CONFIRM_PAYMENT + 1):
        run(saga, index, task_id="first")

    assert run(saga, CONFIRM_PAYMENT, task_id="first") is StepOutcome.DUPLICATE
    assert run(saga, CONFIRM_PAYMENT, task_id="copy") is StepOutcome.STALE
    # Even past the engine, the barrier lets the phase happen once.
    assert (
        barriers.barrier_pass(saga_id=saga.pk, branch="payment", op="confirm")
        is Passage.DONE
    )
    assert Payment.objects.get().status == PaymentStatus.CAPTURED
    assert balance(buyer) == 980


def test_a_try_that_fails_cancels_every_participant_tried_or_not(buyer):
    saga = tcc_saga(buyer, quantity=50)  # more than the 10 in stock
    run(saga, TRY_PAYMENT)
    fail(saga, TRY_STOCK, _refused("TEA"))
    assert saga.status == SagaStatus.COMPENSATING

    for index in (TRY_SHIPMENT, TRY_STOCK, TRY_PAYMENT):  # newest first
        assert run(saga, index, Phase.COMPENSATION) is StepOutcome.APPLIED
    assert run(saga, -1, Phase.END) is StepOutcome.APPLIED

    saga.refresh_from_db()
    assert saga.status == SagaStatus.COMPENSATED
    assert Payment.objects.get().status == PaymentStatus.VOIDED
    assert balance(buyer) == 1000
    assert [s.status for s in saga.steps.order_by("index")][:3] == [
        StepStatus.COMPENSATED,  # tried, then cancelled
        StepStatus.FAILED,  # refused: cancelled all the same
        StepStatus.PENDING,  # never tried: its cancel found nothing
    ]
    assert barrier_rows(saga) == {
        ("payment", "try", "try"),
        ("payment", "cancel", "cancel"),
        # The refused try rolled back with its barrier row: the cancel wrote it.
        ("stock", "try", "cancel"),
        ("stock", "cancel", "cancel"),
        ("shipment", "try", "cancel"),
        ("shipment", "cancel", "cancel"),
    }


def test_a_cancel_before_its_try_does_nothing_and_the_try_after_it_neither(buyer):
    saga = tcc_saga(buyer)
    with transaction.atomic():
        assert (
            barriers.barrier_pass(saga_id=saga.pk, branch="stock", op="cancel")
            is Passage.NOTHING_TRIED
        )
    # The try arrives after its cancel (the "hanging" try): it must hold nothing.
    with transaction.atomic():
        assert (
            barriers.barrier_pass(saga_id=saga.pk, branch="stock", op="try")
            is Passage.CANCELLED_FIRST
        )
    assert barrier_rows(saga) == {
        ("stock", "try", "cancel"),
        ("stock", "cancel", "cancel"),
    }
    # Through the engine, a try whose cancel came first refuses, and holds nothing.
    Saga.objects.filter(pk=saga.pk).update(current_step=TRY_STOCK)
    with pytest.raises(Exception, match="cancelled before it was tried"):
        run(saga, TRY_STOCK)
    assert Product.objects.get(sku="TEA").reserved == 0


def test_a_cancel_delivered_twice_cancels_once(buyer):
    saga = tcc_saga(buyer)
    run(saga, TRY_PAYMENT)
    fail(saga, TRY_STOCK, _refused("TEA"))
    for index in (TRY_SHIPMENT, TRY_STOCK, TRY_PAYMENT):
        run(saga, index, Phase.COMPENSATION, task_id="first")

    assert run(saga, TRY_PAYMENT, Phase.COMPENSATION, task_id="first") in (
        StepOutcome.DUPLICATE,
        StepOutcome.STALE,
    )
    assert (
        barriers.barrier_pass(saga_id=saga.pk, branch="payment", op="cancel")
        is Passage.DONE
    )
    assert balance(buyer) == 1000  # given back once, not twice
    assert Payment.objects.get().status == PaymentStatus.VOIDED


def test_past_the_engine_the_barrier_lets_each_phase_run_once(buyer):
    # The engine's step records stop most copies before they get here; the barrier
    # is what stops the rest (a copy racing the first, a step record lost).
    calls = []

    def phase(name):
        def work(context):
            calls.append(name)

        work.__name__ = name
        return work

    counted = TryConfirmCancel(
        name="counted",
        participants=(
            Participant(
                "payment",
                try_=phase("try"),
                confirm=phase("confirm"),
                cancel=phase("cancel"),
            ),
        ),
    )
    saga = tcc_saga(buyer)

    for index, unit_phase in [
        (0, Phase.ACTION),  # try
        (0, Phase.ACTION),
        (1, Phase.ACTION),  # confirm
        (1, Phase.ACTION),
        (0, Phase.COMPENSATION),  # cancel
        (0, Phase.COMPENSATION),
    ]:
        with transaction.atomic():
            engine._call(saga, counted, index, unit_phase)

    assert calls == ["try", "confirm", "cancel"]


def test_a_try_that_times_out_cancels_all_and_a_late_copy_holds_nothing(buyer):
    saga = tcc_saga(buyer)
    run(saga, TRY_PAYMENT)
    fail(saga, TRY_STOCK, StepTimeout("try_stock ran past its 30 s deadline"))
    assert saga.status == SagaStatus.COMPENSATING

    for index in (TRY_SHIPMENT, TRY_STOCK, TRY_PAYMENT):
        assert run(saga, index, Phase.COMPENSATION) is StepOutcome.APPLIED
    assert run(saga, -1, Phase.END) is StepOutcome.APPLIED
    # The timed-out try, delivered again after its cancel, must hold nothing.
    with transaction.atomic():
        assert (
            barriers.barrier_pass(saga_id=saga.pk, branch="stock", op="try")
            is Passage.CANCELLED_FIRST
        )

    saga.refresh_from_db()
    assert saga.status == SagaStatus.COMPENSATED
    assert "timed out" in saga.reason or "deadline" in saga.error
    assert Payment.objects.get().status == PaymentStatus.VOIDED
    assert balance(buyer) == 1000
    assert Product.objects.get(sku="TEA").reserved == 0
    assert ("stock", "try", "cancel") in barrier_rows(saga)


def test_the_barriers_of_ended_sagas_are_cleaned_in_batches(buyer):
    ended = tcc_saga(buyer)
    for index in range(7):
        run(ended, index)
    running = tcc_saga(buyer)
    run(running, TRY_PAYMENT)

    deleted = barriers.barriers_clean(ended_before=timezone.now(), batch=2)

    assert deleted == 6
    assert not Barrier.objects.filter(saga=ended).exists()
    assert Barrier.objects.filter(saga=running).count() == 1


def _refused(sku):
    return InsufficientStock(sku, 50, 10)
