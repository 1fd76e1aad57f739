"""Figures over many sagas, for the admin's dashboard: what is at work, how sagas
ended and how long they took, where they were undone, retried or timed out, and the
outboxes' backlog.

Every query is bounded by an index: sagas at work or FAILED by their status
(saga_status_name), sagas that ended within a window by when they ended
(saga_ended_at, partial), their events through the saga (the foreign key's index),
pending outbox rows by the relay's own partial index. The list filters the
dashboard links to use the same conditions (the ``*_q`` functions), so a figure and
the list it opens count the same sagas.
"""

from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from django.db.models import (
    Aggregate,
    Count,
    DurationField,
    Exists,
    ExpressionWrapper,
    F,
    Func,
    OuterRef,
    Q,
    Value,
)

from sagas import selectors
from sagas.failures import PUBLIC_REASONS, TIMEOUT_ERRORS, FailureKind
from sagas.messaging.outbox import outbox_models
from sagas.models import (
    ENDED_STATUSES,
    Saga,
    SagaEvent,
    SagaEventKind,
    SagaStatus,
)

#: The windows the dashboard looks back over, by the list filter's value.
WINDOWS = {
    "1h": (timedelta(hours=1), "last hour"),
    "24h": (timedelta(days=1), "last 24 hours"),
}
#: What the dashboard counts as at work now: the active statuses, and FAILED.
AT_WORK = (
    SagaStatus.PENDING,
    SagaStatus.RUNNING,
    SagaStatus.COMPENSATING,
    SagaStatus.FAILED,
)
ATTENTION_LISTED = 10

DURATION = ExpressionWrapper(F("finished_at") - F("created_at"), DurationField())

# How a timeout reads in the audit trail: the errors the engine classifies as one
# (sagas.failures), a statement cut off at its step's deadline, work lost until it
# counted as timed out (the recovery sweep), and what a choreographed step's failure
# event says of one. The trail records reasons, not their kind.
TIMEOUT_WORDS = (
    *(f"{error.__name__}:" for error in TIMEOUT_ERRORS),
    "statement timeout",
    "its work was lost",
    PUBLIC_REASONS[FailureKind.TIMEOUT],
)


class Percentile(Aggregate):
    """PostgreSQL's ``percentile_cont``: the value ``fraction`` of the rows fall
    below, interpolated between the two nearest."""

    function = "PERCENTILE_CONT"
    template = "%(function)s(%(fraction)s) WITHIN GROUP (ORDER BY %(expressions)s)"
    output_field = DurationField()

    def __init__(self, expression, *, fraction: float) -> None:
        # A number of the code's own, never a user's: it goes into the SQL text.
        super().__init__(expression, fraction=float(fraction))


# CONDITIONS (shared with the list filters) -------------------------------------------


def ended_within_q(window: str, *, now: datetime) -> Q:
    """Sagas that ended (COMPLETED or COMPENSATED) within the window: served by the
    partial index on when they ended."""
    since = now - WINDOWS[window][0]
    return Q(finished_at__gte=since, status__in=ENDED_STATUSES)


class StepFigure(StrEnum):
    """What happened at a step, as its list filter's parameter names it."""

    UNDONE = "undone_at"  # the undoing began there (a failure, a timeout, a cancel)
    TIMED_OUT = "timed_out_at"
    RETRIED = "retried_at"


STEP_EVENTS = {
    StepFigure.UNDONE: Q(kind=SagaEventKind.COMPENSATION_STARTED),
    StepFigure.TIMED_OUT: Q(
        kind__in=[
            SagaEventKind.COMPENSATION_STARTED,
            SagaEventKind.RETRY_SCHEDULED,
        ]
    )
    & Q.create([("detail__contains", words) for words in TIMEOUT_WORDS], "OR"),
    StepFigure.RETRIED: Q(kind=SagaEventKind.RETRY_SCHEDULED),
}


# The unit an event is about, whatever the trail calls it: a retry names the task
# past the saga's name ("tcc.try_stock"), the undoing the step ("try_stock").
UNIT = Func(F("step_name"), Value(r"^.*\."), Value(""), function="regexp_replace")


def step_figure_q(figure: StepFigure, unit: str) -> Q:
    """Sagas whose trail holds ``figure`` at ``unit`` (a step, a compensation)."""
    events = SagaEvent.objects.annotate(unit=UNIT).filter(
        STEP_EVENTS[figure], saga=OuterRef("pk"), unit=unit
    )
    return Q(Exists(events))


# FIGURES -----------------------------------------------------------------------------


def sagas_at_work() -> dict[tuple[str, str], int]:
    """How many sagas are at work now or FAILED, by (status, mode)."""
    rows = (
        Saga.objects.filter(status__in=AT_WORK)
        .values_list("status", "mode")
        .annotate(count=Count("pk"))
        .order_by()
    )
    return {(status, mode): count for status, mode, count in rows}


@dataclass(frozen=True)
class Ended:
    """The sagas of a mode (or all) that ended within a window."""

    completed: int = 0
    compensated: int = 0
    p50: timedelta | None = None
    p95: timedelta | None = None

    @property
    def total(self) -> int:
        return self.completed + self.compensated

    @property
    def completion_rate(self) -> float | None:
        """The share that completed; the rest were undone. A FAILED saga has not
        ended (an operator may take it up): the dashboard shows it apart."""
        return self.completed / self.total if self.total else None


def sagas_ended(*, window: str, now: datetime) -> dict[str | None, Ended]:
    """By mode (None: every mode): how many ended within the window, completed and
    compensated, and the 50th and 95th percentile of their durations (created to
    ended). Two queries."""
    ended = Saga.objects.filter(ended_within_q(window, now=now))
    figures = {
        "completed": Count("pk", filter=Q(status=SagaStatus.COMPLETED)),
        "compensated": Count("pk", filter=Q(status=SagaStatus.COMPENSATED)),
        "p50": Percentile(DURATION, fraction=0.5),
        "p95": Percentile(DURATION, fraction=0.95),
    }
    by_mode = ended.values("mode").annotate(**figures).order_by()
    result = {row.pop("mode"): Ended(**row) for row in by_mode}
    result[None] = Ended(**ended.aggregate(**figures))
    return result


@dataclass(frozen=True)
class StepTrouble:
    """Of the sagas that ended within a window: how many ran into each figure at one
    unit of one definition."""

    saga: str
    mode: str
    unit: str  # a step or a compensation: "try_stock", "refund_payment"
    counts: dict[StepFigure, int]


def steps_in_trouble(*, window: str, now: datetime) -> list[StepTrouble]:
    """Units where sagas that ended within the window were undone, timed out or
    retried, with how many sagas each. One query."""
    events = SagaEvent.objects.filter(
        saga__in=Saga.objects.filter(ended_within_q(window, now=now))
    )
    counts = {
        str(figure): Count("saga", distinct=True, filter=condition)
        for figure, condition in STEP_EVENTS.items()
    }
    rows = (
        events.filter(Q.create(list(STEP_EVENTS.values()), "OR"))
        .exclude(step_name="")
        .annotate(unit=UNIT)
        .values("saga__name", "saga__mode", "unit")
        .annotate(**counts)
        .order_by("saga__name", "saga__mode", "unit")
    )
    return [
        StepTrouble(
            row["saga__name"],
            row["saga__mode"],
            row["unit"],
            {figure: row[figure] for figure in StepFigure if row[figure]},
        )
        for row in rows
    ]


@dataclass(frozen=True)
class Attention:
    failed: int
    flagged: int  # active, and unable to move on its own
    overdue: int
    listed: list[Saga]  # the newest of them

    @property
    def needed(self) -> int:
        return self.failed + self.flagged


def sagas_needing_attention(*, now: datetime) -> Attention:
    """The counts the health check gives, and the newest sagas that need an
    operator (as the admin's Needs attention filter lists them)."""
    counts = selectors.sagas_needing_attention(now=now)
    listed = (
        Saga.objects.filter(selectors.sagas_needing_attention_q())
        .defer("context")
        .order_by("-pk")[:ATTENTION_LISTED]
    )
    return Attention(
        counts["failed"], counts["attention"], counts["overdue"], list(listed)
    )


@dataclass(frozen=True)
class Backlog:
    model: type
    pending: int
    oldest: datetime | None  # when the oldest pending row was written

    def age(self, now: datetime) -> timedelta | None:
        return now - self.oldest if self.oldest else None


def outbox_backlogs() -> list[Backlog]:
    """Every app's outbox: its rows waiting for the relay, and the oldest one's time
    (the lowest id: ids follow the order rows were written in closely enough)."""
    backlogs = []
    for model in outbox_models():
        pending = model.objects.filter(published_at__isnull=True, dead_at__isnull=True)
        oldest = pending.order_by("pk").values_list("created_at", flat=True).first()
        backlogs.append(Backlog(model, pending.count(), oldest))
    return backlogs
