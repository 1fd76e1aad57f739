"""Writes to saga records that every mode makes alike: the audit trail, deadlines,
the attention flag. Callers hold the saga's row lock (or its own transaction), but
for mark_report_sent, one statement of its own."""

import logging
from datetime import datetime, timedelta

from django.conf import settings
from django.db import connection, models, transaction
from django.db.models import F, Value
from django.db.models.functions import Greatest
from django.utils import timezone

from sagas.models import ACTIVE_STATUSES, Saga, SagaEvent, SagaEventKind, SagaStatus
from shop import sql

logger = logging.getLogger("sagas")

# A saga the recovery sweep could not handle (a bug, a removed definition) is looked at
# again after this long, so that it does not hold the front of every sweep.
BROKEN_SAGA_BACKOFF = 300.0
# How long recording a failure report's send may take, waiting for a saga row another
# transaction holds (the recovery sweep locks a batch of them) included, before it
# gives up: the errback that records it runs within its failed task's time limits.
REPORT_WAIT_MS = 1000


def log(saga: Saga, kind: str, step_name: str, detail: str, *, actor="system") -> None:
    SagaEvent.objects.create(
        saga=saga, kind=kind, step_name=step_name, detail=detail[:4000], actor=actor
    )


def save(saga: Saga, *fields: str) -> None:
    saga.save(update_fields=[*fields, "updated_at"])


def save_together(*changes: tuple[models.Model, tuple[str, ...]]) -> None:
    """Save the ``fields`` of several rows in one statement (shop.sql.update_many).
    A saga's ``updated_at`` is always saved, as ``save`` does.

    A step that succeeded changes its own row, the next step's and the saga's; saved
    one by one, that is three round trips inside the step's transaction."""
    sql.update_many(
        *(
            (
                instance,
                (*fields, "updated_at") if isinstance(instance, Saga) else fields,
            )
            for instance, fields in changes
        )
    )


def mark_sent(
    saga: Saga,
    timeout: float,
    *,
    at: datetime | None = None,
    countdown: float = 0.0,
) -> None:
    """Record that the saga's next work goes to the broker now (or ``at``), to start
    after ``countdown``: the time recovery proves a loss against, and the deadline
    (a ``timeout`` later, plus the grace) by which it is overdue."""
    saga.sent_at = (at or timezone.now()) + timedelta(seconds=countdown)
    allowed = timeout + settings.SAGA_RECOVERY_GRACE
    saga.deadline_at = saga.sent_at + timedelta(seconds=allowed)


def mark_report_sent(
    *, saga_id: int, generation: int, timeout: float, at: datetime
) -> None:
    """Record that a failed unit's report went to the broker ``at``: until a worker
    takes it, it is the saga's work in flight, the message the recovery sweep must
    prove lost before it sends anything again.

    The unit's own message was taken long ago, so a queue probe soon proves it gone,
    while the report may still wait behind a backlog on the same queue. Only ever moves
    the times later (a retry's countdown may have put them ahead), and only in the
    generation the report belongs to: a saga the report already moved on is left as
    it is. One statement, in a transaction of its own so that its lock wait is bounded.
    """
    deadline = at + timedelta(seconds=timeout + settings.SAGA_RECOVERY_GRACE)
    with transaction.atomic(durable=True), connection.cursor() as cursor:
        # Both bounds in one round trip, for this transaction only (SET LOCAL).
        cursor.execute(
            "SELECT set_config('lock_timeout', %s, true), "
            "set_config('statement_timeout', %s, true)",
            [str(REPORT_WAIT_MS)] * 2,
        )
        Saga.objects.filter(
            pk=saga_id, generation=generation, status__in=ACTIVE_STATUSES
        ).update(
            sent_at=Greatest(F("sent_at"), Value(at)),
            deadline_at=Greatest(F("deadline_at"), Value(deadline)),
            updated_at=timezone.now(),
        )


def flag(saga: Saga, why: str) -> None:
    """Mark a saga that cannot move on its own as needing an operator (logged once)."""
    if not saga.attention:
        log(saga, SagaEventKind.ATTENTION, "", why)
        logger.warning(
            "saga %s (%s) needs attention: %s",
            saga.pk,
            saga.name,
            why,
            extra={"saga_id": saga.pk},
        )
    saga.attention = why[:2000]


def flag_broken(saga: Saga, now: datetime, why: str) -> None:
    """A saga the sweep cannot handle: an operator must look, and the sweep later."""
    backoff = timedelta(seconds=BROKEN_SAGA_BACKOFF)
    Saga.objects.filter(pk=saga.pk).update(deadline_at=now + backoff, attention=why)
    if saga.attention != why:
        log(saga, SagaEventKind.ATTENTION, "", why)


def fail(saga: Saga, reason: str) -> None:
    """Give up: neither forward nor back can finish without an operator."""
    saga.move_to(SagaStatus.FAILED)
    saga.error, saga.deadline_at, saga.recoveries = reason, None, 0
    save(saga, "status", "error", "deadline_at", "recoveries")
    log(saga, SagaEventKind.FAILED, "", reason)
    logger.error(
        "saga %s (%s) FAILED and needs attention: %s",
        saga.pk,
        saga.name,
        reason,
        extra={"saga_id": saga.pk},
    )


def changed_steps(steps, definition) -> str:
    """Why a saga's recorded steps no longer fit its definition, or "" if they do.

    Steps are addressed by position: if a definition's steps were reordered, renamed,
    added or removed while the saga ran, position i would now run another step's
    action or compensation (a shipment for an order never charged, a refund where a
    release was owed). Such a saga is left to an operator, untouched.
    """
    recorded = [step.name for step in steps]
    defined = list(definition.step_names)
    if recorded == defined:
        return ""
    return (
        f"its recorded steps {recorded} no longer match the definition "
        f"{definition.name!r} {defined}: finish it by hand"
    )
