"""A saga's page: its timeline, its steps and its history, made from its records
(sagas.history) on one read of the saga, its steps and its events."""

from dataclasses import dataclass
from datetime import datetime, timedelta

from django.utils.html import format_html
from django.utils.safestring import mark_safe

from sagas import history, registry, timeline
from sagas.admin.links import flower_task_link
from sagas.exceptions import DefinitionError
from sagas.history import Attempt, Entry, Lane, SagaPath
from sagas.models import Saga, SagaStep


@dataclass(frozen=True)
class StepRow:
    """A step and its compensation, as the steps table shows them."""

    step: SagaStep
    took: str  # the last attempt's duration; "≤" where its start is not recorded
    task: str  # a link to Flower
    undo: str  # the compensation's name, if it ran
    undo_took: str
    undo_task: str


@dataclass(frozen=True)
class HistoryRow:
    entry: Entry
    since_start: str  # time since the saga was created
    task: str


def saga_page(saga: Saga, *, now: datetime) -> dict:
    """What the saga's page draws below its summary (the steps and events are read
    once, prefetched with the saga)."""
    steps = list(saga.steps.all())
    events = list(saga.events.all())
    try:
        definition = registry.definition_of(saga)
    except DefinitionError:
        definition = None  # removed: the records still tell the path
    path = history.saga_path(saga, steps, events, definition, now=now)
    drawing = timeline.svg(path, title=f"saga {saga.pk}: {saga.name} ({saga.mode})")
    return {
        "path": path,
        # Safe: the drawing escapes every label and tooltip; the rest is its own.
        "timeline": mark_safe(drawing),
        "step_rows": [_step_row(step, path) for step in steps],
        "history_rows": [_history_row(entry, path) for entry in path.entries],
    }


def instant_html(moment: datetime | None) -> str:
    """A <time> to the millisecond, its date and clock apart so a cell may wrap."""
    if moment is None:
        return "-"
    date, clock = history.instant(moment).split(" ")
    return format_html(
        '<time datetime="{}"><span class="date">{}</span> '
        '<span class="clock">{}</span></time>',
        moment.isoformat(),
        date,
        clock,
    )


def _step_row(step: SagaStep, path: SagaPath) -> StepRow:
    action, undo = path.action(step.index), path.undo(step.index)
    return StepRow(
        step,
        _took(_last(action)),
        flower_task_link(step.task_id),
        undo.label if undo else "",
        _took(_last(undo)),
        flower_task_link(step.compensation_task_id),
    )


def _last(lane: Lane | None) -> Attempt | None:
    return lane.last if lane is not None else None


def _took(attempt: Attempt | None) -> str:
    if attempt is None or attempt.ended is None or attempt.duration is None:
        return "-"
    took = history.duration(attempt.duration)
    return took if attempt.exact else f"≤ {took}"


def _history_row(entry: Entry, path: SagaPath) -> HistoryRow:
    return HistoryRow(
        entry,
        "+" + history.duration(max(entry.at - path.start, timedelta(0))),
        flower_task_link(entry.task_id),
    )
