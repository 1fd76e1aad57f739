"""The engine's part in a choreographed saga: nothing while it goes well.

The apps react to each other's events, each recording its outcome on the saga in its
own transaction (sagas.choreography.tracker). The engine steps in
only when an event it waits for never comes (the recovery sweep), or an operator
acts: it sends the events that set off the pending work again, and when a step's
work before the pivot keeps getting lost, or an operator cancels, it fences that
step (sagas.barriers) and publishes the step's failure event, which the apps already
react to by undoing their work, newest first.
"""

from datetime import datetime, timedelta

from django.conf import settings
from django.utils import timezone

from sagas import barriers, bookkeeping, registry, selectors, telemetry
from sagas.bookkeeping import log, save
from sagas.choreography.tracker import expect_next, pending, saga_track
from sagas.definitions import Phase
from sagas.definitions.choreography import Choreography
from sagas.exceptions import ActionNotAllowed
from sagas.failures import PUBLIC_REASONS, FailureKind, failure_because
from sagas.messaging.correlation import collecting, correlated
from sagas.messaging.outbox import outbox_emit, outbox_republish
from sagas.models import (
    OutboxMessage,
    Saga,
    SagaEventKind,
    SagaStatus,
    StepStatus,
)


def saga_launch(saga: Saga, definition: Choreography) -> None:
    """Nothing to send: the app that starts the saga publishes its first event,
    with the saga's headers, in the same transaction (``correlated``)."""


def first_timeout(definition: Choreography) -> float:
    return definition.steps[0].timeout or settings.SAGA_STEP_TIMEOUT


# RECOVERY ----------------------------------------------------------------------------


def saga_recover(saga: Saga, now: datetime, consumed) -> None:
    """Send again what sets off the saga's pending work, if the queues prove it
    lost; before the pivot, after SAGA_MAX_RECOVERIES losses, time the step out."""
    definition, steps = _definition_and_steps(saga)
    if steps is None:
        return
    unit = pending(saga, steps, definition)
    if unit is None:
        return
    # The pending work's trigger, or any event of the saga sent after it, may still
    # be on its way. Lost means the queues were consumed past the last of them. (An
    # outcome is never lost on its own: it commits with the records it moves.)
    events = selectors.saga_events(saga_id=saga.pk)
    if any(row.published_at is None and row.dead_at is None for row in events):
        saga.deadline_at = now + timedelta(seconds=settings.SAGA_RECOVERY_GRACE)
        save(saga, "deadline_at")  # the relay or the broker is behind: wait
        return
    sent = max(
        [saga.sent_at or now, *(row.published_at for row in events if row.published_at)]
    )
    if not consumed.proves_lost(sent):
        saga.sent_at = sent
        save(saga, "sent_at")
        return
    _, index = unit
    if saga.recoveries >= settings.SAGA_MAX_RECOVERIES:
        _give_up(saga, steps, definition, unit, now)
        return
    saga.recoveries += 1
    expect_next(saga, steps, definition, at=now)
    save(saga, "recoveries", "sent_at", "deadline_at")
    triggers = set(_triggers(definition, unit))
    resent = _resend([e for e in events if e.topic in triggers])
    log(
        saga,
        SagaEventKind.RECOVERED,
        definition.steps[index].name if index is not None else "end",
        f"sent at {sent:%H:%M:%S.%f}"[:-3] + ", and the queues have been consumed "
        f"past it without it: lost; {', '.join(resent)} sent again "
        f"(recovery {saga.recoveries})",
    )


def _triggers(definition: Choreography, unit) -> tuple[str, ...]:
    kind, index = unit
    if kind == "act":
        return (definition.steps[index].on,)
    if kind == "undo":
        own = definition.steps[index].fails
        return tuple(t for t in definition.undo_triggers(index) if t != own)
    return definition.end_triggers()


def _resend(rows) -> list[str]:
    """Publish the pending work's trigger again: the work never ran, or its outcome
    and records would have moved the saga on. Consumers that had it drop the copy."""
    outbox_republish(rows)
    return sorted({row.topic for row in rows})


def _give_up(saga: Saga, steps, definition: Choreography, unit, now) -> None:
    kind, index = unit
    step = definition.steps[index] if index is not None else None
    if (
        kind == "act"
        and not definition.is_after_pivot(index)
        and barriers.barrier_fence(saga_id=saga.pk, branch=step.name, reason="timeout")
    ):
        # Timed out: its work can no longer run, and its failure sets off the
        # undoing. Publishing it is new work, with a budget of its own; the next
        # sweeps wait for the queues to pass it, and send it again if it is lost.
        reason = f"{step.name}: its work was lost {saga.recoveries + 1} times"
        timeout = failure_because(FailureKind.TIMEOUT, reason)
        telemetry.step_failed(saga, step.name, Phase.ACTION, timeout)
        saga.recoveries = 0
        _publish_failure(
            saga, steps, definition, step, reason, PUBLIC_REASONS[FailureKind.TIMEOUT]
        )
        return
    why = f"{_describe(definition, unit)}: still lost after {saga.recoveries} resends"
    bookkeeping.fail(saga, why)


def _publish_failure(
    saga: Saga, steps, definition: Choreography, step, reason: str, public: str
) -> None:
    """The step's failure event, from the engine: the apps undo what they did. The
    caller holds the saga's row lock: the saga's records move with the event."""
    with (
        correlated(**registry.headers_of(saga, step=step.name), reason=public),
        collecting() as emitted,
    ):
        outbox_emit(
            OutboxMessage,
            topic=step.fails,
            aggregate_id=saga.pk,
            payload={"reason": public, "by": "engine", "detail": reason[:2000]},
        )
    saga_track(saga, steps, definition, emitted, at=timezone.now())


# OPERATOR ACTIONS --------------------------------------------------------------------


def saga_retry_locked(saga: Saga, definition: Choreography, steps) -> str:
    """Send what sets off the work the saga gave up on again, with a fresh budget."""
    unit = pending(saga, steps, definition)
    kind, _ = unit
    saga.move_to(SagaStatus.RUNNING if kind == "act" else SagaStatus.COMPENSATING)
    saga.recoveries, saga.attention = 0, ""
    expect_next(saga, steps, definition, at=None)
    save(saga, "status", "recoveries", "attention", "sent_at", "deadline_at")
    rows = selectors.saga_events(saga_id=saga.pk, topics=_triggers(definition, unit))
    resent = _resend(rows)
    return f" ({', '.join(resent) or 'nothing'} sent again)"


def saga_cancel_locked(saga: Saga, definition: Choreography, steps, failure) -> None:
    """Fence the first step whose work has not run (before the pivot) and publish
    its failure: the apps undo what the steps before it did, newest first."""
    last = definition.pivot_index if definition.pivot_index is not None else -1
    for index in range(saga.current_step, last + 1):
        step = definition.steps[index]
        if steps[index].status == StepStatus.SUCCEEDED:
            continue
        if barriers.barrier_fence(saga_id=saga.pk, branch=step.name, reason="cancel"):
            _publish_failure(
                saga, steps, definition, step, failure.reason, failure.public
            )
            return
    raise ActionNotAllowed("the saga has passed its pivot and can only go forward")


# HELPERS -----------------------------------------------------------------------------


def _definition_and_steps(saga: Saga):
    definition = registry.definition_of(saga)
    steps = selectors.saga_steps(saga=saga)
    if why := bookkeeping.changed_steps(steps, definition):
        bookkeeping.flag_broken(saga, timezone.now(), why)
        return definition, None
    return definition, steps


def _describe(definition: Choreography, unit) -> str:
    kind, index = unit
    if kind == "end":
        return "ending the undone saga"
    return f"{kind} {definition.steps[index].name}"
