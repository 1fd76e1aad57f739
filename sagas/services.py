"""Saga lifecycle writes: start, run a step, record failures, recover, operator actions.

Every function that changes a saga first locks its row (selectors.saga_lock) and holds
the lock to commit, so one step task, errback, sweep or operator works on a saga at a
time. A step's action, its step record, the saga's progress and the dispatch of what
comes next commit together: a delivery that finds its work recorded does nothing.
"""

import logging
from datetime import datetime, timedelta
from enum import StrEnum

import psycopg2.errors
from billiard.exceptions import SoftTimeLimitExceeded, TimeLimitExceeded
from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from sagas import dispatch, registry, selectors
from sagas.definitions import Phase, SagaDefinition
from sagas.exceptions import ActionNotAllowed, BusinessError, StepTimeout
from sagas.models import (
    Saga,
    SagaEvent,
    SagaEventKind,
    SagaStatus,
    SagaStep,
    StepStatus,
)

logger = logging.getLogger(__name__)

# A saga the recovery sweep could not handle (a bug, a removed definition) is looked at
# again after this long, so that it does not hold the front of every sweep.
BROKEN_SAGA_BACKOFF = 300.0


class StepOutcome(StrEnum):
    APPLIED = "applied"  # the work was done now
    DUPLICATE = "duplicate"  # done by an earlier delivery; the chain may go on
    STALE = "stale"  # the saga has moved elsewhere; this chain stops here


class FailureKind(StrEnum):
    BUSINESS = "business"
    TIMEOUT = "timeout"
    TRANSIENT = "transient"


# START -------------------------------------------------------------------------------


def saga_start(
    *,
    name: str,
    context: dict,
    idempotency_key: str | None = None,
    owner_id: int | None = None,
) -> Saga:
    """Record a saga and the event that launches it, inside the caller's transaction.

    Nothing is sent here: the relay sends the first chain once the caller commits, so a
    rolled-back caller never starts a saga and a committed one always does.
    """
    definition = registry.definition(name)
    if idempotency_key is not None:
        existing = selectors.saga_by_key(name=name, idempotency_key=idempotency_key)
        if existing is not None:
            return existing
    # No savepoint: if any of this fails, the caller's whole transaction must roll back.
    with transaction.atomic(savepoint=False):
        saga = Saga.objects.create(
            name=name,
            context=context,
            idempotency_key=idempotency_key,
            owner_id=owner_id,
            deadline_at=_deadline(definition, 0, Phase.ACTION),
        )
        SagaStep.objects.bulk_create(
            SagaStep(saga=saga, index=i, name=step.name)
            for i, step in enumerate(definition.steps)
        )
        dispatch.dispatch_forward(saga, topic=dispatch.Topic.STARTED)
    return saga


# RUN A STEP --------------------------------------------------------------------------


def saga_step_run(
    *,
    saga_id: int,
    generation: int,
    definition: SagaDefinition,
    index: int,
    phase: Phase,
    task_id: str,
) -> StepOutcome:
    """Do one unit of a saga (an action, a compensation or the end) exactly once."""
    started = timezone.now()
    with transaction.atomic(durable=True):
        saga = selectors.saga_lock(saga_id=saga_id)
        if saga is None:
            return StepOutcome.STALE
        steps = selectors.saga_steps(saga=saga)
        verdict = _verdict(saga, steps, definition, index, phase, generation)
        if verdict is not None:
            return verdict
        timeout = unit_timeout(definition, index, phase)
        _limit_statements(timeout)
        if phase is Phase.ACTION:
            _run_action(saga, steps, definition, index, started, task_id, timeout)
        elif phase is Phase.COMPENSATION:
            _run_compensation(saga, steps, definition, index, started, timeout)
        else:
            _run_end(saga, definition, started, timeout)
    return StepOutcome.APPLIED


def _verdict(
    saga: Saga,
    steps: list[SagaStep],
    definition: SagaDefinition,
    index: int,
    phase: Phase,
    generation: int,
) -> StepOutcome | None:
    """None if this unit is due now; otherwise why it is not."""
    if generation != saga.generation:
        return StepOutcome.STALE  # sent by a dispatch that a later one replaced
    if phase is Phase.ACTION:
        if saga.status not in (SagaStatus.PENDING, SagaStatus.RUNNING):
            return StepOutcome.STALE
        if saga.current_step == index:
            return None
        return StepOutcome.DUPLICATE if saga.current_step > index else StepOutcome.STALE
    if saga.status != SagaStatus.COMPENSATING:
        return StepOutcome.STALE
    pending = _to_compensate(steps, definition)
    if phase is Phase.END:
        return StepOutcome.STALE if pending else None
    if steps[index].status == StepStatus.COMPENSATED:
        return StepOutcome.DUPLICATE
    # Compensations run strictly in reverse: only the highest one still owed is due.
    return None if pending and pending[0] == index else StepOutcome.STALE


def _run_action(saga, steps, definition, index, started, task_id, timeout) -> None:
    result = definition.steps[index].action(dict(saga.context)) or {}
    finished = _within_deadline(started, timeout)
    step = steps[index]
    step.move_to(StepStatus.SUCCEEDED)
    step.attempts += 1
    step.started_at, step.finished_at, step.task_id, step.error = (
        started,
        finished,
        task_id,
        "",
    )
    step.save(
        update_fields=[
            "status",
            "attempts",
            "started_at",
            "finished_at",
            "task_id",
            "error",
        ]
    )
    saga.context = {**saga.context, **result}
    if saga.status == SagaStatus.PENDING:
        saga.move_to(SagaStatus.RUNNING)
    if index + 1 < len(definition.steps):
        following = steps[index + 1]
        following.move_to(StepStatus.RUNNING)
        following.save(update_fields=["status"])
        saga.current_step = index + 1
        saga.deadline_at = _deadline(definition, index + 1, Phase.ACTION, now=finished)
    else:
        saga.move_to(SagaStatus.COMPLETED)
        saga.finished_at, saga.deadline_at = finished, None
    saga.recoveries = 0
    _save(
        saga,
        "status",
        "context",
        "current_step",
        "deadline_at",
        "finished_at",
        "recoveries",
    )


def _run_compensation(saga, steps, definition, index, started, timeout) -> None:
    definition.steps[index].compensate(dict(saga.context))
    finished = _within_deadline(started, timeout)
    step = steps[index]
    step.move_to(StepStatus.COMPENSATED)
    step.compensation_attempts += 1
    step.compensated_at, step.compensation_error = finished, ""
    step.save(
        update_fields=[
            "status",
            "compensation_attempts",
            "compensated_at",
            "compensation_error",
        ]
    )
    saga.current_step = index
    next_unit = _current_unit(saga, steps, definition)
    saga.deadline_at = _deadline(definition, *next_unit, now=finished)
    saga.recoveries = 0
    _save(saga, "current_step", "deadline_at", "recoveries")


def _run_end(saga, definition, started, timeout) -> None:
    if definition.on_compensated is not None:
        definition.on_compensated(dict(saga.context), _compensation_reason(saga))
    finished = _within_deadline(started, timeout)
    saga.move_to(SagaStatus.COMPENSATED)
    saga.finished_at, saga.deadline_at = finished, None
    _save(saga, "status", "finished_at", "deadline_at")


# FAILURE -----------------------------------------------------------------------------


def saga_step_failed(
    *,
    saga_id: int,
    generation: int,
    definition: SagaDefinition,
    index: int,
    phase: Phase,
    kind: "FailureKind",
    reason: str,
    task_id: str,
) -> None:
    """Record a failed attempt, then retry it, compensate, or mark the saga FAILED."""
    with transaction.atomic(durable=True):
        saga = selectors.saga_lock(saga_id=saga_id)
        if saga is None:
            return
        steps = selectors.saga_steps(saga=saga)
        if _verdict(saga, steps, definition, index, phase, generation) is not None:
            return  # a stale or duplicate copy failed, or the saga already moved on
        _handle_failure(saga, steps, definition, index, phase, kind, reason, task_id)


def _handle_failure(saga, steps, definition, index, phase, kind, reason, task_id=""):
    attempts = _record_attempt(saga, steps, index, phase, reason, task_id)
    policy = definition.retry_policy(index, phase)
    if phase is not Phase.ACTION:
        if policy.allows(attempts):
            _retry(saga, steps, definition, index, phase, attempts, reason)
        else:
            _fail(saga, reason)
        return
    after_pivot = definition.is_after_pivot(index)
    if kind is FailureKind.BUSINESS and after_pivot:
        _fail(saga, reason, steps[index])
    elif kind is FailureKind.BUSINESS or (
        kind is FailureKind.TIMEOUT and not after_pivot
    ):
        _compensate(saga, steps, definition, reason)
    elif policy.allows(attempts):
        _retry(saga, steps, definition, index, phase, attempts, reason)
    elif after_pivot:
        _fail(saga, reason, steps[index])
    else:
        _compensate(saga, steps, definition, reason)


def classify(error: BaseException) -> FailureKind:
    """Business errors compensate at once, timeouts depend on the pivot, the rest is
    transient (an unexpected error included) and retried up to the step's limit."""
    if isinstance(error, BusinessError):
        return FailureKind.BUSINESS
    if isinstance(error, (StepTimeout, SoftTimeLimitExceeded, TimeLimitExceeded)):
        return FailureKind.TIMEOUT
    if isinstance(error.__cause__, psycopg2.errors.QueryCanceled):  # statement_timeout
        return FailureKind.TIMEOUT
    return FailureKind.TRANSIENT


def _record_attempt(saga, steps, index, phase, reason, task_id) -> int:
    now = timezone.now()
    if phase is Phase.END:
        saga.end_attempts += 1
        _save(saga, "end_attempts")
        return saga.end_attempts
    step = steps[index]
    if phase is Phase.COMPENSATION:
        step.compensation_attempts += 1
        step.compensation_error = reason
        step.save(update_fields=["compensation_attempts", "compensation_error"])
        return step.compensation_attempts
    step.attempts += 1
    step.error, step.finished_at, step.task_id = reason, now, task_id or step.task_id
    if step.status == StepStatus.PENDING:
        step.move_to(StepStatus.RUNNING)
    step.save(update_fields=["attempts", "error", "finished_at", "task_id", "status"])
    return step.attempts


def _retry(saga, steps, definition, index, phase, attempts, reason) -> None:
    countdown = definition.retry_policy(index, phase).countdown(attempts)
    if attempts <= 10 or attempts % 100 == 0:  # a step retried forever logs a sample
        _log(
            saga,
            SagaEventKind.RETRY_SCHEDULED,
            _unit_name(saga, index, phase),
            f"attempt {attempts} failed ({reason}); next attempt in {countdown:.1f}s",
        )
    saga.deadline_at = _deadline(definition, index, phase, extra=countdown)
    _save(saga, "deadline_at")
    _redispatch(
        saga, steps, definition, topic=dispatch.Topic.RETRY, countdown=countdown
    )


def _compensate(saga, steps, definition, reason) -> None:
    """Stop going forward; undo what succeeded, newest first."""
    current = steps[saga.current_step]
    if current.status == StepStatus.RUNNING:
        # A step that was tried and failed is FAILED; one only dispatched never ran.
        current.move_to(StepStatus.FAILED if current.attempts else StepStatus.PENDING)
        current.save(update_fields=["status"])
    saga.move_to(SagaStatus.COMPENSATING)
    saga.error, saga.recoveries = reason, 0  # new work, a fresh recovery budget
    saga.deadline_at = _deadline(definition, *_current_unit(saga, steps, definition))
    _save(saga, "status", "error", "recoveries", "deadline_at")
    _log(saga, SagaEventKind.COMPENSATION_STARTED, current.name, reason)
    dispatch.dispatch_backward(
        saga,
        pending=_to_compensate(steps, definition),
        topic=dispatch.Topic.COMPENSATING,
    )


def _fail(saga, reason, step: SagaStep | None = None) -> None:
    """Give up: neither forward nor back can finish without an operator."""
    if step is not None:
        step.move_to(StepStatus.FAILED)
        step.save(update_fields=["status"])
    saga.move_to(SagaStatus.FAILED)
    saga.error, saga.deadline_at, saga.recoveries = reason, None, 0
    _save(saga, "status", "error", "deadline_at", "recoveries")
    _log(saga, SagaEventKind.FAILED, step.name if step else "", reason)
    logger.error(
        "saga %s (%s) FAILED and needs attention: %s",
        saga.pk,
        saga.name,
        reason,
        extra={"saga_id": saga.pk},
    )


# RECOVERY ----------------------------------------------------------------------------


def sagas_recover(*, limit: int = 100) -> int:
    """Drive forward (or back) every saga whose work in flight went missing.

    A saga a worker is executing holds its row lock and is skipped. The others are
    overdue because a message was lost (a killed worker, a restarted broker) or is
    still queued behind a backlog; sending the work again is safe either way, since a
    delivery that finds its work done does nothing.
    """
    now = timezone.now()
    with transaction.atomic(durable=True):
        overdue = selectors.sagas_overdue_lock(now=now, limit=limit)
        for saga in overdue:
            try:
                with transaction.atomic():  # a savepoint: one bad saga stops no other
                    _recover(saga, now)
            except Exception:
                logger.exception("saga %s could not be recovered", saga.pk)
                Saga.objects.filter(pk=saga.pk).update(
                    deadline_at=now + timedelta(seconds=BROKEN_SAGA_BACKOFF)
                )
    return len(overdue)


def _recover(saga: Saga, now: datetime) -> None:
    definition = registry.definition(saga.name)
    steps = selectors.saga_steps(saga=saga)
    index, phase = _current_unit(saga, steps, definition)
    last = selectors.saga_last_dispatch(saga_id=saga.pk)
    if last is not None and last.published_at is None:
        # Its work is still in the outbox (the relay or broker is behind): wait.
        saga.deadline_at = now + timedelta(seconds=settings.SAGA_RECOVERY_GRACE)
        _save(saga, "deadline_at")
        return
    if last is not None:
        # Counted from when the work went out, not from when it was decided.
        due = last.published_at + timedelta(
            seconds=last.payload.get("countdown", 0)
            + unit_timeout(definition, index, phase)
            + settings.SAGA_RECOVERY_GRACE
        )
        if due > now:
            saga.deadline_at = due
            _save(saga, "deadline_at")
            return
    if saga.recoveries >= settings.SAGA_MAX_RECOVERIES:
        reason = (
            f"{definition.task_name(index, phase)}: "
            f"no progress after {saga.recoveries} recoveries"
        )
        _handle_failure(
            saga, steps, definition, index, phase, FailureKind.TIMEOUT, reason
        )
        return
    saga.recoveries += 1
    backoff = unit_timeout(definition, index, phase) * (2 ** (saga.recoveries - 1))
    saga.deadline_at = now + timedelta(seconds=backoff + settings.SAGA_RECOVERY_GRACE)
    _save(saga, "recoveries", "deadline_at")
    _log(
        saga,
        SagaEventKind.RECOVERED,
        _unit_name(saga, index, phase),
        f"no progress since {saga.updated_at:%H:%M:%S}; work sent again "
        f"(recovery {saga.recoveries})",
    )
    _redispatch(saga, steps, definition, topic=dispatch.Topic.RECOVERED)


# OPERATOR ACTIONS --------------------------------------------------------------------


def saga_retry(*, saga_id: int, actor: str) -> Saga:
    """Take a FAILED saga up where it stopped: forward past the pivot, else back."""
    with transaction.atomic(durable=True):
        saga = _lock_or_raise(saga_id)
        if saga.status != SagaStatus.FAILED:
            raise ActionNotAllowed(
                f"only a FAILED saga can be retried; this one is {saga.status}"
            )
        definition = registry.definition(saga.name)
        steps = selectors.saga_steps(saga=saga)
        detail = f"retried by {actor} after: {saga.error}"
        # Whatever gave up gets a fresh retry budget; this event keeps the old count.
        if _pivot_passed(steps, definition):
            step = steps[saga.current_step]
            detail += f" ({step.attempts} attempts)"
            if step.status == StepStatus.FAILED:
                step.move_to(StepStatus.RUNNING)
            step.attempts = 0
            step.save(update_fields=["status", "attempts"])
            saga.move_to(SagaStatus.RUNNING)
        else:
            saga.move_to(SagaStatus.COMPENSATING)
            SagaStep.objects.filter(saga=saga).update(compensation_attempts=0)
            saga.end_attempts = 0
        saga.recoveries = 0
        saga.deadline_at = _deadline(
            definition, *_current_unit(saga, steps, definition)
        )
        _save(saga, "status", "recoveries", "end_attempts", "deadline_at")
        _log(saga, SagaEventKind.OPERATOR_RETRY, "", detail, actor=actor)
        _redispatch(saga, steps, definition, topic=dispatch.Topic.OPERATOR_RETRY)
    return saga


def saga_cancel(*, saga_id: int, actor: str, reason: str = "") -> Saga:
    """Compensate a saga that has not passed its pivot, on purpose."""
    with transaction.atomic(durable=True):
        saga = _lock_or_raise(saga_id)
        if saga.status not in (SagaStatus.PENDING, SagaStatus.RUNNING):
            raise ActionNotAllowed(
                f"only a running saga can be cancelled; this one is {saga.status}"
            )
        definition = registry.definition(saga.name)
        steps = selectors.saga_steps(saga=saga)
        if _pivot_passed(steps, definition):
            raise ActionNotAllowed(
                "the saga has passed its pivot and can only go forward"
            )
        detail = f"cancelled by {actor}" + (f": {reason}" if reason else "")
        _log(saga, SagaEventKind.OPERATOR_CANCEL, "", detail, actor=actor)
        _compensate(saga, steps, definition, detail)
    return saga


# HELPERS -----------------------------------------------------------------------------


def _compensation_reason(saga: Saga) -> str:
    """Why the saga is undone: its first cause, not a later failed compensation."""
    started = saga.events.filter(kind=SagaEventKind.COMPENSATION_STARTED).last()
    return started.detail if started else saga.error


def _to_compensate(steps: list[SagaStep], definition: SagaDefinition) -> list[int]:
    """Indexes of succeeded steps that have a compensation, newest first."""
    return [
        s.index
        for s in reversed(steps)
        if s.status == StepStatus.SUCCEEDED and definition.steps[s.index].compensate
    ]


def _current_unit(saga, steps, definition) -> tuple[int, Phase]:
    if saga.status == SagaStatus.COMPENSATING:
        pending = _to_compensate(steps, definition)
        return (pending[0], Phase.COMPENSATION) if pending else (-1, Phase.END)
    return saga.current_step, Phase.ACTION


def _redispatch(saga, steps, definition, *, topic: str, countdown: float = 0.0) -> None:
    if saga.status == SagaStatus.COMPENSATING:
        pending = _to_compensate(steps, definition)
        dispatch.dispatch_backward(
            saga, pending=pending, topic=topic, countdown=countdown
        )
    else:
        dispatch.dispatch_forward(saga, topic=topic, countdown=countdown)


def _pivot_passed(steps, definition) -> bool:
    pivot = definition.pivot_index
    return pivot is not None and steps[pivot].status == StepStatus.SUCCEEDED


def unit_timeout(definition: SagaDefinition, index: int, phase: Phase) -> float:
    step_timeout = definition.steps[index].timeout if phase is not Phase.END else None
    return step_timeout or settings.SAGA_STEP_TIMEOUT


def _deadline(definition, index, phase, *, now=None, extra: float = 0.0) -> datetime:
    seconds = (
        extra + unit_timeout(definition, index, phase) + settings.SAGA_RECOVERY_GRACE
    )
    return (now or timezone.now()) + timedelta(seconds=seconds)


def _limit_statements(timeout: float) -> None:
    """Bound every database wait in this step's transaction by the step's deadline."""
    with connection.cursor() as cursor:
        cursor.execute(f"SET LOCAL statement_timeout = {int(timeout * 1000)}")


def _within_deadline(started: datetime, timeout: float) -> datetime:
    """A step that overran its deadline must not commit: raise so it rolls back."""
    finished = timezone.now()
    if (finished - started).total_seconds() > timeout:
        raise StepTimeout(
            f"took {(finished - started).total_seconds():.1f}s, deadline {timeout:.1f}s"
        )
    return finished


def _lock_or_raise(saga_id: int) -> Saga:
    saga = selectors.saga_lock(saga_id=saga_id)
    if saga is None:
        raise ActionNotAllowed(f"no saga {saga_id}")
    return saga


def _unit_name(saga: Saga, index: int, phase: Phase) -> str:
    return registry.definition(saga.name).task_name(index, phase).split(".", 1)[1]


def describe(error: BaseException) -> str:
    """An error as one line: its class and message, for step records and logs."""
    text = str(error) or error.__class__.__name__
    return f"{error.__class__.__name__}: {text}"[:2000]


def _log(saga, kind, step_name, detail, *, actor="system") -> None:
    SagaEvent.objects.create(
        saga=saga, kind=kind, step_name=step_name, detail=detail[:4000], actor=actor
    )


def _save(saga: Saga, *fields: str) -> None:
    saga.save(update_fields=[*fields, "updated_at"])
