"""The path a saga took, read back from its step rows, its events and its
definition: a lane per unit of work, each with its attempts."""

import re
from datetime import datetime, timedelta

from sagas.definitions import Mode, Phase
from sagas.history.entries import history_entries
from sagas.history.records import (
    SAGA_LANE,
    Attempt,
    Lane,
    Mark,
    Outcome,
    SagaPath,
    Turn,
)
from sagas.models import (
    ACTIVE_STATUSES,
    Saga,
    SagaEvent,
    SagaEventKind,
    SagaStatus,
    SagaStep,
    StepStatus,
)

# The engine's words for a retry (sagas.orchestration.engine._retry): "attempt 2
# failed (<reason>); next attempt in 1.9s". Without them the attempt still shows; only
# the next one is then taken to be sent when the retry was scheduled, not after its
# countdown.
RETRY_WORDS = re.compile(
    r"attempt (\d+) failed \((.*)\); next attempt in ([0-9.]+)s", re.S
)

# Events after which the saga's next work is sent at once: the undoing, an operator.
TURNS = (
    SagaEventKind.COMPENSATION_STARTED,
    SagaEventKind.OPERATOR_RETRY,
    SagaEventKind.OPERATOR_CANCEL,
)


def saga_path(
    saga: Saga,
    steps: list[SagaStep],
    events: list[SagaEvent],
    definition,
    *,
    now: datetime,
) -> SagaPath:
    """The path ``saga`` took, from its step rows (in index order), its events (in
    order) and its definition (None if it is no longer registered)."""
    units = _unit_names(steps, definition)
    retries: dict[tuple, list[SagaEvent]] = {}
    resends: dict[tuple, list[SagaEvent]] = {}
    saga_lane = Lane(SAGA_LANE, "saga", None)
    for event in events:
        unit = units.get(event.step_name)
        if unit is not None and event.kind == SagaEventKind.RETRY_SCHEDULED:
            retries.setdefault(unit, []).append(event)
        elif unit is not None and event.kind == SagaEventKind.RECOVERED:
            resends.setdefault(unit, []).append(event)
        else:
            saga_lane.marks.append(_mark(event))
    retried_by = [
        e.created_at for e in events if e.kind == SagaEventKind.OPERATOR_RETRY
    ]
    lanes = _action_lanes(saga, steps, retries, resends, retried_by)
    lanes += _undo_lanes(saga, steps, events, definition, retries, resends)
    active = saga.status in ACTIVE_STATUSES
    # An active saga's axis runs to now (it is still waiting); an ended or FAILED
    # one's to the last thing recorded.
    last = [saga.created_at, *(e.created_at for e in events)]
    last += [t for t in (saga.finished_at, now if active else None) if t]
    for lane in lanes:
        lane.marks += [_mark(e) for e in resends.get((lane.index, lane.phase), [])]
        for attempt in lane.attempts:
            last += [t for t in (attempt.ended, attempt.begun) if t]
    return SagaPath(
        start=saga.created_at,
        end=max(last),
        lanes=[saga_lane, *lanes],
        entries=history_entries(saga, [saga_lane, *lanes]),
        turns=_turns(saga, steps, events),
        active=active,
    )


# LANES -------------------------------------------------------------------------------


def _action_lanes(saga, steps, retries, resends, retried_by) -> list[Lane]:
    """A lane per step, in order: each is sent when the one before it succeeded (or
    again: a retry, a recovery, an operator's retry)."""
    lanes = []
    sent = saga.created_at
    for step in steps:
        unit = (step.index, Phase.ACTION)
        lane = Lane(f"s{step.index}", step.name, Phase.ACTION, step.index)
        sends = ([sent] if sent else []) + retried_by
        sends += [e.created_at for e in resends.get(unit, [])]
        lane.attempts = _retried(retries.get(unit, []), sends)
        final = _final_action(saga, step, lane.attempts)
        if final is not None:
            lane.attempts.append(_sent_by(final, sends))
        lanes.append(lane)
        done = step.status in (StepStatus.SUCCEEDED, StepStatus.COMPENSATED)
        sent = step.finished_at if done else None
    return lanes


def _final_action(saga: Saga, step: SagaStep, reported: list[Attempt]):
    """The attempt the step row holds, unless a retry event reported it already."""
    if step.status in (StepStatus.SUCCEEDED, StepStatus.COMPENSATED):
        if step.finished_at is None:
            return None  # its success never reached the records (choreography)
        return Attempt(
            None,
            step.started_at,
            step.finished_at,
            Outcome.DONE,
            step.attempts,
            step.task_id,
        )
    if step.error and step.finished_at is not None:
        numbers = {attempt.number for attempt in reported}
        if step.status == StepStatus.FAILED or step.attempts not in numbers:
            return Attempt(
                None,
                step.started_at,
                step.finished_at,
                Outcome.FAILED,
                step.attempts,
                step.task_id,
                step.error,
            )
    if step.status == StepStatus.RUNNING and saga.status in (
        SagaStatus.PENDING,
        SagaStatus.RUNNING,
    ):
        return Attempt(None, step.started_at, None, Outcome.RUNNING, step.attempts + 1)
    return None


def _undo_lanes(saga, steps, events, definition, retries, resends) -> list[Lane]:
    """The compensations, in the order they ran (newest step first), then the end.

    A compensation is sent when the undoing begins (a failure, an operator) or when
    the one before it is done: the latest of those before it ended stands in for its
    start.
    """
    turns = [e.created_at for e in events if e.kind in TURNS]
    turns += [s.finished_at for s in steps if s.status == StepStatus.FAILED]
    gave_up = [e.created_at for e in events if e.kind == SagaEventKind.FAILED]
    undone = sorted(
        (s for s in steps if _undo_ran(s, retries)),
        key=lambda s: (s.compensated_at is None, s.compensated_at or saga.created_at),
    )
    lanes = []
    done_at = [t for t in turns if t]
    for step in undone:
        unit = (step.index, Phase.COMPENSATION)
        label = _label(definition, steps, *unit)
        lane = Lane(f"u{step.index}", label, Phase.COMPENSATION, step.index)
        sends = done_at + [e.created_at for e in resends.get(unit, [])]
        lane.attempts = _retried(retries.get(unit, []), sends)
        final = _final_undo(step, lane.attempts, gave_up)
        if final is not None:
            lane.attempts.append(_sent_by(final, sends))
        if step.compensated_at:
            done_at.append(step.compensated_at)
        lanes.append(lane)
    end = (-1, Phase.END)
    ended = saga.status == SagaStatus.COMPENSATED and saga.finished_at is not None
    if ended or retries.get(end):
        lane = Lane("end", _label(definition, steps, *end), Phase.END, -1)
        sends = done_at + [e.created_at for e in resends.get(end, [])]
        lane.attempts = _retried(retries.get(end, []), sends)
        if ended:
            ended = Attempt(None, None, saga.finished_at, Outcome.UNDONE)
            lane.attempts.append(_sent_by(ended, sends))
        lanes.append(lane)
    return lanes


def _undo_ran(step: SagaStep, retries) -> bool:
    return bool(
        step.compensated_at
        or step.compensation_attempts
        or step.compensation_error
        or retries.get((step.index, Phase.COMPENSATION))
    )


def _final_undo(step: SagaStep, reported: list[Attempt], gave_up: list[datetime]):
    if step.compensated_at:
        return Attempt(
            None,
            None,
            step.compensated_at,
            Outcome.UNDONE,
            step.compensation_attempts,
            step.compensation_task_id,
        )
    numbers = {attempt.number for attempt in reported}
    if step.compensation_error and step.compensation_attempts not in numbers:
        # A compensation that failed for good: the saga gave up (its FAILED event).
        return Attempt(
            None,
            None,
            max(gave_up) if gave_up else None,
            Outcome.FAILED,
            step.compensation_attempts,
            step.compensation_task_id,
            step.compensation_error,
        )
    return None


def _retried(events: list[SagaEvent], sends: list[datetime]) -> list[Attempt]:
    """The attempts that failed and were retried, one per retry event; each retry's
    due time joins ``sends``."""
    attempts = []
    for event in events:
        words = RETRY_WORDS.search(event.detail)
        number = int(words.group(1)) if words else 0
        reason = words.group(2) if words else event.detail
        failed = Attempt(
            None, None, event.created_at, Outcome.FAILED, number, "", reason, event
        )
        attempts.append(_sent_by(failed, sends))
        # Due after its countdown; the countdown's words are rounded, and an attempt
        # that began a little before them was sent after the event all the same.
        countdown = float(words.group(3)) if words else 0.0
        sends += [event.created_at, event.created_at + timedelta(seconds=countdown)]
    return attempts


def _sent_by(attempt: Attempt, sends: list[datetime]) -> Attempt:
    """The attempt, sent at the latest send before it began (or ended)."""
    point = attempt.started or attempt.ended
    before = [t for t in sends if t is not None and (point is None or t <= point)]
    sent = max(before) if before else None
    return Attempt(
        sent,
        attempt.started,
        attempt.ended,
        attempt.outcome,
        attempt.number,
        attempt.task_id,
        attempt.detail,
        attempt.event,
    )


def _mark(event: SagaEvent) -> Mark:
    return Mark(event.created_at, event.kind, event.detail, event.actor)


def _turns(saga: Saga, steps, events) -> list[Turn]:
    turns = []
    failed = [s for s in steps if s.status == StepStatus.FAILED and s.finished_at]
    for event in events:
        if event.kind == SagaEventKind.COMPENSATION_STARTED:
            # The step's failure, if recorded, is when it turned (a choreographed
            # saga's tracker may log the event later than that).
            at = min(
                [event.created_at]
                + [s.finished_at for s in failed if s.name == event.step_name]
            )
            turns.append(Turn(at, "undo", f"undoing began: {event.step_name}"))
        elif event.kind == SagaEventKind.FAILED:
            turns.append(Turn(event.created_at, "failed", "saga FAILED"))
    if saga.finished_at and saga.status == SagaStatus.COMPLETED:
        turns.append(Turn(saga.finished_at, "completed", "completed"))
    elif saga.finished_at and saga.status == SagaStatus.COMPENSATED:
        turns.append(Turn(saga.finished_at, "compensated", "compensated"))
    return turns


# NAMES -------------------------------------------------------------------------------


def _unit_names(steps: list[SagaStep], definition) -> dict[str, tuple[int, Phase]]:
    names = {step.name: (step.index, Phase.ACTION) for step in steps}
    if definition is not None:
        names.update(unit_names(definition))
    return names


def unit_names(definition) -> dict[str, tuple[int, Phase]]:
    """Every name the audit trail gives a unit of the definition's sagas, to its
    (index, phase): a step's own name, and for an engine-run saga its task's name
    past the saga's ("tcc.cancel_stock" of "purchase.tcc.cancel_stock")."""
    names = {name: (i, Phase.ACTION) for i, name in enumerate(definition.step_names)}
    if definition.mode == Mode.CHOREOGRAPHY:
        names["end"] = (-1, Phase.END)  # the recovery sweep's name for its end
        return names
    for index, phase in definition.tasks():
        names[definition.task_name(index, phase).split(".", 1)[1]] = (index, phase)
    return names


def _label(definition, steps: list[SagaStep], index: int, phase: Phase) -> str:
    """A unit's name as the definition's diagram shows it."""
    if phase is Phase.ACTION:
        return steps[index].name
    if definition is None:
        return f"undo {steps[index].name}" if index >= 0 else "end"
    if definition.mode == Mode.CHOREOGRAPHY:
        if phase is Phase.END:
            return f"{definition.ended_by}: {definition.ends_undone_with}"
        step = definition.steps[index]
        return f"{step.by}: undo {step.name}"
    return definition.task_name(index, phase).rsplit(".", 1)[1]
