"""The saga dashboard: figures over every saga, each a link into the saga list
filtered to exactly the sagas it counts (the figures and the filters share their
conditions, in sagas.statistics)."""

from dataclasses import dataclass
from datetime import datetime, timedelta
from urllib.parse import urlencode

from django.urls import reverse

from sagas import history, statistics
from sagas.definitions import Mode
from sagas.models import SagaStatus
from sagas.statistics import WINDOWS, Ended, StepFigure

SAGA_LIST = "admin:sagas_saga_changelist"


@dataclass(frozen=True)
class Figure:
    text: str
    url: str
    key: str  # stable, for tests and browsers: "ended-1h-tcc-completed"


def saga_list_url(**filters: str) -> str:
    return reverse(SAGA_LIST) + "?" + urlencode(sorted(filters.items()))


def dashboard(*, now: datetime) -> dict:
    """Everything the dashboard shows, read at ``now``."""
    modes = [(mode, label) for mode, label in Mode.choices]
    return {
        "now": now,
        "modes": modes,
        "windows": [(key, label) for key, (_, label) in WINDOWS.items()],
        "at_work": _at_work(modes),
        "ended": [
            (window, label, _ended(window, modes, now))
            for window, (_, label) in WINDOWS.items()
        ],
        "steps": _steps(now),
        "attention": statistics.sagas_needing_attention(now=now),
        "attention_url": saga_list_url(attention="needed"),
        "overdue_url": saga_list_url(attention="overdue"),
        "backlogs": [
            _backlog(backlog, now) for backlog in statistics.outbox_backlogs()
        ],
    }


def _at_work(modes) -> list[tuple[str, list[Figure]]]:
    """A row per status (at work, or FAILED): its count per mode, then in all."""
    counts = statistics.sagas_at_work()
    rows = []
    for status in statistics.AT_WORK:
        cells = [
            Figure(
                str(counts.get((status, mode), 0)),
                saga_list_url(status__exact=status, mode__exact=mode),
                f"at-work-{status}-{mode}",
            )
            for mode, _ in modes
        ]
        total = sum(counts.get((status, mode), 0) for mode, _ in modes)
        cells.append(
            Figure(str(total), saga_list_url(status__exact=status), f"at-work-{status}")
        )
        rows.append((status, cells))
    return rows


def _ended(window: str, modes, now: datetime) -> list[tuple[str, list[Figure]]]:
    """A row per mode, then one for all: how many completed and were undone, the
    completion rate, p50 and p95 of their durations."""
    figures = statistics.sagas_ended(window=window, now=now)
    rows = []
    for mode, label in [*modes, (None, "all")]:
        ended = figures.get(mode, Ended())
        chosen = {"ended": window} | ({"mode__exact": mode} if mode else {})
        key = f"ended-{window}-{mode or 'all'}"
        every = saga_list_url(**chosen)
        rows.append(
            (
                label,
                [
                    Figure(
                        str(ended.completed),
                        saga_list_url(**chosen, status__exact=SagaStatus.COMPLETED),
                        f"{key}-completed",
                    ),
                    Figure(
                        str(ended.compensated),
                        saga_list_url(**chosen, status__exact=SagaStatus.COMPENSATED),
                        f"{key}-compensated",
                    ),
                    Figure(_rate(ended.completion_rate), every, f"{key}-rate"),
                    Figure(history.duration(ended.p50), every, f"{key}-p50"),
                    Figure(history.duration(ended.p95), every, f"{key}-p95"),
                ],
            )
        )
    return rows


def _rate(rate: float | None) -> str:
    return "-" if rate is None else f"{rate:.1%}"


@dataclass(frozen=True)
class StepRow:
    saga: str
    mode: str
    step: str
    figures: list[Figure | None]  # per StepFigure, per window; None: nothing


def _steps(now: datetime) -> list[StepRow]:
    """Every unit sagas that ended lately ran into trouble at, with how many sagas
    were undone from it, had it time out, had it retried, per window."""
    found: dict[tuple[str, str, str], dict] = {}
    for window in WINDOWS:
        for trouble in statistics.steps_in_trouble(window=window, now=now):
            cells = found.setdefault((trouble.saga, trouble.mode, trouble.unit), {})
            for figure, count in trouble.counts.items():
                cells[figure, window] = Figure(
                    str(count),
                    saga_list_url(
                        ended=window,
                        name=trouble.saga,
                        mode__exact=trouble.mode,
                        **{figure: trouble.unit},
                    ),
                    f"steps-{window}-{trouble.mode}-{trouble.unit}-{figure}",
                )
    return [
        StepRow(
            saga,
            mode,
            unit,
            [cells.get((f, w)) for f in StepFigure for w in WINDOWS],
        )
        for (saga, mode, unit), cells in sorted(found.items())
    ]


@dataclass(frozen=True)
class BacklogRow:
    app: str
    pending: int
    oldest_age: timedelta | None
    url: str


def _backlog(backlog: statistics.Backlog, now: datetime) -> BacklogRow:
    meta = backlog.model._meta
    url = reverse(f"admin:{meta.app_label}_{meta.model_name}_changelist")
    return BacklogRow(
        meta.app_label, backlog.pending, backlog.age(now), f"{url}?published=no"
    )
