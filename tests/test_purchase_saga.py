"""The purchase saga end to end: REST API, relay, broker, a real worker, PostgreSQL."""

import threading
import time
from decimal import Decimal

import pytest
from django.db import connection, transaction

from inventory.models import Product
from orders.models import Order, OrderStatus, Shipment
from payments.models import Account, Payment, PaymentStatus
from payments.selectors import account_lock
from payments.services import payment_method_deactivate
from sagas.messaging.outbox import outbox_models
from sagas.models import OutboxMessage as SagaOutbox
from sagas.models import Saga, SagaStatus, StepStatus
from tests import world
from tests.cluster import wait_until
from tests.world import balance

pytestmark = pytest.mark.django_db(transaction=True)

STEPS = ["charge_payment", "reserve_stock", "create_shipment", "confirm_order"]


def place(customer, items, **kwargs) -> tuple[Order, Saga]:
    response = customer.order(items, **kwargs)
    assert response.status_code == 202, response.content
    body = response.json()
    return Order.objects.get(pk=body["order_id"]), Saga.objects.get(pk=body["saga_id"])


def steps_of(saga: Saga) -> dict[str, str]:
    return {s.name: s.status for s in saga.steps.order_by("index")}


def test_happy_path_confirms_the_order_everywhere(cluster):
    world.product("TEA", price="12.50", units=10)
    alice = world.customer("100.00")

    order, saga = place(alice, {"TEA": 3})
    [saga] = world.wait_ended([saga.pk])

    assert saga.status == SagaStatus.COMPLETED
    assert steps_of(saga) == dict.fromkeys(STEPS, StepStatus.SUCCEEDED)
    assert all(s.attempts == 1 and s.task_id for s in saga.steps.all())
    order.refresh_from_db()
    assert order.status == OrderStatus.CONFIRMED
    tea = Product.objects.get(sku="TEA")
    assert (tea.available, tea.reserved, tea.sold) == (7, 0, 3)
    assert balance(alice) == Decimal("62.50")
    assert Payment.objects.get(order_ref=order.pk).amount == Decimal("37.50")
    assert Shipment.objects.filter(order=order).count() == 1


def outbox_topics() -> set[str]:
    topics = set()
    for model in outbox_models():
        topics |= set(model.objects.values_list("topic", flat=True))
    return topics


def test_only_events_someone_takes_are_written(cluster):
    world.product("TEA", units=10)
    _, saga = place(world.customer(), {"TEA": 1})
    world.wait_ended([saga.pk])

    # Nobody subscribes to an orchestrated purchase's domain events: only the
    # engine's dispatch, which the relay turns into the chain, is written.
    assert outbox_topics() == {"SagaStarted"}
    world.wait_all_published(timeout=10)


@pytest.mark.faults  # a cluster of its own, with the setting: apart from the shared one
def test_every_event_is_written_and_then_published_when_kept(start_cluster, settings):
    settings.OUTBOX_KEEP_UNSUBSCRIBED = True  # this process places the order
    start_cluster(OUTBOX_KEEP_UNSUBSCRIBED="true")
    world.product("TEA", units=10)
    _, saga = place(world.customer(), {"TEA": 1})
    world.wait_ended([saga.pk])

    assert outbox_topics() == {
        "OrderPlaced",
        "SagaStarted",
        "PaymentCaptured",
        "StockReserved",
        "ShipmentCreated",
        "StockCommitted",
        "OrderConfirmed",
    }
    world.wait_all_published(timeout=10)


@pytest.mark.parametrize(
    ("case", "failed_step", "compensated", "reason"),
    [
        ("insufficient_balance", "charge_payment", [], "insufficient balance: 20.00"),
        (
            "insufficient_stock",
            "reserve_stock",
            ["charge_payment"],
            "insufficient stock for TEA: 2 requested, 1 available",
        ),
        (
            "shipment_refused",
            "create_shipment",
            ["reserve_stock", "charge_payment"],
            "the carrier does not deliver to AQ",
        ),
    ],
)
def test_a_failing_step_undoes_the_completed_ones_in_reverse(
    cluster, case, failed_step, compensated, reason
):
    world.product("TEA", price="10.00", units=1 if case == "insufficient_stock" else 10)
    bob = world.customer("5.00" if case == "insufficient_balance" else "100.00")
    ship_to = "AQ" if case == "shipment_refused" else "JP"

    order, saga = place(bob, {"TEA": 2}, ship_to=ship_to)
    [saga] = world.wait_ended([saga.pk])

    assert_undone(
        saga,
        order,
        bob,
        failed_step,
        compensated,
        stock=(1 if case == "insufficient_stock" else 10),
    )
    assert reason in order.cancel_reason


def test_a_payment_method_deactivated_after_placing_cancels_the_order(cluster):
    """The charge step sees the method as it is when it runs, not as it was at placing.

    The account row is held locked while the saga starts, so the charge step waits for
    it; the method is deactivated in that same transaction, then the lock is let go.
    """
    world.product("TEA", units=10)
    carol = world.customer("100.00")
    locked, release = threading.Event(), threading.Event()

    def hold_account_then_deactivate():
        with transaction.atomic():
            account_lock(customer_id=carol.user.pk)
            locked.set()
            release.wait(30)
            payment_method_deactivate(
                customer_id=carol.user.pk, method_id=carol.method_id
            )
        connection.close()

    holder = threading.Thread(target=hold_account_then_deactivate)
    holder.start()
    locked.wait(10)
    seen = cluster.received("purchase.charge_payment")
    order, saga = place(carol, {"TEA": 2})
    wait_until(
        lambda: cluster.received("purchase.charge_payment") > seen,
        timeout=30,
        what="the charge to start and wait for the account",
    )
    time.sleep(0.5)
    release.set()
    holder.join()
    [saga] = world.wait_ended([saga.pk])

    assert_undone(saga, order, carol, "charge_payment", [], stock=10)
    assert "inactive" in Order.objects.get(pk=order.pk).cancel_reason


def assert_undone(saga, order, customer, failed_step, compensated, *, stock):
    assert saga.status == SagaStatus.COMPENSATED
    statuses = steps_of(saga)
    assert statuses[failed_step] == StepStatus.FAILED
    assert [n for n, s in statuses.items() if s == StepStatus.COMPENSATED] == sorted(
        compensated, key=STEPS.index
    )
    # Reverse order: each compensation finished before the one of the step before it.
    times = [saga.steps.get(name=name).compensated_at for name in compensated]
    assert times == sorted(times)
    order.refresh_from_db()
    assert order.status == OrderStatus.CANCELLED
    # The customer reads why in plain words: no task, class or operator names.
    assert failed_step not in order.cancel_reason
    assert "Error" not in order.cancel_reason and "purchase." not in order.cancel_reason
    tea = Product.objects.get(sku="TEA")
    assert (tea.available, tea.reserved, tea.sold) == (stock, 0, 0)
    assert balance(customer) == Account.objects.get(customer=customer.user).credited
    assert not Payment.objects.filter(
        order_ref=order.pk, status=PaymentStatus.CAPTURED
    ).exists()


def test_fifty_concurrent_orders_for_ten_units_confirm_exactly_ten(cluster):
    world.product("RARE", price="1.00", units=10)
    buyers = [world.customer("10.00") for _ in range(50)]

    placed = world.in_threads(
        lambda buyer: place(buyer, {"RARE": 1}), buyers, workers=10
    )
    sagas = world.wait_ended([saga.pk for _, saga in placed], timeout=120)

    assert sorted(s.status for s in sagas).count(SagaStatus.COMPLETED) == 10
    assert Order.objects.filter(status=OrderStatus.CONFIRMED).count() == 10
    assert Order.objects.filter(status=OrderStatus.CANCELLED).count() == 40
    rare = Product.objects.get(sku="RARE")
    assert (rare.available, rare.reserved, rare.sold) == (0, 0, 10)
    assert Payment.objects.filter(status=PaymentStatus.CAPTURED).count() == 10
    assert sum(balance(b) for b in buyers) == Decimal("490.00")


# The first two tasks of a chain, by mode.
FIRST_TASKS = {
    "orchestration": ("purchase.charge_payment", "purchase.reserve_stock"),
    "tcc": ("purchase.tcc.try_payment", "purchase.tcc.try_stock"),
}


@pytest.mark.parametrize("mode", sorted(FIRST_TASKS))
def test_a_step_task_delivered_twice_is_applied_once(cluster, mode):
    """The saga's launch is sent twice, so two chains race for its first step."""
    world.product("TEA", price="10.00", units=10)
    dave = world.customer("100.00")
    first, second = FIRST_TASKS[mode]
    seen = cluster.received(first)
    seen_next = cluster.received(second)

    order, saga = place(dave, {"TEA": 2}, mode=mode)
    # A second copy of the launch event, written while the first chain is under way.
    launch = SagaOutbox.objects.get(aggregate_id=str(saga.pk), topic="SagaStarted")
    SagaOutbox.objects.create(
        topic=launch.topic, aggregate_id=launch.aggregate_id, payload=launch.payload
    )
    [saga] = world.wait_ended([saga.pk])
    wait_until(
        lambda: cluster.received(first) == seen + 2,
        timeout=10,
        what="both copies of the first step to be delivered",
    )
    wait_until(cluster.idle, timeout=10, what="the worker to finish both chains")

    assert saga.status == SagaStatus.COMPLETED
    # The copy that found the first step done by the other stopped its chain there.
    assert cluster.received(second) == seen_next + 1
    assert {s.attempts for s in saga.steps.all()} == {1}
    assert balance(dave) == Decimal("80.00")
    assert Payment.objects.filter(order_ref=order.pk).count() == 1
    tea = Product.objects.get(sku="TEA")
    assert (tea.available, tea.reserved, tea.sold) == (8, 0, 2)


@pytest.mark.parametrize("mode", sorted(FIRST_TASKS))
def test_an_outbox_event_published_twice_changes_nothing(cluster, mode):
    """A relay that died after publishing and before its commit publishes again."""
    world.product("TEA", price="10.00", units=10)
    erin = world.customer("100.00")
    _, saga = place(erin, {"TEA": 1}, mode=mode)
    world.wait_ended([saga.pk])
    wait_until(cluster.idle, timeout=10, what="the worker to settle")
    first, _ = FIRST_TASKS[mode]
    before, seen = snapshot(erin), cluster.received(first)

    for model in outbox_models():
        model.objects.update(published_at=None)  # every event goes out once more
    wait_until(
        lambda: cluster.received(first) == seen + 1,
        timeout=20,
        what="the saga's launch to be delivered again",
    )
    wait_until(cluster.idle, timeout=10, what="the worker to settle")

    assert snapshot(erin) == before


def snapshot(customer) -> tuple:
    tea = Product.objects.get(sku="TEA")
    return (
        tea.available,
        tea.reserved,
        tea.sold,
        balance(customer),
        Payment.objects.count(),
        Shipment.objects.count(),
        [tuple(s.steps.values_list("status", "attempts")) for s in Saga.objects.all()],
    )
