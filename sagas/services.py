"""Saga lifecycle writes: start, run a step, record failures, recover, operator actions.

Every function that changes a saga first locks its row (selectors.saga_lock) and holds
the lock to commit, so one step task, errback, sweep or operator works on a saga at a
time. A step's action, its step record, the saga's progress and the dispatch of what
comes next commit together: a delivery that finds its work recorded does nothing.
"""

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from sagas import dispatch, probes, registry, selectors
from sagas.definitions import Phase, SagaDefinition
from sagas.exceptions import ActionNotAllowed, StepTimeout
from sagas.failures import Failure, FailureKind, describe, failure_because
from sagas.models import (
    ENDED_STATUSES,
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
    DUPLICATE = "duplicate"  # done by an earlier delivery of this task; it may go on
    STALE = "stale"  # the saga moved elsewhere, or another copy carries it: stop


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
        saga = Saga(
            name=name,
            context=context,
            idempotency_key=idempotency_key,
            owner_id=owner_id,
        )
        _mark_sent(saga, definition, 0, Phase.ACTION)
        saga.save()
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
        if _refuse_changed_steps(saga, steps, definition):
            return StepOutcome.STALE
        verdict = _verdict(saga, steps, definition, index, phase, generation, task_id)
        if verdict is not None:
            return verdict
        timeout = unit_timeout(definition, index, phase)
        _limit_statements(timeout)
        if phase is Phase.ACTION:
            _run_action(saga, steps, definition, index, started, task_id, timeout)
        elif phase is Phase.COMPENSATION:
            _run_compensation(saga, steps, definition, index, started, task_id, timeout)
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
    task_id: str,
) -> StepOutcome | None:
    """None if this unit is due now; otherwise why it is not."""
    if generation != saga.generation:
        return StepOutcome.STALE  # sent by a dispatch that a later one replaced
    if phase is Phase.ACTION:
        if saga.status not in (SagaStatus.PENDING, SagaStatus.RUNNING):
            return StepOutcome.STALE
        if saga.current_step == index:
            return None
        if saga.current_step > index:
            return _done_by(steps[index].task_id, task_id)
        return StepOutcome.STALE
    if saga.status != SagaStatus.COMPENSATING:
        return StepOutcome.STALE
    pending = _to_compensate(steps, definition)
    if phase is Phase.END:
        return StepOutcome.STALE if pending else None
    if steps[index].status == StepStatus.COMPENSATED:
        return _done_by(steps[index].compensation_task_id, task_id)
    # Compensations run strictly in reverse: only the highest one still owed is due.
    return None if pending and pending[0] == index else StepOutcome.STALE


def _done_by(applier: str, task_id: str) -> StepOutcome:
    """A unit found done: its own redelivery goes on (what follows may not have been
    sent), a second copy (a resend, a republished dispatch) stops, so one chain lives.
    A unit done before appliers were recorded (blank) lets any copy go on.
    """
    if applier and applier != task_id:
        return StepOutcome.STALE
    return StepOutcome.DUPLICATE


def _changed_steps(steps: list[SagaStep], definition: SagaDefinition) -> str:
    """Why a saga's recorded steps no longer fit its definition, or "" if they do.

    Steps are addressed by position: if a definition's steps were reordered, renamed,
    added or removed while the saga ran, position i would now run another step's
    action or compensation (a shipment for an order never charged, a refund where a
    release was owed). Such a saga is left to an operator, untouched.
    """
    recorded = [step.name for step in steps]
    defined = [step.name for step in definition.steps]
    if recorded == defined:
        return ""
    return (
        f"its recorded steps {recorded} no longer match the definition "
        f"{definition.name!r} {defined}: finish it by hand"
    )


def _refuse_changed_steps(saga, steps, definition) -> bool:
    why = _changed_steps(steps, definition)
    if why:
        _flag(saga, why)
        _save(saga, "attention")
    return bool(why)


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
        # The chain sends the next step as this commits.
        _mark_sent(saga, definition, index + 1, Phase.ACTION, at=finished)
    else:
        saga.move_to(SagaStatus.COMPLETED)
        saga.finished_at, saga.deadline_at = finished, None
    saga.recoveries, saga.attention = 0, ""
    _save(
        saga,
        "status",
        "context",
        "current_step",
        "sent_at",
        "deadline_at",
        "finished_at",
        "recoveries",
        "attention",
    )


def _run_compensation(saga, steps, definition, index, started, task_id, timeout):
    definition.steps[index].compensate(dict(saga.context))
    finished = _within_deadline(started, timeout)
    step = steps[index]
    step.move_to(StepStatus.COMPENSATED)
    step.compensation_attempts += 1
    step.compensated_at, step.compensation_error = finished, ""
    step.compensation_task_id = task_id
    step.save(
        update_fields=[
            "status",
            "compensation_attempts",
            "compensated_at",
            "compensation_error",
            "compensation_task_id",
        ]
    )
    saga.current_step = index
    _mark_sent(saga, definition, *_current_unit(saga, steps, definition), at=finished)
    saga.recoveries, saga.attention = 0, ""
    _save(saga, "current_step", "sent_at", "deadline_at", "recoveries", "attention")


def _run_end(saga, definition, started, timeout) -> None:
    if definition.on_compensated is not None:
        reason = saga.reason or "the purchase could not be completed"
        definition.on_compensated(dict(saga.context), reason)
    finished = _within_deadline(started, timeout)
    saga.move_to(SagaStatus.COMPENSATED)
    saga.finished_at, saga.deadline_at, saga.attention = finished, None, ""
    _save(saga, "status", "finished_at", "deadline_at", "attention")


# FAILURE -----------------------------------------------------------------------------


def saga_step_failed(
    *,
    saga_id: int,
    generation: int,
    definition: SagaDefinition,
    index: int,
    phase: Phase,
    failure: Failure,
    task_id: str,
) -> None:
    """Record a failed attempt, then retry it, compensate, or mark the saga FAILED."""
    with transaction.atomic(durable=True):
        saga = selectors.saga_lock(saga_id=saga_id)
        if saga is None:
            return
        steps = selectors.saga_steps(saga=saga)
        if _refuse_changed_steps(saga, steps, definition):
            return
        verdict = _verdict(saga, steps, definition, index, phase, generation, task_id)
        if verdict is StepOutcome.DUPLICATE:
            # This very task's work committed and the task failed afterwards (a soft
            # time limit just after the commit, a broker lost while sending the next
            # step): what follows was never sent. Send it on now.
            _send_on(saga, steps, definition)
        elif verdict is None:
            _handle_failure(saga, steps, definition, index, phase, failure, task_id)


def _handle_failure(saga, steps, definition, index, phase, failure, task_id=""):
    attempts = _record_attempt(saga, steps, index, phase, failure, task_id)
    retry = _may_retry(definition, steps, index, phase, failure.kind, attempts)
    if phase is not Phase.ACTION:
        if retry:
            _retry(saga, steps, definition, index, phase, attempts, failure)
        else:
            _fail(saga, failure.reason)
        return
    after_pivot = definition.is_after_pivot(index)
    if failure.kind is FailureKind.BUSINESS and after_pivot:
        _fail(saga, failure.reason, steps[index])
    elif failure.kind is FailureKind.BUSINESS or (
        failure.kind is FailureKind.TIMEOUT and not after_pivot
    ):
        _compensate(saga, steps, definition, failure)
    elif retry:
        _retry(saga, steps, definition, index, phase, attempts, failure)
    elif after_pivot:
        _fail(saga, failure.reason, steps[index])
    else:
        _compensate(saga, steps, definition, failure)


def _may_retry(definition, steps, index, phase, kind, attempts: int) -> bool:
    """Within the retry budget; unexpected errors (bugs) have a small one of their
    own even where the budget is endless, so they reach an operator."""
    bugs = steps[index].unexpected_failures if phase is Phase.ACTION else 0
    if kind is FailureKind.UNEXPECTED and bugs > settings.SAGA_UNEXPECTED_RETRIES:
        return False
    return definition.retry_policy(index, phase).allows(attempts)


def _record_attempt(saga, steps, index, phase, failure: Failure, task_id) -> int:
    now, reason = timezone.now(), failure.reason
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
    step.unexpected_failures += failure.kind is FailureKind.UNEXPECTED
    step.error, step.finished_at, step.task_id = reason, now, task_id or step.task_id
    if step.status == StepStatus.PENDING:
        step.move_to(StepStatus.RUNNING)
    step.save(
        update_fields=[
            "attempts",
            "unexpected_failures",
            "error",
            "finished_at",
            "task_id",
            "status",
        ]
    )
    return step.attempts


def _retry(saga, steps, definition, index, phase, attempts, failure) -> None:
    countdown = definition.retry_policy(index, phase).countdown(attempts)
    name = _unit_name(saga, index, phase)
    if attempts <= 10 or attempts % 100 == 0:  # a step retried forever logs a sample
        _log(
            saga,
            SagaEventKind.RETRY_SCHEDULED,
            name,
            f"attempt {attempts} failed ({failure.reason}); "
            f"next attempt in {countdown:.1f}s",
        )
    if attempts >= settings.SAGA_ATTENTION_ATTEMPTS:
        _flag(
            saga,
            f"{name} has failed {attempts} times ({failure.kind}); still retrying. "
            f"Last error: {failure.reason}",
        )
    _mark_sent(saga, definition, index, phase, countdown=countdown)
    _save(saga, "sent_at", "deadline_at", "attention")
    _redispatch(
        saga, steps, definition, topic=dispatch.Topic.RETRY, countdown=countdown
    )


def _compensate(saga, steps, definition, failure: Failure) -> None:
    """Stop going forward; undo what succeeded, newest first."""
    current = steps[saga.current_step]
    if current.status == StepStatus.RUNNING:
        # A step that was tried and failed is FAILED; one only dispatched never ran.
        current.move_to(StepStatus.FAILED if current.attempts else StepStatus.PENDING)
        current.save(update_fields=["status"])
    saga.move_to(SagaStatus.COMPENSATING)
    saga.error, saga.reason = failure.reason, failure.public
    saga.recoveries, saga.attention = 0, ""  # new work, a fresh recovery budget
    _mark_sent(saga, definition, *_current_unit(saga, steps, definition))
    _save(
        saga,
        "status",
        "error",
        "reason",
        "recoveries",
        "attention",
        "sent_at",
        "deadline_at",
    )
    _log(saga, SagaEventKind.COMPENSATION_STARTED, current.name, failure.reason)
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


def _send_on(saga, steps, definition) -> None:
    """Send the unit that follows a done one again, in the same generation."""
    if saga.status in ENDED_STATUSES or saga.status == SagaStatus.FAILED:
        return
    _mark_sent(saga, definition, *_current_unit(saga, steps, definition))
    _save(saga, "sent_at", "deadline_at")
    _redispatch(saga, steps, definition, topic=dispatch.Topic.CONTINUED, renew=False)


# RECOVERY ----------------------------------------------------------------------------


def sagas_recover(*, limit: int = 100) -> int:
    """Send again the work of every saga whose work in flight was lost; return how
    many overdue sagas were looked at.

    Overdue is not lost: under a backlog a saga's work waits in the broker long past
    its deadline. Work is resent only once a queue probe proves the queues have been
    consumed past it (sagas.probes), and then in the same generation, so a copy still
    queued somewhere stays valid. A saga a worker is executing holds its row lock and
    is skipped.
    """
    now = timezone.now()
    consumed = _queues_consumed(now)
    with transaction.atomic(durable=True):
        overdue = selectors.sagas_overdue_lock(
            now=now, sent_before=consumed.promptly, limit=limit
        )
        for saga in overdue:
            try:
                with transaction.atomic():  # a savepoint: one bad saga stops no other
                    _recover(saga, now, consumed)
            except Exception as exc:
                logger.exception("saga %s could not be recovered", saga.pk)
                why = f"the recovery sweep cannot handle it: {describe(exc)}"
                _flag_broken(saga, now, why)
    if selectors.sagas_overdue_unproven(now=now, sent_before=consumed.promptly):
        probes.probes_send(now=now)  # after the commit: no lock waits on the broker
    return len(overdue)


@dataclass(frozen=True)
class _Consumed:
    """How far the saga queues are known consumed, each minus a margin for the
    moment between a step's commit and its chain's publish, and for clocks that
    differ between hosts (SAGA_RECOVERY_GRACE)."""

    promptly: datetime | None  # work a worker starts as it takes it
    after_countdown: datetime | None  # work a worker holds until it is due


def _queues_consumed(now: datetime) -> _Consumed:
    grace = settings.SAGA_RECOVERY_GRACE
    margin = timedelta(seconds=grace)

    def consumed(settle: float) -> datetime | None:
        mark = probes.queues_consumed_up_to(now=now, settle=settle)
        return None if mark is None else mark - margin

    return _Consumed(consumed(grace), consumed(grace + _longest_run()))


def _longest_run() -> float:
    """The longest any saga task may hold a worker process: its hard time limit."""
    from sagas.tasks import HARD_LIMIT_SLACK

    return HARD_LIMIT_SLACK + max(
        (
            unit_timeout(u.definition, max(u.index, 0), u.phase)
            for u in registry.units()
        ),
        default=settings.SAGA_STEP_TIMEOUT,
    )


def _recover(saga: Saga, now: datetime, consumed: _Consumed) -> None:
    definition = registry.definition(saga.name)
    steps = selectors.saga_steps(saga=saga)
    if why := _changed_steps(steps, definition):
        _flag_broken(saga, now, why)
        return
    index, phase = _current_unit(saga, steps, definition)
    last = selectors.saga_last_dispatch(saga_id=saga.pk)
    if last is not None and last.is_dead:
        _flag_broken(saga, now, f"its work cannot be sent: {last.last_error}")
        return
    if last is not None and last.published_at is None:
        # Its work is still in the outbox (the relay or the broker is behind): wait.
        saga.deadline_at = now + timedelta(seconds=settings.SAGA_RECOVERY_GRACE)
        _save(saga, "deadline_at")
        return
    sent, countdown = saga.sent_at or now, 0.0
    if last is not None:
        countdown = last.payload.get("countdown") or 0.0
        sent = max(sent, last.published_at + timedelta(seconds=countdown))
    consumed_up_to = consumed.after_countdown if countdown else consumed.promptly
    if consumed_up_to is None or sent >= consumed_up_to:
        # Sent after the queues were last measured: it may still be queued.
        saga.sent_at = sent
        _save(saga, "sent_at")
        return
    if saga.recoveries >= settings.SAGA_MAX_RECOVERIES:
        reason = (
            f"{definition.task_name(index, phase)}: its work was lost "
            f"{saga.recoveries + 1} times"
        )
        failure = failure_because(FailureKind.TIMEOUT, reason)
        _handle_failure(saga, steps, definition, index, phase, failure)
        return
    saga.recoveries += 1
    _mark_sent(saga, definition, index, phase, at=now)
    _save(saga, "recoveries", "sent_at", "deadline_at")
    _log(
        saga,
        SagaEventKind.RECOVERED,
        _unit_name(saga, index, phase),
        f"sent at {sent:%H:%M:%S.%f}"[:-3] + ", and the queues have been consumed "
        f"past it without it: lost; sent again (recovery {saga.recoveries})",
    )
    _redispatch(saga, steps, definition, topic=dispatch.Topic.RECOVERED, renew=False)


def _flag_broken(saga: Saga, now: datetime, why: str) -> None:
    """A saga the sweep cannot handle: an operator must look, and the sweep later."""
    backoff = timedelta(seconds=BROKEN_SAGA_BACKOFF)
    Saga.objects.filter(pk=saga.pk).update(deadline_at=now + backoff, attention=why)
    if saga.attention != why:
        _log(saga, SagaEventKind.ATTENTION, "", why)


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
        steps = _steps_or_raise(saga, definition)
        detail = f"retried by {actor} after: {saga.error}"
        # Whatever gave up gets a fresh retry budget; this event keeps the old count.
        if _pivot_passed(steps, definition):
            step = steps[saga.current_step]
            detail += f" ({step.attempts} attempts)"
            if step.status == StepStatus.FAILED:
                step.move_to(StepStatus.RUNNING)
            step.attempts = step.unexpected_failures = 0
            step.save(update_fields=["status", "attempts", "unexpected_failures"])
            saga.move_to(SagaStatus.RUNNING)
        else:
            saga.move_to(SagaStatus.COMPENSATING)
            SagaStep.objects.filter(saga=saga).update(compensation_attempts=0)
            saga.end_attempts = 0
        saga.recoveries, saga.attention = 0, ""
        _mark_sent(saga, definition, *_current_unit(saga, steps, definition))
        _save(
            saga,
            "status",
            "recoveries",
            "attention",
            "end_attempts",
            "sent_at",
            "deadline_at",
        )
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
        steps = _steps_or_raise(saga, definition)
        if _pivot_passed(steps, definition):
            raise ActionNotAllowed(
                "the saga has passed its pivot and can only go forward"
            )
        detail = f"cancelled by {actor}" + (f": {reason}" if reason else "")
        # The customer learns that the shop cancelled it (and why), not who did.
        public = "cancelled by the shop" + (f": {reason}" if reason else "")
        _log(saga, SagaEventKind.OPERATOR_CANCEL, "", detail, actor=actor)
        _compensate(
            saga, steps, definition, Failure(FailureKind.BUSINESS, detail, public)
        )
    return saga


# HELPERS -----------------------------------------------------------------------------


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


def _redispatch(
    saga,
    steps,
    definition,
    *,
    topic: str,
    countdown: float = 0.0,
    renew: bool = True,
) -> None:
    if saga.status == SagaStatus.COMPENSATING:
        pending = _to_compensate(steps, definition)
        dispatch.dispatch_backward(
            saga, pending=pending, topic=topic, countdown=countdown, renew=renew
        )
    else:
        dispatch.dispatch_forward(saga, topic=topic, countdown=countdown, renew=renew)


def _pivot_passed(steps, definition) -> bool:
    pivot = definition.pivot_index
    return pivot is not None and steps[pivot].status == StepStatus.SUCCEEDED


def unit_timeout(definition: SagaDefinition, index: int, phase: Phase) -> float:
    step_timeout = definition.steps[index].timeout if phase is not Phase.END else None
    return step_timeout or settings.SAGA_STEP_TIMEOUT


def _mark_sent(
    saga: Saga,
    definition: SagaDefinition,
    index: int,
    phase: Phase,
    *,
    at: datetime | None = None,
    countdown: float = 0.0,
) -> None:
    """Record that the unit's work goes to the broker now (or ``at``), to start after
    ``countdown``: the time recovery proves a loss against, and the deadline by which
    it is overdue."""
    saga.sent_at = (at or timezone.now()) + timedelta(seconds=countdown)
    allowed = unit_timeout(definition, index, phase) + settings.SAGA_RECOVERY_GRACE
    saga.deadline_at = saga.sent_at + timedelta(seconds=allowed)


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


def _steps_or_raise(saga: Saga, definition: SagaDefinition) -> list[SagaStep]:
    steps = selectors.saga_steps(saga=saga)
    if why := _changed_steps(steps, definition):
        raise ActionNotAllowed(why)
    return steps


def _unit_name(saga: Saga, index: int, phase: Phase) -> str:
    return registry.definition(saga.name).task_name(index, phase).split(".", 1)[1]


def _flag(saga: Saga, why: str) -> None:
    """Mark a saga that cannot move on its own as needing an operator (logged once)."""
    if not saga.attention:
        _log(saga, SagaEventKind.ATTENTION, "", why)
        logger.warning(
            "saga %s (%s) needs attention: %s",
            saga.pk,
            saga.name,
            why,
            extra={"saga_id": saga.pk},
        )
    saga.attention = why[:2000]


def _log(saga, kind, step_name, detail, *, actor="system") -> None:
    SagaEvent.objects.create(
        saga=saga, kind=kind, step_name=step_name, detail=detail[:4000], actor=actor
    )


def _save(saga: Saga, *fields: str) -> None:
    saga.save(update_fields=[*fields, "updated_at"])
