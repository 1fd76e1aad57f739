"""The orchestration engine: runs a saga's steps in turn, records failures, decides.

Serves orchestrated sagas and, through the same steps, try-confirm-cancel ones (whose
steps are the tries and the confirms, each passing its barrier). Every function that
changes a saga first locks its row (selectors.saga_lock, or saga_lock_with_steps,
which reads its steps in the same round trip) and holds the lock to commit,
so one step task, errback, sweep or operator works on a saga at a time (but for
saga_report_sent, one statement that only moves a saga's times later). A step's
action, its step record, the saga's progress and the dispatch of what comes next
commit together: a delivery that finds its work recorded does nothing.
"""

from datetime import datetime, timedelta
from enum import StrEnum

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from sagas import barriers, bookkeeping, registry, selectors, telemetry
from sagas.bookkeeping import flag, log, save
from sagas.definitions import Phase, SagaDefinition
from sagas.exceptions import ActionNotAllowed, BusinessError, StepTimeout
from sagas.failures import Failure, FailureKind, failure_because
from sagas.messaging.correlation import correlated
from sagas.models import (
    ENDED_STATUSES,
    Saga,
    SagaEventKind,
    SagaStatus,
    SagaStep,
    StepStatus,
)
from sagas.orchestration import dispatch


class StepOutcome(StrEnum):
    APPLIED = "applied"  # the work was done now
    DUPLICATE = "duplicate"  # done by an earlier delivery of this task; it may go on
    STALE = "stale"  # the saga moved elsewhere, or another copy carries it: stop


# START -------------------------------------------------------------------------------


def saga_launch(saga: Saga, definition: SagaDefinition) -> None:
    """Write the event that sends a new saga's first chain once its caller commits
    (in the generation the saga starts with)."""
    dispatch.dispatch_forward(saga, topic=dispatch.Topic.STARTED, renew=False)


def first_timeout(definition: SagaDefinition) -> float:
    return unit_timeout(definition, 0, Phase.ACTION)


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
    timeout = unit_timeout(definition, index, phase)
    with transaction.atomic(durable=True):
        # Every database wait after the lock is bounded by the unit's deadline.
        saga, steps = selectors.saga_lock_with_steps(
            saga_id=saga_id, statement_timeout=timeout
        )
        if saga is None:
            return StepOutcome.STALE
        if _refuse_changed_steps(saga, steps, definition):
            return StepOutcome.STALE
        verdict = _verdict(saga, steps, definition, index, phase, generation, task_id)
        if verdict is not None:
            return verdict
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
    if steps[index].compensated_at is not None:
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


def _refuse_changed_steps(saga, steps, definition) -> bool:
    why = bookkeeping.changed_steps(steps, definition)
    if why:
        flag(saga, why)
        save(saga, "attention")
    return bool(why)


# What a unit that ran saves of its step and of the saga, in one statement.
_ACTION_DONE = ("status", "attempts", "started_at", "finished_at", "task_id", "error")
_UNDO_DONE = (
    "status",
    "compensation_attempts",
    "compensated_at",
    "compensation_error",
    "compensation_task_id",
)
_PROGRESS = ("current_step", "sent_at", "deadline_at", "recoveries", "attention")


def _run_action(saga, steps, definition, index, started, task_id, timeout) -> None:
    result = _call(saga, definition, index, Phase.ACTION)
    finished = _within_deadline(started, timeout)
    step = steps[index]
    step.move_to(StepStatus.SUCCEEDED)
    step.attempts += 1
    step.started_at, step.finished_at = started, finished
    step.task_id, step.error = task_id, ""
    changes = [(step, _ACTION_DONE)]
    if result:
        saga.context = {**saga.context, **result}
    if saga.status == SagaStatus.PENDING:
        saga.move_to(SagaStatus.RUNNING)
    if index + 1 < len(definition.steps):
        following = steps[index + 1]
        following.move_to(StepStatus.RUNNING)
        changes.append((following, ("status",)))
        saga.current_step = index + 1
        # The chain sends the next step as this commits.
        _mark_sent(saga, definition, index + 1, Phase.ACTION, at=finished)
    else:
        saga.move_to(SagaStatus.COMPLETED)
        saga.finished_at, saga.deadline_at = finished, None
    saga.recoveries, saga.attention = 0, ""
    fields = ("status", "finished_at", *_PROGRESS, *(("context",) if result else ()))
    bookkeeping.save_together(*changes, (saga, fields))
    telemetry.step_done(saga, step.name, Phase.ACTION, started, finished)


def _run_compensation(saga, steps, definition, index, started, task_id, timeout):
    _call(saga, definition, index, Phase.COMPENSATION)
    finished = _within_deadline(started, timeout)
    step = steps[index]
    if step.status == StepStatus.SUCCEEDED:
        step.move_to(StepStatus.COMPENSATED)
    # else a TCC try that failed or never ran, cancelled all the same: it keeps its
    # status; compensated_at says the cancel is done.
    step.compensation_attempts += 1
    step.compensated_at, step.compensation_error = finished, ""
    step.compensation_task_id = task_id
    saga.current_step = index
    _mark_sent(saga, definition, *_current_unit(saga, steps, definition), at=finished)
    saga.recoveries, saga.attention = 0, ""
    bookkeeping.save_together((step, _UNDO_DONE), (saga, _PROGRESS))
    telemetry.step_done(saga, step.name, Phase.COMPENSATION, started, finished)


def _run_end(saga, definition, started, timeout) -> None:
    if definition.on_compensated is not None:
        reason = saga.reason or "the purchase could not be completed"
        with correlated(**registry.headers_of(saga, step="end")):
            definition.on_compensated(dict(saga.context), reason)
    finished = _within_deadline(started, timeout)
    saga.move_to(SagaStatus.COMPENSATED)
    saga.finished_at, saga.deadline_at, saga.attention = finished, None, ""
    save(saga, "status", "finished_at", "deadline_at", "attention")


def _call(saga: Saga, definition: SagaDefinition, index: int, phase: Phase):
    """The unit's business work, with the saga's headers on every event it writes,
    behind its barrier if it has one (a TCC phase)."""
    step = definition.steps[index]
    work = step.action if phase is Phase.ACTION else step.compensate
    with correlated(**registry.headers_of(saga, step=step.name)):
        barrier = definition.barrier(index, phase)
        if barrier is None:
            return work(dict(saga.context))
        branch, op = barrier
        passage = barriers.barrier_pass(saga_id=saga.pk, branch=branch, op=op)
        if passage is barriers.Passage.DUE:
            return work(dict(saga.context))
        if passage is barriers.Passage.CANCELLED_FIRST:
            # Its cancel came first: this try must not hold anything now.
            raise BusinessError(f"{branch} was cancelled before it was tried")
        return None  # done before (a duplicate), or a cancel whose try never ran


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
        saga, steps = selectors.saga_lock_with_steps(saga_id=saga_id)
        if saga is None:
            return
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


def saga_report_sent(
    *,
    saga_id: int,
    generation: int,
    definition: SagaDefinition,
    index: int,
    phase: Phase,
    at: datetime,
) -> None:
    """A unit failed and its errback sent the report (saga_step_failed's task) ``at``:
    the recovery sweep waits for that report, not for the unit's own message. Without
    the saga's lock: one statement that only moves its times later."""
    timeout = unit_timeout(definition, index, phase)
    bookkeeping.mark_report_sent(
        saga_id=saga_id, generation=generation, timeout=timeout, at=at
    )


def _handle_failure(saga, steps, definition, index, phase, failure, task_id=""):
    attempts = _record_attempt(saga, steps, index, phase, failure, task_id)
    step = telemetry.step_of(definition, index, phase)
    telemetry.step_failed(saga, step, phase, failure, attempt=attempts)
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
        save(saga, "end_attempts")
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
        log(
            saga,
            SagaEventKind.RETRY_SCHEDULED,
            name,
            f"attempt {attempts} failed ({failure.reason}); "
            f"next attempt in {countdown:.1f}s",
        )
    if attempts >= settings.SAGA_ATTENTION_ATTEMPTS:
        flag(
            saga,
            f"{name} has failed {attempts} times ({failure.kind}); still retrying. "
            f"Last error: {failure.reason}",
        )
    _mark_sent(saga, definition, index, phase, countdown=countdown)
    save(saga, "sent_at", "deadline_at", "attention")
    _redispatch(
        saga, steps, definition, topic=dispatch.Topic.RETRY, countdown=countdown
    )
    step = telemetry.step_of(definition, index, phase)
    telemetry.step_retried(saga, step, phase, attempt=attempts, countdown=countdown)


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
    save(
        saga,
        "status",
        "error",
        "reason",
        "recoveries",
        "attention",
        "sent_at",
        "deadline_at",
    )
    log(saga, SagaEventKind.COMPENSATION_STARTED, current.name, failure.reason)
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
    bookkeeping.fail(saga, reason)


def _send_on(saga, steps, definition) -> None:
    """Send the unit that follows a done one again, in the same generation."""
    if saga.status in ENDED_STATUSES or saga.status == SagaStatus.FAILED:
        return
    _mark_sent(saga, definition, *_current_unit(saga, steps, definition))
    save(saga, "sent_at", "deadline_at")
    _redispatch(saga, steps, definition, topic=dispatch.Topic.CONTINUED, renew=False)


# RECOVERY ----------------------------------------------------------------------------


def saga_recover(saga: Saga, now: datetime, consumed) -> None:
    """Send an overdue saga's work again if the queues prove it lost (sagas.recovery
    holds the saga's row lock, and measured the queues: ``consumed``)."""
    definition = registry.definition_of(saga)
    steps = selectors.saga_steps(saga=saga)
    if why := bookkeeping.changed_steps(steps, definition):
        bookkeeping.flag_broken(saga, now, why)
        return
    index, phase = _current_unit(saga, steps, definition)
    last = selectors.saga_last_dispatch(saga_id=saga.pk)
    if last is not None and last.is_dead:
        bookkeeping.flag_broken(
            saga, now, f"its work cannot be sent: {last.last_error}"
        )
        return
    if last is not None and last.published_at is None:
        # Its work is still in the outbox (the relay or the broker is behind): wait.
        saga.deadline_at = now + timedelta(seconds=settings.SAGA_RECOVERY_GRACE)
        save(saga, "deadline_at")
        return
    sent, countdown = saga.sent_at or now, 0.0
    if last is not None:
        countdown = last.payload.get("countdown") or 0.0
        sent = max(sent, last.published_at + timedelta(seconds=countdown))
    if not consumed.proves_lost(sent, countdown=bool(countdown)):
        # Sent after the queues were last measured: it may still be queued.
        saga.sent_at = sent
        save(saga, "sent_at")
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
    save(saga, "recoveries", "sent_at", "deadline_at")
    log(
        saga,
        SagaEventKind.RECOVERED,
        _unit_name(saga, index, phase),
        f"sent at {sent:%H:%M:%S.%f}"[:-3] + ", and the queues have been consumed "
        f"past it without it: lost; sent again (recovery {saga.recoveries})",
    )
    _redispatch(saga, steps, definition, topic=dispatch.Topic.RECOVERED, renew=False)


# OPERATOR ACTIONS --------------------------------------------------------------------


def saga_retry_locked(saga: Saga, definition: SagaDefinition, steps) -> str:
    """Take a FAILED saga up where it stopped: forward past the pivot, else back.
    The caller holds its lock (sagas.lifecycle); return what to add to the trail."""
    detail = ""
    # Whatever gave up gets a fresh retry budget; the trail keeps the old count.
    if _pivot_passed(steps, definition):
        step = steps[saga.current_step]
        detail = f" ({step.attempts} attempts)"
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
    save(
        saga,
        "status",
        "recoveries",
        "attention",
        "end_attempts",
        "sent_at",
        "deadline_at",
    )
    _redispatch(saga, steps, definition, topic=dispatch.Topic.OPERATOR_RETRY)
    return detail


def saga_cancel_locked(saga: Saga, definition: SagaDefinition, steps, failure) -> None:
    """Compensate a saga that has not passed its pivot, on purpose (the caller holds
    its lock and checked that it may)."""
    if _pivot_passed(steps, definition):
        raise ActionNotAllowed("the saga has passed its pivot and can only go forward")
    _compensate(saga, steps, definition, failure)


# HELPERS -----------------------------------------------------------------------------


def _to_compensate(steps: list[SagaStep], definition: SagaDefinition) -> list[int]:
    """Indexes of the steps still to undo, newest first (the definition says which)."""
    return definition.to_compensate(
        succeeded=[s.status == StepStatus.SUCCEEDED for s in steps],
        compensated=[s.compensated_at is not None for s in steps],
    )


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
    """Record that the unit's work goes to the broker now (or ``at``)."""
    timeout = unit_timeout(definition, index, phase)
    bookkeeping.mark_sent(saga, timeout, at=at, countdown=countdown)


def _within_deadline(started: datetime, timeout: float) -> datetime:
    """A step that overran its deadline must not commit: raise so it rolls back."""
    finished = timezone.now()
    if (finished - started).total_seconds() > timeout:
        raise StepTimeout(
            f"took {(finished - started).total_seconds():.1f}s, deadline {timeout:.1f}s"
        )
    return finished


def _unit_name(saga: Saga, index: int, phase: Phase) -> str:
    return registry.definition_of(saga).task_name(index, phase).split(".", 1)[1]
