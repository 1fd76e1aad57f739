"""The saga tracker: follows a choreographed saga's events into its saga and step
records, so it reads step by step like an orchestrated one, and the recovery sweep
can tell when its next event is overdue.

It is one more subscriber of the saga's events, with an inbox of its own. Events of
one saga may reach it out of order (a failure before the success before it, an
undone event before the failure that caused it): each moves a record only forward,
so they end in the same place in any order.
"""

from datetime import datetime

from django.conf import settings
from django.db import transaction

from sagas import bookkeeping, registry, selectors, telemetry
from sagas.bookkeeping import log, save
from sagas.definitions import Mode, Phase
from sagas.definitions.choreography import Choreography, Meaning
from sagas.messaging.inbox import inbox_accept
from sagas.models import (
    ENDED_STATUSES,
    InboxMessage,
    Saga,
    SagaEventKind,
    SagaStatus,
    SagaStep,
    StepStatus,
)
from shop.states import InvalidTransition

TRACKER = "tracker"


def saga_track(message: dict) -> None:
    """Move a choreographed saga's records on by one of its events."""
    headers = message.get("headers", {})
    with transaction.atomic(durable=True):
        if not inbox_accept(
            InboxMessage,
            consumer=TRACKER,
            message_id=message["message_id"],
            topic=message["topic"],
        ):
            return
        saga = selectors.saga_lock(saga_id=headers.get("saga_id"))
        if saga is None or saga.mode != Mode.CHOREOGRAPHY:
            return
        definition = registry.definition_of(saga)
        steps = selectors.saga_steps(saga=saga)
        event = _Event(message, datetime.fromisoformat(message["created_at"]))
        for index, meaning in definition.meanings(message["topic"]):
            TRACK[meaning](saga, steps, definition, index, event)
        expect_next(saga, steps, definition, at=event.at)
        save(
            saga,
            "status",
            "current_step",
            "error",
            "reason",
            "finished_at",
            "sent_at",
            "deadline_at",
            "recoveries",
            "attention",
        )


class _Event:
    def __init__(self, message: dict, at: datetime) -> None:
        self.topic = message["topic"]
        self.payload = message.get("payload", {})
        self.reason = message.get("headers", {}).get("reason", "")
        self.at = at


def _starts(saga, steps, definition, index, event) -> None:
    if saga.status not in (SagaStatus.PENDING, SagaStatus.RUNNING):
        return  # being undone: a late trigger starts nothing
    step = steps[index]
    if step.status == StepStatus.PENDING:
        step.move_to(StepStatus.RUNNING)
        step.started_at = step.started_at or event.at
        step.save(update_fields=["status", "started_at"])
    saga.current_step = max(saga.current_step, index)
    _saga_to(saga, SagaStatus.RUNNING)


def _succeeds(saga, steps, definition, index, event) -> None:
    step = steps[index]
    if step.status in (StepStatus.PENDING, StepStatus.RUNNING):
        step.move_to(StepStatus.SUCCEEDED)
        step.attempts = max(step.attempts, 1)
        step.started_at = step.started_at or event.at
        step.finished_at = event.at
        step.save(update_fields=["status", "attempts", "started_at", "finished_at"])
        _moved_on(saga)
        telemetry.step_done(
            saga, step.name, Phase.ACTION, step.started_at, step.finished_at
        )
    if index == len(steps) - 1 and saga.status in (
        SagaStatus.PENDING,
        SagaStatus.RUNNING,
    ):
        _saga_to(saga, SagaStatus.COMPLETED)
        saga.finished_at = event.at


def _fails(saga, steps, definition, index, event) -> None:
    step = steps[index]
    reason = event.payload.get("reason") or event.reason
    if step.status in (StepStatus.PENDING, StepStatus.RUNNING):
        step.move_to(StepStatus.FAILED)
        step.attempts += 1
        step.error, step.finished_at = f"{event.topic}: {reason}"[:2000], event.at
        step.save(update_fields=["status", "attempts", "error", "finished_at"])
    if saga.status in (SagaStatus.PENDING, SagaStatus.RUNNING):
        _saga_to(saga, SagaStatus.COMPENSATING)
        saga.error = f"{definition.name}.{step.name}: {event.topic}: {reason}"[:2000]
        saga.reason = reason[:2000]
        _moved_on(saga)
        log(saga, SagaEventKind.COMPENSATION_STARTED, step.name, saga.error)


def _moved_on(saga) -> None:
    """A step got done or undone: its losses and what held it up are behind it."""
    saga.recoveries, saga.attention = 0, ""


def _undone(saga, steps, definition, index, event) -> None:
    step = steps[index]
    if event.payload.get("nothing"):
        return  # its work never ran: there was nothing to undo
    if step.status in (StepStatus.PENDING, StepStatus.RUNNING):
        step.move_to(StepStatus.SUCCEEDED)  # undone proves it was done
    if step.status == StepStatus.SUCCEEDED:
        step.move_to(StepStatus.COMPENSATED)
        step.compensation_attempts += 1
        step.compensated_at = event.at
        step.save(update_fields=["status", "compensation_attempts", "compensated_at"])
        _moved_on(saga)
        telemetry.step_done(saga, step.name, Phase.COMPENSATION)
    if saga.status in (SagaStatus.PENDING, SagaStatus.RUNNING):
        _saga_to(saga, SagaStatus.COMPENSATING)


def _ends_undone(saga, steps, definition, index, event) -> None:
    if saga.status in ENDED_STATUSES:
        return
    _saga_to(saga, SagaStatus.COMPENSATED)
    saga.finished_at = event.at


TRACK = {
    Meaning.STARTS: _starts,
    Meaning.SUCCEEDS: _succeeds,
    Meaning.FAILS: _fails,
    Meaning.UNDONE: _undone,
    Meaning.ENDS_UNDONE: _ends_undone,
}


def pending(saga: Saga, steps: list[SagaStep], definition: Choreography):
    """What the saga waits for now: ("act", k), ("undo", k), ("end", None) or None.

    Forward while it runs, or when it gave up past its pivot; otherwise the newest
    step still to undo, and once none is left, its end."""
    if saga.status in ENDED_STATUSES:
        return None
    pivot = definition.pivot_index
    past_pivot = pivot is not None and steps[pivot].status == StepStatus.SUCCEEDED
    if saga.status in (SagaStatus.PENDING, SagaStatus.RUNNING) or (
        saga.status == SagaStatus.FAILED and past_pivot
    ):
        return ("act", saga.current_step)
    owed = [
        s.index
        for s in reversed(steps)
        if s.status == StepStatus.SUCCEEDED and definition.steps[s.index].undone
    ]
    return ("undo", owed[0]) if owed else ("end", None)


def expect_next(saga: Saga, steps, definition: Choreography, *, at) -> None:
    """Set when what the saga waits for now is overdue (none once it ended)."""
    unit = pending(saga, steps, definition)
    if unit is None:
        saga.deadline_at = None
        return
    kind, index = unit
    timeout = definition.steps[index].timeout if kind != "end" else None
    bookkeeping.mark_sent(saga, timeout or settings.SAGA_STEP_TIMEOUT, at=at)


def _saga_to(saga: Saga, status: str) -> None:
    """Move the saga to ``status``, through COMPENSATING where an undone saga's
    events came before the failure that started the undoing."""
    if saga.status == status:
        return
    try:
        saga.move_to(status)
    except InvalidTransition:
        saga.move_to(SagaStatus.COMPENSATING)
        saga.move_to(status)
