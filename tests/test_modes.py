"""The same purchase three ways (orchestration, choreography, try-confirm-cancel),
end to end through the REST API, the relay, the broker and a real worker: each mode
ends with the same order, stock and money for the same input, and records its steps.
"""

from decimal import Decimal

import pytest

from inventory.models import Product
from orders.models import Order, OrderStatus
from payments.models import Account, Payment, PaymentStatus
from sagas.definitions import Mode
from sagas.models import Saga, SagaStatus, StepStatus
from tests import world
from tests.world import assert_consistent

pytestmark = pytest.mark.django_db(transaction=True)

MODES = [Mode.ORCHESTRATION, Mode.CHOREOGRAPHY, Mode.TCC]
# The steps each mode records, in order.
STEPS = {
    Mode.ORCHESTRATION: [
        "charge_payment",
        "reserve_stock",
        "create_shipment",
        "confirm_order",
    ],
    Mode.CHOREOGRAPHY: [
        "charge_payment",
        "reserve_stock",
        "create_shipment",
        "commit_stock",
        "confirm_order",
    ],
    Mode.TCC: [
        "try_payment",
        "try_stock",
        "try_shipment",
        "confirm_payment",
        "confirm_stock",
        "confirm_shipment",
        "confirm_order",
    ],
}


def place(customer, items, mode, **kwargs) -> tuple[Order, Saga]:
    response = customer.order(items, mode=mode, **kwargs)
    assert response.status_code == 202, response.content
    body = response.json()
    assert body["mode"] == mode
    return Order.objects.get(pk=body["order_id"]), Saga.objects.get(pk=body["saga_id"])


def outcome(order: Order, customer) -> tuple:
    """What the purchase left behind: the order, the stock, the money."""
    order.refresh_from_db()
    tea = Product.objects.get(sku="TEA")
    payments = sorted(
        Payment.objects.filter(order_ref=order.pk).values_list("status", flat=True)
    )
    balance = Account.objects.get(customer=customer.user).balance
    return (
        order.status,
        (tea.available, tea.reserved, tea.sold),
        balance,
        [
            p
            for p in payments
            if p in (PaymentStatus.CAPTURED, PaymentStatus.AUTHORIZED)
        ],
    )


@pytest.mark.parametrize("mode", MODES)
def test_the_happy_path_confirms_the_order_and_records_every_step(cluster, mode):
    world.product("TEA", price="12.50", units=10)
    alice = world.customer("100.00")

    order, saga = place(alice, {"TEA": 3}, mode)
    [saga] = world.wait_ended([saga.pk])

    assert (saga.status, saga.mode) == (SagaStatus.COMPLETED, mode)
    steps = list(saga.steps.order_by("index"))
    assert [s.name for s in steps] == STEPS[mode]
    assert all(s.status == StepStatus.SUCCEEDED for s in steps)
    assert all(s.finished_at for s in steps)
    assert outcome(order, alice) == (
        OrderStatus.CONFIRMED,
        (7, 0, 3),
        Decimal("62.50"),
        [PaymentStatus.CAPTURED],
    )
    assert_consistent()


CASES = {
    # case: (stock, balance, ship_to, order's cancel reason starts with)
    "insufficient_balance": (10, "5.00", "JP", "insufficient balance"),
    "insufficient_stock": (1, "100.00", "JP", "insufficient stock for TEA"),
    "shipment_refused": (10, "100.00", "AQ", "the carrier does not deliver to AQ"),
}


@pytest.mark.parametrize("case", sorted(CASES))
@pytest.mark.parametrize("mode", MODES)
def test_a_refusal_at_any_step_undoes_everything_as_in_every_other_mode(
    cluster, mode, case
):
    units, money, ship_to, reason = CASES[case]
    world.product("TEA", price="10.00", units=units)
    bob = world.customer(money)

    order, saga = place(bob, {"TEA": 2}, mode, ship_to=ship_to)
    [saga] = world.wait_ended([saga.pk], timeout=90)

    assert saga.status == SagaStatus.COMPENSATED
    assert outcome(order, bob) == (
        OrderStatus.CANCELLED,
        (units, 0, 0),
        Decimal(money),
        [],
    )
    order.refresh_from_db()
    assert order.cancel_reason.startswith(reason)
    assert any(s.status == StepStatus.FAILED for s in saga.steps.all())
    assert_consistent()
