"""Faults, for real: failing and stalling participants, and what operators do then.

Each test runs its own worker, relay and beat with fault injection set through the
environment, as an operator would. Crashes and outages are in test_outages.
"""

import signal
import time
from decimal import Decimal

import pytest
from rest_framework.test import APIClient

from inventory.models import Product
from orders.models import Order, OrderStatus
from payments.models import Account
from sagas.models import Saga, SagaEventKind, SagaStatus, StepStatus
from shop.tests.factories import client_for, user_create
from tests import world
from tests.cluster import Cluster, wait_until
from tests.world import assert_consistent, place

pytestmark = [pytest.mark.faults, pytest.mark.django_db(transaction=True)]


def restart_worker_without_faults(cluster: Cluster) -> None:
    """The fault is gone (the gateway is back): a worker without it takes over."""
    cluster.kill("worker1", signal.SIGTERM)
    cluster.env["SAGA_FAULTS"] = ""
    cluster.start_worker()


def step(saga: Saga, name: str):
    return saga.steps.get(name=name)


def assert_undone_at_the_reservation(saga: Saga, customer, *, attempts: int):
    """The purchase failed at the stock after ``attempts`` and was undone: the charge
    refunded, no stock held, the books straight. Returns the failed step."""
    assert saga.status == SagaStatus.COMPENSATED
    reserve = step(saga, "reserve_stock")
    assert (reserve.status, reserve.attempts) == (StepStatus.FAILED, attempts)
    assert step(saga, "charge_payment").status == StepStatus.COMPENSATED
    assert Account.objects.get(customer=customer.user).balance == Decimal("100.00")
    assert Product.objects.get(sku="TEA").available == 10
    assert_consistent()
    return reserve


# RETRIES AND TIMEOUTS ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("point", "step_name"),
    [
        ("inventory.reserve", "reserve_stock"),
        ("payments.charge", "charge_payment"),
        ("orders.ship", "create_shipment"),
        ("orders.confirm", "confirm_order"),
    ],
)
def test_a_transient_failure_is_retried_and_the_saga_completes(
    start_cluster, point, step_name
):
    cluster = start_cluster(f"{point}:transient:1")
    world.product("TEA", units=10)
    saga = place(world.customer(), {"TEA": 1})

    wait_until(
        lambda: step(saga, step_name).attempts >= 2,
        timeout=30,
        what=f"{step_name} to fail twice",
    )
    restart_worker_without_faults(cluster)
    [saga] = world.wait_ended([saga.pk])

    assert saga.status == SagaStatus.COMPLETED
    retried = step(saga, step_name)
    assert retried.status == StepStatus.SUCCEEDED
    assert retried.attempts >= 3  # at least two failed attempts, then the good one
    retries = saga.events.filter(
        kind=SagaEventKind.RETRY_SCHEDULED, step_name=step_name
    )
    assert retries.count() == retried.attempts - 1
    assert "injected transient fault" in retries.first().detail
    assert_consistent()


def test_retries_that_run_out_compensate(start_cluster):
    start_cluster("inventory.reserve:transient:1")
    world.product("TEA", units=10)
    customer = world.customer("100.00")
    saga = place(customer, {"TEA": 2})

    [saga] = world.wait_ended([saga.pk], timeout=60)

    assert_undone_at_the_reservation(saga, customer, attempts=4)  # 1 + 3 retries


# Prefork interrupts a pool process; a solo worker interrupts itself (shop.timelimits).
POOLS = pytest.mark.parametrize("pool", ["prefork", "solo"])


@POOLS
def test_a_step_stalled_past_its_deadline_compensates_before_the_pivot(
    start_cluster, pool
):
    start_cluster("inventory.reserve:delay=10s:1", pool=pool)
    world.product("TEA", units=10)
    customer = world.customer("100.00")
    saga = place(customer, {"TEA": 2})

    [saga] = world.wait_ended([saga.pk], timeout=60)

    reserve = assert_undone_at_the_reservation(saga, customer, attempts=1)  # no retry
    # Interrupted at its soft limit, not refused its commit ten seconds later.
    assert "SoftTimeLimitExceeded" in reserve.error, reserve.error
    order = Order.objects.get(saga_id=saga.pk)
    assert order.cancel_reason == "the purchase could not be completed in time"


@POOLS
def test_a_step_stalled_after_the_pivot_is_retried_until_it_succeeds(
    start_cluster, pool
):
    cluster = start_cluster("orders.confirm:delay=10s:1", pool=pool)
    world.product("TEA", units=10)
    saga = place(world.customer(), {"TEA": 2})

    wait_until(
        lambda: step(saga, "confirm_order").attempts >= 2,
        timeout=60,
        what="the confirmation to time out twice",
    )
    saga.refresh_from_db()
    assert saga.status == SagaStatus.RUNNING  # still going forward, nothing undone
    assert step(saga, "charge_payment").status == StepStatus.SUCCEEDED
    restart_worker_without_faults(cluster)
    [saga] = world.wait_ended([saga.pk], timeout=60)

    assert saga.status == SagaStatus.COMPLETED
    assert_consistent()


@POOLS
@pytest.mark.parametrize("broker", ["redis", "rabbitmq"], indirect=True)
def test_a_step_stuck_past_its_hard_limit_is_reported_and_compensates(
    start_cluster, pool, broker
):
    """Stuck where no soft limit reaches it (a call stuck in C code): at the hard
    limit prefork replaces its pool process, a solo worker ends itself (and is
    started again); either way the timeout is recorded, the step's message is not
    run again (RabbitMQ would hand an unacknowledged one straight back), and the
    purchase is undone."""
    cluster = start_cluster(
        "inventory.reserve:hang=30s:1", pool=pool, CELERY_BROKER_URL=broker.url
    )
    cluster.supervise()
    world.product("TEA", units=10)
    customer = world.customer("100.00")
    saga = place(customer, {"TEA": 2})

    [saga] = world.wait_ended([saga.pk], timeout=90)

    reserve = assert_undone_at_the_reservation(saga, customer, attempts=1)
    # The hard limit, not the soft one ("SoftTimeLimitExceeded" would contain it).
    assert "reserve_stock: TimeLimitExceeded: " in reserve.error, reserve.error
    # Telling on RabbitMQ, which hands an unacknowledged message back at once; Redis
    # would only after its visibility timeout (600 s), past this test.
    assert cluster.received("purchase.reserve_stock") == 1
    # Only a solo worker ends: prefork's main process lives on.
    assert ("worker1" in cluster.restarts) == (pool == "solo")


def test_an_idle_solo_worker_outlives_the_last_resort_of_its_tasks(start_cluster):
    """faulthandler's timer, armed for the steps (past their hard limit: 13 + 5 to 15
    s here) in case one holds the GIL for good, is turned off once no task runs."""
    cluster = start_cluster(beat=False, pool="solo", concurrency=1)
    world.product("TEA", units=10)
    [saga] = world.wait_ended([place(world.customer(), {"TEA": 1}).pk], timeout=30)
    assert saga.status == SagaStatus.COMPLETED
    worker = cluster.procs["worker1"]

    time.sleep(30)  # idle, past the longest the last resort could have been armed for

    assert worker.poll() is None, cluster.log("worker1")[-2000:]


# COMPENSATION FAILURE AND OPERATORS --------------------------------------------------


def test_a_compensation_that_keeps_failing_needs_an_operator(start_cluster):
    cluster = start_cluster("payments.refund:transient:1")
    world.product("TEA", units=10)
    saga = place(world.customer(), {"TEA": 2}, ship_to="AQ")  # refused at shipment

    [saga] = world.wait_ended([saga.pk], timeout=60)
    assert saga.status == SagaStatus.FAILED
    assert step(saga, "charge_payment").compensation_attempts == 4
    assert step(saga, "reserve_stock").status == StepStatus.COMPENSATED
    assert saga.events.filter(kind=SagaEventKind.FAILED).exists()

    restart_worker_without_faults(cluster)
    response = staff_client().post(f"/api/sagas/{saga.pk}/retry/")
    assert response.status_code == 202, response.content
    [saga] = world.wait_ended([saga.pk], timeout=60)

    assert saga.status == SagaStatus.COMPENSATED
    assert saga.events.filter(kind=SagaEventKind.OPERATOR_RETRY, actor="ops").exists()
    assert Product.objects.get(sku="TEA").available == 10
    assert_consistent()


def test_an_operator_can_cancel_a_running_saga(start_cluster):
    start_cluster("inventory.reserve:delay=1.5s:1")
    world.product("TEA", units=10)
    customer = world.customer("100.00")
    saga = place(customer, {"TEA": 2})
    wait_until(
        lambda: step(saga, "charge_payment").status == StepStatus.SUCCEEDED,
        timeout=30,
        what="the payment to be taken",
    )

    response = staff_client().post(
        f"/api/sagas/{saga.pk}/cancel/", {"reason": "fraud check"}, format="json"
    )
    assert response.status_code == 202, response.content
    [saga] = world.wait_ended([saga.pk], timeout=60)

    assert saga.status == SagaStatus.COMPENSATED
    assert saga.events.filter(kind=SagaEventKind.OPERATOR_CANCEL, actor="ops").exists()
    order = Order.objects.get(saga_id=saga.pk)
    assert order.status == OrderStatus.CANCELLED
    # The customer learns the shop cancelled it and why; not which operator did.
    assert order.cancel_reason == "cancelled by the shop: fraud check"
    assert Account.objects.get(customer=customer.user).balance == Decimal("100.00")
    assert_consistent()


def staff_client() -> APIClient:
    return client_for(user_create(username="ops", is_staff=True))


# THE SCARCE-STOCK SQUAT --------------------------------------------------------------


def test_a_customer_who_cannot_pay_never_holds_stock_others_could_buy(start_cluster):
    # Charging is slow here, so a reservation made before the charge would hold the
    # product's whole stock while it runs. Payment comes first in the purchase: the
    # squatter's orders fail at payment and never touch the stock.
    cluster = start_cluster("payments.charge:delay=0.5s:1")
    world.product("RARE", price="5.00", units=5)
    squatter, buyer = world.customer("0.00"), world.customer("100.00")

    squats = [place(squatter, {"RARE": 5}).pk for _ in range(3)]
    wait_until(
        lambda: cluster.received("purchase.charge_payment") >= 1,
        timeout=30,
        what="the first squat's saga to start",
    )
    bought = place(buyer, {"RARE": 5})
    world.wait_ended([*squats, bought.pk], timeout=60)

    assert Order.objects.get(saga_id=bought.pk).status == OrderStatus.CONFIRMED
    for saga_id in squats:
        order = Order.objects.get(saga_id=saga_id)
        assert order.status == OrderStatus.CANCELLED
        assert "insufficient balance" in order.cancel_reason
        assert step(Saga.objects.get(pk=saga_id), "reserve_stock").attempts == 0
    assert_consistent()
