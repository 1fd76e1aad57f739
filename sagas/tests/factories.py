"""Test purchase sagas of every mode and outcome, moved by the engine's own entry
points without a worker: what the step tasks and their errback call (orchestration,
try-confirm-cancel), the tracker's events (choreography), the recovery sweep.

    saga = saga_made("compensated", mode="tcc")

Each saga belongs to a new order of its own; their customer and product are made
once per test database (``purchase_place``)."""

import uuid
from datetime import datetime, timedelta

from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import transaction
from django.utils import timezone

from inventory.exceptions import InsufficientStock
from inventory.tests.factories import product_make
from orders.tests.factories import order_make
from payments.tests.factories import customer_make
from sagas import recovery, registry, selectors
from sagas.choreography import tracker
from sagas.definitions import Mode, Phase
from sagas.exceptions import BusinessError, TransientError
from sagas.failures import failure_of
from sagas.messaging.correlation import Emitted
from sagas.messaging.outbox import outbox_models
from sagas.models import QueueProbeArrival, Saga
from sagas.orchestration import engine
from sagas.probes import saga_queues

OUTCOMES = ("completed", "compensated", "retried", "failed")
REFUSAL = "the carrier does not deliver to AQ"
BUYER = "saga-buyer"


def purchase_place(mode: str = Mode.ORCHESTRATION) -> Saga:
    """A new order's purchase saga, PENDING: nothing of it has run."""
    user = get_user_model().objects.filter(username=BUYER).first()
    if user is None:
        product_make(sku="TEA", price="4.50", units=1000)
        user, method = customer_make(username=BUYER, balance="100000.00")
    else:
        method = user.account.methods.first()
    order = order_make(customer=user, payment_method_id=method.pk, mode=mode)
    return Saga.objects.get(pk=order.saga_id)


def saga_made(outcome: str, *, mode: str = Mode.ORCHESTRATION) -> Saga:
    """A purchase saga of ``mode`` that ended as ``outcome`` (one of OUTCOMES):
    completed; compensated (refused at its third step); retried (its first step
    failed once, then it completed); failed (FAILED: past its pivot in
    try-confirm-cancel and choreography, a compensation giving up in orchestration).
    """
    saga = purchase_place(mode)
    MAKERS[mode, outcome](saga)
    saga.refresh_from_db()
    return saga


# ORCHESTRATION AND TRY-CONFIRM-CANCEL ---------------------------------------------


def step_run(saga: Saga, index: int, phase: Phase = Phase.ACTION) -> str:
    """What a step task does; returns its task id."""
    task_id = str(uuid.uuid4())
    engine.saga_step_run(
        saga_id=saga.pk,
        generation=_generation(saga),
        definition=registry.definition_of(saga),
        index=index,
        phase=phase,
        task_id=task_id,
    )
    return task_id


def step_fail(
    saga: Saga, index: int, error: Exception, phase: Phase = Phase.ACTION
) -> str:
    """What the errback and record_failure do when a step raises ``error``."""
    definition = registry.definition_of(saga)
    task_id = str(uuid.uuid4())
    engine.saga_step_failed(
        saga_id=saga.pk,
        generation=_generation(saga),
        definition=definition,
        index=index,
        phase=phase,
        failure=failure_of(error, unit_name=definition.task_name(index, phase)),
        task_id=task_id,
    )
    return task_id


def _generation(saga: Saga) -> int:
    return Saga.objects.values_list("generation", flat=True).get(pk=saga.pk)


def _steps_count(saga: Saga) -> int:
    return len(registry.definition_of(saga).steps)


def _run_all(saga: Saga, start: int = 0) -> None:
    for index in range(start, _steps_count(saga)):
        step_run(saga, index)


def _completed(saga: Saga) -> None:
    _run_all(saga)


def _compensated(saga: Saga) -> None:
    """Refused at its third step: what ran before is undone, newest first."""
    step_run(saga, 0)
    step_run(saga, 1)
    step_fail(saga, 2, BusinessError(REFUSAL))
    definition = registry.definition_of(saga)
    count = len(definition.steps)
    for index in definition.to_compensate(
        succeeded=[True, True] + [False] * (count - 2), compensated=[False] * count
    ):
        step_run(saga, index, Phase.COMPENSATION)
    step_run(saga, -1, Phase.END)


def _retried(saga: Saga) -> None:
    step_fail(saga, 0, TransientError("payments down"))
    _run_all(saga)


def _failed_compensating(saga: Saga) -> None:
    """Refused at its second step; refunding the first keeps failing: FAILED."""
    step_run(saga, 0)
    step_fail(saga, 1, InsufficientStock("TEA", 2, 0))
    policy = registry.definition_of(saga).compensation_retry
    for _ in range(policy.max_retries + 1):
        step_fail(saga, 0, TransientError("payments down"), Phase.COMPENSATION)


def _failed_past_pivot(saga: Saga) -> None:
    """Every try held; the first confirm is refused: no way back, FAILED."""
    pivot = registry.definition_of(saga).pivot_index
    _run_all_until(saga, pivot + 1)
    step_fail(saga, pivot + 1, BusinessError("the capture was refused"))


def _run_all_until(saga: Saga, stop: int) -> None:
    for index in range(stop):
        step_run(saga, index)


# CHOREOGRAPHY ------------------------------------------------------------------------


def event_track(
    saga: Saga, topic: str, *, at: datetime, started: datetime | None = None, **payload
) -> None:
    """One of the saga's events, written at ``at`` and tracked as the reaction that
    wrote it does: under the saga's row lock (a reaction that began at ``started``)."""
    headers = {
        "saga_id": saga.pk,
        "mode": Mode.CHOREOGRAPHY,
        "reason": payload.get("reason", ""),
    }
    with transaction.atomic():
        locked = selectors.saga_lock(saga_id=saga.pk)
        tracker.saga_track(
            locked,
            selectors.saga_steps(saga=locked),
            registry.definition_of(locked),
            [Emitted(topic, payload, headers)],
            at=at,
            started=started,
        )


def events_track(saga: Saga, *topics, at: datetime | None = None, every_ms: int = 4):
    """The events in turn, the first at ``at`` (by default 1 ms after the saga was
    created), each ``every_ms`` after the one before, whose reaction began when the
    one before was written. A topic may come with its payload:
    ("StockReservationFailed", {"reason": "..."})."""
    at = at or saga.created_at + timedelta(milliseconds=1)
    started = saga.created_at
    for topic in topics:
        topic, payload = topic if isinstance(topic, tuple) else (topic, {})
        event_track(saga, topic, at=at, started=started, **payload)
        started, at = at, at + timedelta(milliseconds=every_ms)


HAPPY = (
    "OrderPlaced",
    "PaymentCaptured",
    "StockReserved",
    "ShipmentCreated",
    "StockCommitted",
    "OrderConfirmed",
)


def _tracked_completed(saga: Saga) -> None:
    events_track(saga, *HAPPY)


def _tracked_compensated(saga: Saga) -> None:
    events_track(
        saga,
        *HAPPY[:3],
        ("ShipmentFailed", {"reason": REFUSAL}),
        "StockReleased",
        "PaymentRefunded",
        "OrderCancelled",
    )


def _tracked_retried(saga: Saga) -> None:
    """Its first event got lost: the recovery sweep sent it again, then all went on."""
    events_track(saga, "OrderPlaced")
    work_lose(saga)
    recovery.sagas_recover()
    events_track(saga, *HAPPY[1:], at=timezone.now() + timedelta(milliseconds=1))


def _tracked_failed(saga: Saga) -> None:
    """Past its pivot, the work after it got lost more times than the sweep resends
    it: FAILED."""
    events_track(saga, *HAPPY[:4])
    work_lose(saga)
    Saga.objects.filter(pk=saga.pk).update(recoveries=settings.SAGA_MAX_RECOVERIES)
    recovery.sagas_recover()


def work_lose(saga: Saga) -> None:
    """The saga's work went out an hour ago, and every saga queue has been consumed
    past it since: the recovery sweep takes it for lost."""
    now = timezone.now()
    for model in outbox_models():
        model.objects.filter(saga_id=saga.pk).update(
            published_at=now - timedelta(hours=1)
        )
    Saga.objects.filter(pk=saga.pk).update(
        sent_at=now - timedelta(hours=1), deadline_at=now - timedelta(seconds=1)
    )
    for queue in saga_queues():
        QueueProbeArrival.objects.create(
            queue=queue,
            sent_at=now - timedelta(minutes=30),
            reached_at=now - timedelta(minutes=10),
        )


MAKERS = {
    **{(mode, "completed"): _completed for mode in (Mode.ORCHESTRATION, Mode.TCC)},
    **{(mode, "compensated"): _compensated for mode in (Mode.ORCHESTRATION, Mode.TCC)},
    **{(mode, "retried"): _retried for mode in (Mode.ORCHESTRATION, Mode.TCC)},
    (Mode.ORCHESTRATION, "failed"): _failed_compensating,
    (Mode.TCC, "failed"): _failed_past_pivot,
    (Mode.CHOREOGRAPHY, "completed"): _tracked_completed,
    (Mode.CHOREOGRAPHY, "compensated"): _tracked_compensated,
    (Mode.CHOREOGRAPHY, "retried"): _tracked_retried,
    (Mode.CHOREOGRAPHY, "failed"): _tracked_failed,
}
