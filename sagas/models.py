"""Saga state in PostgreSQL: sagas, steps, their audit trail, barriers, probes, and
the engine's outbox."""

from django.conf import settings
from django.db import models
from django.db.models import Q

from sagas import telemetry
from sagas.definitions import Mode
from sagas.messaging.outbox import AbstractOutboxMessage
from shop.states import transition


class SagaStatus(models.TextChoices):
    PENDING = "PENDING"
    RUNNING = "RUNNING"
    COMPENSATING = "COMPENSATING"
    COMPLETED = "COMPLETED"
    COMPENSATED = "COMPENSATED"
    FAILED = "FAILED"  # stuck: a compensation (or a step after the pivot) gave up


SAGA_MOVES = {
    SagaStatus.PENDING: frozenset({SagaStatus.RUNNING, SagaStatus.COMPENSATING}),
    SagaStatus.RUNNING: frozenset(
        {SagaStatus.COMPLETED, SagaStatus.COMPENSATING, SagaStatus.FAILED}
    ),
    SagaStatus.COMPENSATING: frozenset({SagaStatus.COMPENSATED, SagaStatus.FAILED}),
    SagaStatus.FAILED: frozenset({SagaStatus.RUNNING, SagaStatus.COMPENSATING}),
}
#: Statuses with work in flight, watched by the recovery sweep.
ACTIVE_STATUSES = frozenset(
    {SagaStatus.PENDING, SagaStatus.RUNNING, SagaStatus.COMPENSATING}
)
#: Statuses a saga never leaves.
ENDED_STATUSES = frozenset({SagaStatus.COMPLETED, SagaStatus.COMPENSATED})


class StepStatus(models.TextChoices):
    PENDING = "PENDING"
    RUNNING = "RUNNING"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"
    COMPENSATED = "COMPENSATED"


STEP_MOVES = {
    # A step is RUNNING from the moment it is dispatched; the first one is dispatched by
    # the relay, so it goes from PENDING straight to its outcome.
    StepStatus.PENDING: frozenset(
        {StepStatus.RUNNING, StepStatus.SUCCEEDED, StepStatus.FAILED}
    ),
    StepStatus.RUNNING: frozenset(
        # back to PENDING: dispatched, then withdrawn before it ran (a cancelled saga)
        {StepStatus.SUCCEEDED, StepStatus.FAILED, StepStatus.PENDING}
    ),
    StepStatus.SUCCEEDED: frozenset({StepStatus.COMPENSATED}),
    StepStatus.FAILED: frozenset({StepStatus.RUNNING}),  # an operator's retry
}


class Saga(models.Model):
    name = models.CharField(max_length=100)
    mode = models.CharField(
        max_length=20, choices=Mode.choices, default=Mode.ORCHESTRATION
    )
    status = models.CharField(
        max_length=20, choices=SagaStatus.choices, default=SagaStatus.PENDING
    )
    current_step = models.PositiveSmallIntegerField(default=0)
    context = models.JSONField(default=dict)
    idempotency_key = models.CharField(max_length=200, null=True, blank=True)  # noqa: DJ001
    # The engine's own rows reference their saga (and it its owner) without a
    # database constraint: they are written with it, in its transaction, and never
    # moved, so a constraint would only add a check (and a row lock on the parent)
    # at every commit. Django still protects and cascades them.
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        db_constraint=False,
    )
    error = models.TextField(blank=True)  # technical: for staff
    # Why it was undone, in words its customer may read (no class or task names).
    reason = models.TextField(blank=True)
    # Set while it cannot move on its own and is not FAILED; cleared when it moves.
    attention = models.TextField(blank=True)
    # When the work in flight was handed to the broker (or, after a countdown, is due
    # to start): the recovery sweep proves that work lost against this, never
    # against the deadline alone, which a queue backlog passes too.
    sent_at = models.DateTimeField(null=True, blank=True)
    # When the work in flight is overdue if nothing has moved by then.
    deadline_at = models.DateTimeField(null=True, blank=True)
    recoveries = models.PositiveSmallIntegerField(default=0)
    # Bumped by every decision that sends new work (a retry, a compensation, an
    # operator); a task or errback of an older one is stale. A resend of the same work
    # keeps it: its copies apply once under the saga lock, and the later stops.
    generation = models.PositiveIntegerField(default=0)
    end_attempts = models.PositiveSmallIntegerField(default=0)  # of on_compensated
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["name", "idempotency_key"],
                condition=Q(idempotency_key__isnull=False),
                name="saga_unique_idempotency_key",
            ),
        ]
        indexes = [
            models.Index(
                fields=["deadline_at"],
                name="saga_active_deadline",
                condition=Q(status__in=["PENDING", "RUNNING", "COMPENSATING"]),
            ),
            models.Index(fields=["status", "name"], name="saga_status_name"),
            # Sagas that ended, by when: the admin dashboard's windows
            # (sagas.statistics). Written once per saga, as it ends.
            models.Index(
                fields=["finished_at"],
                name="saga_ended_at",
                condition=Q(finished_at__isnull=False),
            ),
        ]

    def __str__(self) -> str:
        return f"{self.name} #{self.pk} {self.status}"

    def move_to(self, status: str) -> None:
        self.status = transition(
            self.status, status, SAGA_MOVES, what=f"saga {self.pk}"
        )
        telemetry.saga_moved(self)  # counted and logged once it commits


class SagaStep(models.Model):
    saga = models.ForeignKey(  # no database constraint: see Saga.owner
        Saga, related_name="steps", on_delete=models.CASCADE, db_constraint=False
    )
    index = models.PositiveSmallIntegerField()
    name = models.CharField(max_length=100)
    status = models.CharField(
        max_length=20, choices=StepStatus.choices, default=StepStatus.PENDING
    )
    attempts = models.PositiveIntegerField(default=0)
    # Of those attempts, the ones that failed with an unexpected error (a bug): they
    # have a budget of their own (SAGA_UNEXPECTED_RETRIES).
    unexpected_failures = models.PositiveIntegerField(default=0)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    error = models.TextField(blank=True)
    task_id = models.CharField(max_length=255, blank=True)
    compensation_attempts = models.PositiveIntegerField(default=0)
    compensated_at = models.DateTimeField(null=True, blank=True)
    compensation_error = models.TextField(blank=True)
    compensation_task_id = models.CharField(max_length=255, blank=True)

    class Meta:
        ordering = ["saga_id", "index"]
        constraints = [
            models.UniqueConstraint(
                fields=["saga", "index"], name="saga_step_unique_index"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.index}. {self.name} {self.status}"

    def move_to(self, status: str) -> None:
        self.status = transition(
            self.status,
            status,
            STEP_MOVES,
            what=f"step {self.name} of saga {self.saga_id}",
        )

    @property
    def duration_ms(self) -> float | None:
        if self.started_at and self.finished_at:
            return round((self.finished_at - self.started_at).total_seconds() * 1000, 1)
        return None


class SagaEventKind(models.TextChoices):
    """What happened off the happy path; the happy path is in the step rows."""

    RETRY_SCHEDULED = "RETRY_SCHEDULED"
    COMPENSATION_STARTED = "COMPENSATION_STARTED"
    FAILED = "FAILED"
    RECOVERED = "RECOVERED"
    ATTENTION = "ATTENTION"
    OPERATOR_RETRY = "OPERATOR_RETRY"
    OPERATOR_CANCEL = "OPERATOR_CANCEL"


class SagaEvent(models.Model):
    """The audit trail: failures, retries, recoveries and who did what, and when."""

    saga = models.ForeignKey(Saga, related_name="events", on_delete=models.CASCADE)
    kind = models.CharField(max_length=30, choices=SagaEventKind.choices)
    step_name = models.CharField(max_length=100, blank=True)
    actor = models.CharField(max_length=150, default="system")
    detail = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["id"]

    def __str__(self) -> str:
        return f"{self.kind} {self.step_name} by {self.actor}"


class OutboxMessage(AbstractOutboxMessage):
    """The engine's own events: each one, once published, sends a saga's next chain
    (or, for a choreographed saga, announces a step the recovery sweep timed out)."""


class BarrierOp(models.TextChoices):
    TRY = "try"  # a TCC try, or a choreographed step's action
    CONFIRM = "confirm"
    CANCEL = "cancel"  # a TCC cancel, or a choreographed step's undo


class Barrier(models.Model):
    """One phase of one participant of one saga, recorded in the transaction of its
    business change (sagas.barriers), as DTM's barrier and Seata's fence do.

    The unique row makes each phase happen once; a cancel that finds no try records
    one in the try's place (the null compensation), so the try, if it ever comes, finds
    itself done and does nothing (the hanging case).
    """

    saga = models.ForeignKey(  # no database constraint: see Saga.owner
        Saga, related_name="barriers", on_delete=models.CASCADE, db_constraint=False
    )
    branch = models.CharField(max_length=100)  # the participant, or the step
    op = models.CharField(max_length=10, choices=BarrierOp.choices)
    reason = models.CharField(max_length=20)  # the op that wrote it: "cancel" on a try
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["id"]
        constraints = [
            models.UniqueConstraint(
                fields=["saga", "branch", "op"], name="barrier_once_per_phase"
            ),
        ]

    def __str__(self) -> str:
        return f"saga {self.saga_id} {self.branch} {self.op} ({self.reason})"


class QueueProbe(models.Model):
    """The probe on its way down a saga queue, if any (sagas.probes).

    A broker queue is first in, first out: once a probe sent at T has reached a
    worker, every message sent to that queue before T has been taken by one. So work
    sent before T that still has not moved was lost, not queued behind a backlog.
    """

    queue = models.CharField(max_length=200, primary_key=True)
    sent_at = models.DateTimeField(null=True, blank=True)  # None: none on its way

    def __str__(self) -> str:
        return f"probe of queue {self.queue} sent {self.sent_at}"


class QueueProbeArrival(models.Model):
    """A probe that reached a worker: the queue was consumed up to ``sent_at``."""

    queue = models.CharField(max_length=200)
    sent_at = models.DateTimeField()
    reached_at = models.DateTimeField()

    class Meta:
        indexes = [
            models.Index(fields=["queue", "reached_at"], name="probe_arrival_queue")
        ]

    def __str__(self) -> str:
        return f"queue {self.queue} consumed up to {self.sent_at}"
