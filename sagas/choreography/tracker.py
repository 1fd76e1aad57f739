"""The saga tracker: follows a choreographed saga's events into its saga and step
records, so it reads step by step like an orchestrated one, and the recovery sweep
can tell when its next event is overdue.

Each event is tracked in the transaction that writes it, under the saga's row lock:
the reaction that did a step's work records what its outcome event means (this step
done, the next one under way) as it commits that work, and so does the recovery
sweep for the failure it publishes. A saga's records therefore never lag behind its
events, and tracking costs no message and no transaction of its own.
"""

from datetime import datetime

from django.conf import settings
from django.db import transaction

from sagas import bookkeeping, registry, selectors, telemetry
from sagas.bookkeeping import log
from sagas.definitions import Mode, Phase
from sagas.definitions.choreography import Choreography, Meaning
from sagas.messaging.correlation import Emitted
from sagas.models import (
    ENDED_STATUSES,
    Saga,
    SagaEventKind,
    SagaStatus,
    SagaStep,
    StepStatus,
)
from shop.states import InvalidTransition

# What tracking may change on the saga row.
_SAGA_FIELDS = (
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


def saga_track(
    saga: Saga,
    steps: list[SagaStep],
    definition: Choreography,
    events: list[Emitted],
    *,
    at: datetime,
    started: datetime | None = None,
) -> None:
    """Move a choreographed saga's records on by ``events``, written at ``at`` in the
    caller's transaction, which holds the saga's row lock; a reaction that began at
    ``started`` wrote them. Everything that moved is saved in one statement."""
    moved: dict[int, set[str]] = {}
    for event in events:
        for index, meaning in definition.meanings(event.topic):
            change = _Change(event, at, started)
            if fields := TRACK[meaning](saga, steps, definition, index, change):
                moved.setdefault(index, set()).update(fields)
    expect_next(saga, steps, definition, at=at)
    bookkeeping.save_together(
        *((steps[index], tuple(sorted(fields))) for index, fields in moved.items()),
        (saga, _SAGA_FIELDS),
    )


class _Change:
    def __init__(self, event: Emitted, at: datetime, started: datetime | None):
        self.topic = event.topic
        self.payload = event.payload
        self.reason = event.payload.get("reason") or event.headers.get("reason", "")
        self.at = at
        self.started = started or at


def _starts(saga, steps, definition, index, change):
    if saga.status not in (SagaStatus.PENDING, SagaStatus.RUNNING):
        return None  # being undone: a late trigger starts nothing
    saga.current_step = max(saga.current_step, index)
    _saga_to(saga, SagaStatus.RUNNING)
    step = steps[index]
    if step.status != StepStatus.PENDING:
        return None
    step.move_to(StepStatus.RUNNING)  # sent: its reaction will say when it began
    return ("status",)


def _succeeds(saga, steps, definition, index, change):
    step = steps[index]
    fields = None
    if step.status in (StepStatus.PENDING, StepStatus.RUNNING):
        step.move_to(StepStatus.SUCCEEDED)
        step.attempts += 1
        step.started_at, step.finished_at = change.started, change.at
        fields = ("status", "attempts", "started_at", "finished_at")
        _moved_on(saga)
        telemetry.step_done(
            saga, step.name, Phase.ACTION, step.started_at, step.finished_at
        )
    if index == len(steps) - 1 and saga.status in (
        SagaStatus.PENDING,
        SagaStatus.RUNNING,
    ):
        _saga_to(saga, SagaStatus.COMPLETED)
        saga.finished_at = change.at
    return fields


def _fails(saga, steps, definition, index, change):
    step = steps[index]
    fields = None
    if step.status in (StepStatus.PENDING, StepStatus.RUNNING):
        step.move_to(StepStatus.FAILED)
        step.attempts += 1
        step.error = f"{change.topic}: {change.reason}"[:2000]
        step.finished_at = change.at
        fields = ("status", "attempts", "error", "finished_at")
        if change.payload.get("by") != "engine":  # its reaction ran and refused
            step.started_at = change.started
            fields += ("started_at",)
    if saga.status in (SagaStatus.PENDING, SagaStatus.RUNNING):
        _saga_to(saga, SagaStatus.COMPENSATING)
        saga.error = f"{definition.name}.{step.name}: {change.topic}: {change.reason}"[
            :2000
        ]
        saga.reason = change.reason[:2000]
        _moved_on(saga)
        log(saga, SagaEventKind.COMPENSATION_STARTED, step.name, saga.error)
    return fields


def _moved_on(saga) -> None:
    """A step got done or undone: its losses and what held it up are behind it."""
    saga.recoveries, saga.attention = 0, ""


def _undone(saga, steps, definition, index, change):
    step = steps[index]
    if change.payload.get("nothing"):
        return None  # its work never ran: there was nothing to undo
    fields = None
    if step.status in (StepStatus.PENDING, StepStatus.RUNNING):
        step.move_to(StepStatus.SUCCEEDED)  # undone proves it was done
    if step.status == StepStatus.SUCCEEDED:
        step.move_to(StepStatus.COMPENSATED)
        step.compensation_attempts += 1
        step.compensated_at = change.at
        fields = ("status", "compensation_attempts", "compensated_at")
        _moved_on(saga)
        telemetry.step_done(saga, step.name, Phase.COMPENSATION)
    if saga.status in (SagaStatus.PENDING, SagaStatus.RUNNING):
        _saga_to(saga, SagaStatus.COMPENSATING)
    return fields


def _ends_undone(saga, steps, definition, index, change):
    if saga.status not in ENDED_STATUSES:
        _saga_to(saga, SagaStatus.COMPENSATED)
        saga.finished_at = change.at
    return None


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
    """Move the saga to ``status``, through the status on the way there where its
    records lag behind (an undone saga's events that came before its failure; a saga
    still PENDING at its last step, as one whose earlier events a tracker from before
    an upgrade had yet to read). A move its records cannot make is left to an
    operator, flagged: the work the event announces has committed with it, and the
    records must not undo that work."""
    if saga.status == status:
        return
    before = saga.status
    try:
        saga.move_to(status)
        return
    except InvalidTransition:
        pass
    try:
        saga.move_to(_ON_THE_WAY[status])
        saga.move_to(status)
    except (InvalidTransition, KeyError):
        saga.status = before
        bookkeeping.flag(saga, f"its records cannot follow its events to {status}")


_ON_THE_WAY = {
    SagaStatus.COMPLETED: SagaStatus.RUNNING,
    SagaStatus.COMPENSATED: SagaStatus.COMPENSATING,
    SagaStatus.COMPENSATING: SagaStatus.RUNNING,
    SagaStatus.RUNNING: SagaStatus.PENDING,
}


def saga_track_message(message: dict) -> None:
    """Follow one event sent to the tracker task as a message: what a tracker task
    was sent before tracking moved into the reactions, and still finds queued after
    an upgrade. Moves are forward only, so an event followed twice changes nothing."""
    headers = message.get("headers", {})
    with transaction.atomic(durable=True):
        saga, steps = selectors.saga_lock_with_steps(saga_id=headers.get("saga_id"))
        if saga is None or saga.mode != Mode.CHOREOGRAPHY:
            return
        event = Emitted(message["topic"], message.get("payload", {}), headers)
        at = datetime.fromisoformat(message["created_at"])
        saga_track(saga, steps, registry.definition_of(saga), [event], at=at)
