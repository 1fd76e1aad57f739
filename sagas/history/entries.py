"""A saga's history: every lane's attempts and marks as entries, oldest first."""

from sagas.definitions import Phase
from sagas.history.records import (
    SAGA_LANE,
    Attempt,
    Entry,
    Happening,
    Lane,
    Outcome,
)
from sagas.models import Saga, SagaEventKind

EVENT_HAPPENINGS = {
    SagaEventKind.RETRY_SCHEDULED: Happening.RETRYING,
    SagaEventKind.RECOVERED: Happening.RESENT,
    SagaEventKind.COMPENSATION_STARTED: Happening.COMPENSATION_STARTED,
    SagaEventKind.FAILED: Happening.GAVE_UP,
    SagaEventKind.ATTENTION: Happening.ATTENTION,
    SagaEventKind.OPERATOR_RETRY: Happening.OPERATOR_RETRY,
    SagaEventKind.OPERATOR_CANCEL: Happening.OPERATOR_CANCEL,
}


ENDINGS = {
    Outcome.DONE: Happening.SUCCEEDED,
    Outcome.FAILED: Happening.FAILED,
    Outcome.UNDONE: Happening.COMPENSATED,
}


def history_entries(saga: Saga, lanes: list[Lane]) -> list[Entry]:
    """Every lane's attempts and marks as history, oldest first."""
    entries = [
        Entry(saga.created_at, Happening.CREATED, SAGA_LANE, saga.name, rank=0),
    ]
    for lane in lanes:
        for attempt in lane.attempts:
            entries += _attempt_entries(lane, attempt)
        for mark in lane.marks:
            entries.append(
                Entry(
                    mark.at,
                    EVENT_HAPPENINGS.get(mark.kind, Happening.ATTENTION),
                    lane.label,
                    mark.detail,
                    mark.actor,
                    kind=mark.kind,
                )
            )
    if saga.finished_at:
        entries.append(
            Entry(saga.finished_at, Happening.ENDED, SAGA_LANE, saga.status, rank=4)
        )
    return sorted(entries, key=lambda entry: (entry.at, entry.rank))


def _attempt_entries(lane: Lane, attempt: Attempt) -> list[Entry]:
    entries = []
    if attempt.begun is not None:
        detail = f"attempt {attempt.number}" if attempt.number else ""
        if not attempt.exact:
            detail = f"{detail} (start not recorded: when its work was sent)".strip()
        entries.append(
            Entry(
                attempt.begun,
                Happening.STARTED,
                lane.label,
                detail,
                exact=attempt.exact,
                rank=3,
            )
        )
    if attempt.ended is None:
        return entries
    event = attempt.event
    if event is not None:
        happening, detail, actor = Happening.RETRYING, event.detail, event.actor
    elif lane.phase is Phase.END:
        happening, detail, actor = Happening.SUCCEEDED, "", "system"
    else:
        happening, detail, actor = ENDINGS[attempt.outcome], attempt.detail, "system"
    entries.append(
        Entry(
            attempt.ended,
            happening,
            lane.label,
            detail,
            actor,
            task_id=attempt.task_id,
            kind=event.kind if event is not None else "",
            rank=1,
        )
    )
    return entries
