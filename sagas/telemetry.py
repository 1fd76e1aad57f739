"""What the engine tells operators: each outcome of a saga, counted and logged once.

One call per outcome, from the few places that decide it: a saga's status move
(``Saga.move_to``), a step done, failed, retried or undone, a copy of a message an
inbox dropped, outbox rows sent. Each counts in Prometheus metrics (in-process: in
multiprocess mode, PROMETHEUS_MULTIPROC_DIR, a write to a memory-mapped file) and logs
one structured line, once its transaction has committed: work that rolled back is
never counted. Nothing here runs SQL or sends a message, so a step pays microseconds.

The outbox backlog is measured at scrape time instead (``OutboxBacklog``), by the web
process, with one query on the outboxes' index of pending rows.
"""

import logging
from datetime import datetime
from functools import partial

from django.db import transaction
from django.utils import timezone
from prometheus_client import Counter, Histogram
from prometheus_client.core import GaugeMetricFamily

from sagas import registry
from sagas.definitions import Phase
from sagas.failures import TIMEOUT_ERRORS, Failure, FailureKind

logger = logging.getLogger("sagas.telemetry")

SAGA = ("saga", "mode")
STEP = ("saga", "mode", "step", "phase")
# Seconds: a step takes milliseconds to its timeout; a saga, to minutes under load.
STEP_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
SAGA_BUCKETS = (0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800)

STARTED = Counter("saga_started", "Sagas started (their transaction committed).", SAGA)
COMPLETED = Counter("saga_completed", "Sagas that completed.", SAGA)
COMPENSATED = Counter(
    "saga_compensated", "Sagas undone: every compensation done, the end run.", SAGA
)
FAILED = Counter(
    "saga_failed",
    "Sagas that became FAILED (an operator is needed; one retried then ends "
    "again and counts there too).",
    SAGA,
)
DURATION = Histogram(
    "saga_duration_seconds",
    "From start to end, of the sagas that completed or were compensated.",
    (*SAGA, "status"),
    buckets=SAGA_BUCKETS,
)
STEP_DURATION = Histogram(
    "saga_step_duration_seconds",
    "A step's action or compensation that committed, from its start to its commit "
    "(choreography: from the event that set it off to its outcome's).",
    STEP,
    buckets=STEP_BUCKETS,
)
STEP_FAILURES = Counter(
    "saga_step_failures",
    "Failed attempts, by kind: business, timeout, transient, unexpected.",
    (*STEP, "kind"),
)
STEP_RETRIES = Counter(
    "saga_step_retries", "Attempts sent again after a failure.", STEP
)
STEP_TIMEOUTS = Counter(
    "saga_step_timeouts", "Attempts that ran past their deadline, or were lost.", STEP
)
STEP_COMPENSATIONS = Counter(
    "saga_step_compensations",
    "Steps undone (their compensation done).",
    (*SAGA, "step"),
)
INBOX_DUPLICATES = Counter(
    "saga_inbox_duplicates",
    "Copies of a message its consumer had handled already, dropped by its inbox.",
    ("app", "consumer"),
)
OUTBOX_SENT = Counter(
    "saga_outbox_sent", "Outbox rows the relay handed to the broker.", ("app",)
)
# What a status move counts, by the status it reaches (SagaStatus values: sagas.models
# imports this module, so it is not imported here).
ENDS = {"COMPLETED": COMPLETED, "COMPENSATED": COMPENSATED, "FAILED": FAILED}


def after_commit(function, *args, **kwargs) -> None:
    """Run ``function`` once the current transaction commits (at once outside one);
    never if it rolls back. An error in it is logged, never raised into the work."""
    transaction.on_commit(partial(function, *args, **kwargs), robust=True)


def step_of(definition, index: int, phase: Phase) -> str:
    """The step a unit of an orchestrated saga works on ("end" for its end)."""
    return "end" if phase is Phase.END else definition.steps[index].name


# SAGAS -------------------------------------------------------------------------------


def saga_started(saga) -> None:
    after_commit(_saga_started, saga)


def _saga_started(saga) -> None:
    STARTED.labels(saga.name, saga.mode).inc()
    logger.info("saga.started", extra={"saga": saga.name, **_ids(saga)})


def saga_moved(saga) -> None:
    """The saga's status changed (called by ``Saga.move_to``)."""
    after_commit(_saga_moved, saga, saga.status)


def _saga_moved(saga, status: str) -> None:
    extra = {"saga": saga.name, "status": status, **_ids(saga)}
    if status in ENDS:
        ENDS[status].labels(saga.name, saga.mode).inc()
    if status in ("COMPLETED", "COMPENSATED") and saga.finished_at:
        seconds = (saga.finished_at - saga.created_at).total_seconds()
        DURATION.labels(saga.name, saga.mode, status).observe(seconds)
        extra["duration_ms"] = round(seconds * 1000, 1)
    level = logging.ERROR if status == "FAILED" else logging.INFO
    logger.log(level, f"saga.{status.lower()}", extra=extra)


# STEPS -------------------------------------------------------------------------------


def step_done(
    saga,
    step: str,
    phase: str,
    started: datetime | None = None,
    finished: datetime | None = None,
) -> None:
    """A step's action or compensation committed (``started`` to ``finished``)."""
    after_commit(_step_done, saga, step, str(phase), started, finished)


def _step_done(saga, step, phase, started, finished) -> None:
    extra = {"saga": saga.name, "phase": phase, **_ids(saga, step)}
    if started is not None and finished is not None:
        seconds = max((finished - started).total_seconds(), 0.0)
        STEP_DURATION.labels(saga.name, saga.mode, step, phase).observe(seconds)
        extra["duration_ms"] = round(seconds * 1000, 1)
    if phase == Phase.COMPENSATION:
        STEP_COMPENSATIONS.labels(saga.name, saga.mode, step).inc()
        logger.info("saga.step.compensated", extra=extra)
    else:
        logger.info("saga.step.completed", extra=extra)


def step_failed(saga, step: str, phase: str, failure: Failure, *, attempt=None):
    """A failed attempt was recorded (a timeout, a refusal, an outage, a bug)."""
    after_commit(_step_failed, saga, step, str(phase), failure, attempt)


def _step_failed(saga, step, phase, failure: Failure, attempt) -> None:
    STEP_FAILURES.labels(saga.name, saga.mode, step, phase, failure.kind).inc()
    if failure.kind is FailureKind.TIMEOUT:
        STEP_TIMEOUTS.labels(saga.name, saga.mode, step, phase).inc()
    logger.warning(
        "saga.step.failed",
        extra={
            "saga": saga.name,
            "phase": phase,
            "kind": str(failure.kind),
            "error_class": failure.error_class,
            # A refusal's words name the customer's amounts: they stay on the saga
            # (for staff), out of the logs. An outage's or a bug's are logged.
            "error": "" if failure.kind is FailureKind.BUSINESS else failure.reason,
            "attempt": attempt,
            **_ids(saga, step),
        },
    )


def step_retried(saga, step: str, phase: str, *, attempt: int, countdown: float):
    """The attempt after ``attempt`` failed ones is sent, to start in ``countdown``."""
    after_commit(_step_retried, saga, step, str(phase), attempt, countdown)


def _step_retried(saga, step, phase, attempt, countdown) -> None:
    STEP_RETRIES.labels(saga.name, saga.mode, step, phase).inc()
    logger.info(
        "saga.step.retry",
        extra={
            "saga": saga.name,
            "phase": phase,
            "attempt": attempt + 1,
            "countdown_s": countdown,
            **_ids(saga, step),
        },
    )


def reaction_retried(
    name: str,
    mode: str,
    step: str,
    error: BaseException,
    *,
    phase: str,
    refused: bool = False,
) -> None:
    """A choreographed reaction failed (rolled back whole) and is sent again: there
    is no saga row at hand, nor a transaction, and the correlation context (its
    task's headers) says which saga. ``phase``: what the reaction does (its step's
    work, its undo, the end); ``refused``: a refusal past the pivot, tried again."""
    if refused:
        kind = FailureKind.BUSINESS
    elif isinstance(error, TIMEOUT_ERRORS):
        kind = FailureKind.TIMEOUT
    else:
        kind = FailureKind.TRANSIENT
    labels = (name, mode, step, str(phase))
    STEP_RETRIES.labels(*labels).inc()
    STEP_FAILURES.labels(*labels, kind).inc()
    if kind is FailureKind.TIMEOUT:
        STEP_TIMEOUTS.labels(*labels).inc()
    logger.warning(
        "saga.step.retry",
        extra={
            "saga": name,
            "phase": str(phase),
            "kind": str(kind),
            "error_class": type(error).__name__,
            # A refusal's words name the customer's amounts: kept out of the logs.
            "error": "" if refused else str(error)[:2000],
        },
    )


# MESSAGING ---------------------------------------------------------------------------


def inbox_duplicate(model, *, consumer: str, message_id: str, topic: str) -> None:
    after_commit(_inbox_duplicate, model._meta.app_label, consumer, message_id, topic)


def _inbox_duplicate(app: str, consumer: str, message_id: str, topic: str) -> None:
    INBOX_DUPLICATES.labels(app, consumer).inc()
    logger.info(
        "saga.inbox.duplicate",
        extra={"consumer": consumer, "message_id": message_id, "topic": topic},
    )


def outbox_sent(row) -> None:
    """The relay handed an outbox row to the broker (the relay marks it published
    once its batch commits; a row sent again after a crash shows twice)."""
    OUTBOX_SENT.labels(row._meta.app_label).inc()
    logger.info(
        "outbox.sent",
        extra={
            "topic": row.topic,
            "message_id": str(row.message_id),
            "app": row._meta.app_label,
            **{k: v for k, v in row.headers.items() if k != "reason"},
        },
    )


class OutboxBacklog:
    """Scrape-time gauges: each outbox's pending rows and the age of its oldest (one
    query over the outboxes' partial index of pending rows)."""

    def collect(self):
        from django.db import DatabaseError

        from sagas import selectors  # it imports sagas.models, which imports this

        up = GaugeMetricFamily(
            "saga_outbox_up",
            "1 if the outboxes could be measured now (the database answered).",
        )
        try:
            measured = selectors.outbox_backlog()
        except DatabaseError:
            # The database is away: every counter still answers, which may be
            # what tells why; the backlog is unknown, and says so.
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up
        backlog = GaugeMetricFamily(
            "saga_outbox_backlog", "Outbox rows not yet published.", labels=["app"]
        )
        oldest = GaugeMetricFamily(
            "saga_outbox_oldest_pending_age_seconds",
            "Age of the oldest outbox row not yet published (0: none).",
            labels=["app"],
        )
        now = timezone.now()
        for app, pending, since in measured:
            backlog.add_metric([app], pending)
            age = (now - since).total_seconds() if since else 0.0
            oldest.add_metric([app], max(age, 0.0))
        yield backlog
        yield oldest


# HELPERS -----------------------------------------------------------------------------


def _ids(saga, step: str | None = None) -> dict:
    more = {"step": step} if step is not None else {}
    return registry.headers_of(saga, **more)
