"""Choreographed purchases for real: the apps' reactions through the relay and the
broker, every event twice, a failure before the event it undoes, a step whose event
never comes."""

import signal
import threading
import time
from decimal import Decimal

import pytest

from inventory.models import Product
from orders.models import Order, OrderStatus
from orders.models import OutboxMessage as OrdersOutbox
from payments.models import InboxMessage as PaymentsInbox
from payments.models import Payment
from sagas import lifecycle
from sagas.definitions import Mode
from sagas.messaging.outbox import outbox_models, outbox_republish
from sagas.models import Barrier, Saga, SagaEventKind, SagaStatus, StepStatus
from tests import world
from tests.cluster import wait_until
from tests.world import assert_consistent, balance

pytestmark = pytest.mark.django_db(transaction=True)

CHOREOGRAPHY = Mode.CHOREOGRAPHY


def place(customer, items, **kwargs) -> tuple[Order, Saga]:
    saga = world.place(customer, items, mode=CHOREOGRAPHY, **kwargs)
    return Order.objects.get(saga_id=saga.pk), saga


def events_of(saga: Saga) -> list:
    return [
        row
        for model in outbox_models()
        for row in model.objects.filter(saga_id=saga.pk)
    ]


def test_every_event_delivered_twice_and_more_changes_nothing(cluster):
    world.product("TEA", price="10.00", units=10)
    alice = world.customer("100.00")
    order, saga = place(alice, {"TEA": 2})

    # While it runs, every one of its events is published again and again.
    running = threading.Event()
    running.set()

    def republish():
        from django.db import connection

        try:
            while running.is_set():
                outbox_republish(events_of(saga))
                time.sleep(0.05)
        finally:
            connection.close()

    again = threading.Thread(target=republish)
    again.start()
    try:
        [saga] = world.wait_ended([saga.pk], timeout=90)
    finally:
        running.clear()
        again.join()
    outbox_republish(events_of(saga))  # and once more, after it ended
    world.wait_all_published(timeout=30)
    wait_until(cluster.idle, timeout=30, what="the worker to take every copy")

    assert saga.status == SagaStatus.COMPLETED
    assert all(s.status == StepStatus.SUCCEEDED for s in saga.steps.all())
    order.refresh_from_db()
    assert order.status == OrderStatus.CONFIRMED
    tea = Product.objects.get(sku="TEA")
    assert (tea.available, tea.reserved, tea.sold) == (8, 0, 2)
    assert balance(alice) == Decimal("80.00")
    assert Payment.objects.filter(order_ref=order.pk).count() == 1
    # Each reaction handled each event once; the many copies were dropped.
    assert cluster.received("payments.charge_payment") > 1
    assert_consistent()


def test_a_failure_that_overtakes_the_event_before_it_ends_the_purchase_right(
    cluster,
):
    """An operator cancels while the event that would start the first step is held
    back. The failure arrives first; the held-back event, when it comes, finds its
    step fenced and does nothing: no charge, no stock, the order cancelled."""
    # The session's relay is stopped while the order is placed, so that what it
    # writes stays in the outbox until the test has held its first event back.
    cluster.kill("relay", signal.SIGTERM)
    try:
        world.product("TEA", price="10.00", units=10)
        bob = world.customer("100.00")
        order, saga = place(bob, {"TEA": 2})
        placed = OrdersOutbox.objects.get(saga_id=saga.pk, topic="OrderPlaced")
        hold_back(placed)

        lifecycle.saga_cancel(saga_id=saga.pk, actor="ops", reason="fraud check")
    finally:
        cluster.start_relay()
    [saga] = world.wait_ended([saga.pk], timeout=60)
    assert saga.status == SagaStatus.COMPENSATED

    release(placed)  # the event the failure overtook, delivered at last
    wait_until(
        lambda: PaymentsInbox.objects.filter(
            consumer="payments.charge_payment", message_id=placed.message_id
        ).exists(),
        timeout=30,
        what="the held-back event to reach payments",
    )
    wait_until(cluster.idle, timeout=30, what="the worker to settle")

    order.refresh_from_db()
    assert (order.status, order.cancel_reason) == (
        OrderStatus.CANCELLED,
        "cancelled by the shop: fraud check",
    )
    assert not Payment.objects.filter(order_ref=order.pk).exists()
    assert balance(bob) == Decimal("100.00")
    assert Product.objects.get(sku="TEA").available == 10
    assert (
        saga.steps.get(name="charge_payment").status == StepStatus.FAILED
    )  # never ran, refused by the cancel
    barriers = set(
        Barrier.objects.filter(saga=saga).values_list("branch", "op", "reason")
    )
    # Payments' undo of the failure finds nothing to undo, or, if the order was
    # cancelled first, finds the saga ended and does not even look: either is right.
    assert barriers - {("charge_payment", "cancel", "cancel")} == {
        ("charge_payment", "try", "cancel"),  # the fence: no late charge
        ("end", "try", "try"),  # the order cancelled, once
    }
    assert_consistent()


def hold_back(row) -> None:
    """Keep an outbox row from the relay for now (as a slow broker would)."""
    type(row).objects.filter(pk=row.pk).update(
        next_attempt_at="2999-01-01T00:00:00Z", published_at=None
    )


def release(row) -> None:
    type(row).objects.filter(pk=row.pk).update(next_attempt_at=None)


@pytest.mark.faults
def test_a_step_whose_event_never_gets_handled_is_timed_out_and_undone(
    start_cluster,
):
    """Inventory keeps failing: the reservation never reacts. The event is resent,
    then the step is fenced and its failure published, which the apps already react
    to: payments refunds, orders cancels."""
    start_cluster(
        "inventory.reserve:transient:1",
        SAGA_REACTION_RETRIES="1",
        SAGA_MAX_RECOVERIES="1",
    )
    world.product("TEA", price="10.00", units=10)
    carol = world.customer("100.00")
    order, saga = place(carol, {"TEA": 2})

    [saga] = world.wait_ended([saga.pk], timeout=180)

    assert saga.status == SagaStatus.COMPENSATED
    assert saga.events.filter(kind=SagaEventKind.RECOVERED).exists()
    steps = {s.name: s.status for s in saga.steps.all()}
    assert steps["charge_payment"] == StepStatus.COMPENSATED
    assert steps["reserve_stock"] == StepStatus.FAILED
    order.refresh_from_db()
    assert order.status == OrderStatus.CANCELLED
    assert order.cancel_reason == "the purchase could not be completed in time"
    assert balance(carol) == Decimal("100.00")
    assert Product.objects.get(sku="TEA").available == 10
    assert_consistent()
