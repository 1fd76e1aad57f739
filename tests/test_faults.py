"""Faults, for real: failing and stalling participants, killed workers, a lost broker.

Each test runs its own worker, relay and beat (and, where it restarts it, its own Redis)
with fault injection set through the environment, as an operator would.
"""

import signal
import time
from decimal import Decimal

import pytest
from rest_framework.test import APIClient

from inventory.models import Product
from orders.models import Order, OrderStatus
from orders.reconcile import reconcile
from payments.models import Account, Payment, PaymentStatus
from sagas.models import Saga, SagaEventKind, SagaStatus, StepStatus
from sagas.relay import outbox_models
from shop.tests.factories import client_for, user_create
from tests import world
from tests.cluster import Cluster, LocalRedis, wait_until

pytestmark = [pytest.mark.faults, pytest.mark.django_db(transaction=True)]

# Short deadlines so that stalls and lost work show within seconds.
TIMING = {
    "SAGA_STEP_TIMEOUT": "3",
    "SAGA_RECOVERY_GRACE": "1",
    "SAGA_RECOVERY_SECONDS": "1",
    "OUTBOX_SWEEP_SECONDS": "1",
}


@pytest.fixture
def timing(settings):
    """The test process places orders too: it computes deadlines as the workers do."""
    settings.SAGA_STEP_TIMEOUT = float(TIMING["SAGA_STEP_TIMEOUT"])
    settings.SAGA_RECOVERY_GRACE = float(TIMING["SAGA_RECOVERY_GRACE"])


@pytest.fixture
def start_cluster(test_db_name, timing):
    started: list[Cluster] = []

    def start(faults: str = "", *, beat: bool = True, **env) -> Cluster:
        cluster = Cluster(
            db_name=test_db_name, env={**TIMING, "SAGA_FAULTS": faults, **env}
        )
        started.append(cluster.start(beat=beat))
        return cluster

    yield start
    for cluster in started:
        cluster.stop()


def place(customer, items, **kwargs) -> Saga:
    response = customer.order(items, **kwargs)
    assert response.status_code == 202, response.content
    return Saga.objects.get(pk=response.json()["saga_id"])


def restart_worker_without_faults(cluster: Cluster) -> None:
    """The fault is gone (the gateway is back): a worker without it takes over."""
    cluster.kill("worker1", signal.SIGTERM)
    cluster.env["SAGA_FAULTS"] = ""
    cluster.start_worker()


def step(saga: Saga, name: str):
    return saga.steps.get(name=name)


def assert_consistent() -> None:
    """Nothing lost, nothing doubled: every saga ended and the books add up."""
    assert not Saga.objects.exclude(
        status__in=[SagaStatus.COMPLETED, SagaStatus.COMPENSATED]
    ).exists()
    assert reconcile().violations == []
    confirmed = Order.objects.filter(status=OrderStatus.CONFIRMED)
    for order in confirmed:
        [payment] = Payment.objects.filter(order_ref=order.pk)
        assert (payment.status, payment.amount) == (PaymentStatus.CAPTURED, order.total)
    assert not Order.objects.filter(status=OrderStatus.PENDING).exists()
    sold = sum(Product.objects.values_list("sold", flat=True))
    assert sold == sum(line.quantity for o in confirmed for line in o.lines.all())


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
    start_cluster("payments.charge:transient:1")
    world.product("TEA", units=10)
    saga = place(world.customer(), {"TEA": 2})

    [saga] = world.wait_ended([saga.pk], timeout=60)

    assert saga.status == SagaStatus.COMPENSATED
    charge = step(saga, "charge_payment")
    assert (charge.status, charge.attempts) == (StepStatus.FAILED, 4)  # 1 + 3 retries
    assert step(saga, "reserve_stock").status == StepStatus.COMPENSATED
    assert Product.objects.get(sku="TEA").available == 10
    assert_consistent()


def test_a_step_stalled_past_its_deadline_compensates_before_the_pivot(start_cluster):
    start_cluster("payments.charge:delay=10s:1")
    world.product("TEA", units=10)
    customer = world.customer("100.00")
    saga = place(customer, {"TEA": 2})

    [saga] = world.wait_ended([saga.pk], timeout=60)

    assert saga.status == SagaStatus.COMPENSATED
    charge = step(saga, "charge_payment")
    assert (charge.status, charge.attempts) == (StepStatus.FAILED, 1)  # no retry
    assert "TimeLimit" in charge.error or "StepTimeout" in charge.error
    assert Account.objects.get(customer=customer.user).balance == Decimal("100.00")
    assert_consistent()


def test_a_step_stalled_after_the_pivot_is_retried_until_it_succeeds(start_cluster):
    cluster = start_cluster("orders.confirm:delay=10s:1")
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


# CRASHES AND OUTAGES -----------------------------------------------------------------


def test_killing_the_worker_mid_batch_loses_and_doubles_nothing(start_cluster):
    # Steps slowed down a little, so that the kills land in the middle of the batch.
    cluster = start_cluster("inventory.reserve:delay=0.2s:1")
    world.product("TEA", price="3.00", units=1000)
    world.product("RARE", price="5.00", units=15)
    buyers = [world.customer("50.00") for _ in range(10)]
    sagas = place_batch(buyers, 60, rare=True)

    wait_until(
        lambda: ended(sagas) >= 10, timeout=60, what="a sixth of the batch to end"
    )
    cluster.kill("worker1", signal.SIGKILL)  # the whole worker: main process and pool
    time.sleep(1)
    cluster.start_worker()
    wait_until(lambda: ended(sagas) >= 35, timeout=90, what="half of the batch to end")
    cluster.kill("worker2", signal.SIGKILL)
    cluster.start_worker()
    world.wait_ended(sagas, timeout=180)

    assert Saga.objects.filter(events__kind=SagaEventKind.RECOVERED).exists()
    assert_consistent()


def test_a_broker_restart_mid_batch_loses_and_doubles_nothing(
    test_db_name, timing, settings
):
    redis = LocalRedis().start()
    cluster = Cluster(
        db_name=test_db_name,
        env={**TIMING, "CELERY_BROKER_URL": redis.url, "SAGA_FAULTS": ""},
    )
    settings.CELERY_BROKER_URL = redis.url
    try:
        cluster.start(beat=True).supervise()
        world.product("TEA", price="3.00", units=1000)
        buyers = [world.customer("100.00") for _ in range(8)]
        sagas = place_batch(buyers, 40)

        wait_until(lambda: ended(sagas) >= 5, timeout=60, what="some sagas to end")
        redis.stop()  # every queued and unacknowledged message is gone
        sagas += place_batch(buyers, 10)  # orders keep coming while the broker is down
        health = APIClient().get("/api/health/")
        assert health.status_code == 503
        time.sleep(3)
        redis.start()
        world.wait_ended(sagas, timeout=180)

        assert_consistent()
        wait_until(
            lambda: (
                not any(
                    m.objects.filter(published_at=None).exists()
                    for m in outbox_models()
                )
            ),
            timeout=30,
            what="every outbox row written during the outage to be published",
        )
    finally:
        cluster.stop()
        redis.stop()


def place_batch(buyers, n: int, *, rare: bool = False) -> list[int]:
    """Place ``n`` orders from threads; every fourth asks for RARE if ``rare``."""

    def one(i: int) -> int:
        items = {"RARE": 1} if rare and i % 4 == 3 else {"TEA": 1 + i % 3}
        return place(buyers[i % len(buyers)], items).pk

    return world.in_threads(one, range(n))


def ended(saga_ids: list[int]) -> int:
    return Saga.objects.filter(
        pk__in=saga_ids, status__in=[SagaStatus.COMPLETED, SagaStatus.COMPENSATED]
    ).count()


# COMPENSATION FAILURE AND OPERATORS --------------------------------------------------


def test_a_compensation_that_keeps_failing_needs_an_operator(start_cluster):
    cluster = start_cluster("inventory.release:transient:1")
    world.product("TEA", units=10)
    saga = place(world.customer(), {"TEA": 2}, ship_to="AQ")  # refused at shipment

    [saga] = world.wait_ended([saga.pk], timeout=60)
    assert saga.status == SagaStatus.FAILED
    assert step(saga, "reserve_stock").compensation_attempts == 4
    assert step(saga, "charge_payment").status == StepStatus.COMPENSATED
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
    start_cluster("payments.charge:delay=1.5s:1")
    world.product("TEA", units=10)
    customer = world.customer("100.00")
    saga = place(customer, {"TEA": 2})
    wait_until(
        lambda: step(saga, "reserve_stock").status == StepStatus.SUCCEEDED,
        timeout=30,
        what="stock to be reserved",
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
    assert "cancelled by ops" in order.cancel_reason
    assert Account.objects.get(customer=customer.user).balance == Decimal("100.00")
    assert_consistent()


def staff_client() -> APIClient:
    return client_for(user_create(username="ops", is_staff=True))
