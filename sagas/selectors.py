"""Reads and row locks of the saga engine; every lock is taken in primary-key order."""

from collections.abc import Iterable
from datetime import datetime, timedelta

from django.db.models import Prefetch, Q, QuerySet

from sagas.models import (
    ACTIVE_STATUSES,
    OutboxMessage,
    Saga,
    SagaEvent,
    SagaStatus,
    SagaStep,
)
from sagas.outbox import AbstractOutboxMessage
from shop.permissions import visible_to


def saga_lock(*, saga_id: int) -> Saga | None:
    """Lock one saga row; every change to a saga or its steps happens under it."""
    return Saga.objects.select_for_update(of=("self",)).filter(pk=saga_id).first()


def saga_steps(*, saga: Saga) -> list[SagaStep]:
    return list(SagaStep.objects.filter(saga=saga).order_by("index"))


def sagas_overdue_lock(*, now: datetime, limit: int) -> list[Saga]:
    """Active sagas whose work in flight is overdue, skipping those a worker holds now.

    A saga whose step is executing is locked by that step's transaction, so SKIP LOCKED
    passes over it: only sagas nobody is working on can be recovered.
    """
    return list(
        Saga.objects.filter(status__in=ACTIVE_STATUSES, deadline_at__lt=now)
        .order_by("pk")
        .select_for_update(skip_locked=True, of=("self",))[:limit]
    )


def saga_last_dispatch(*, saga_id: int) -> OutboxMessage | None:
    """The newest event that sent (or is to send) this saga's work."""
    return (
        OutboxMessage.objects.filter(aggregate_id=str(saga_id)).order_by("-pk").first()
    )


def saga_get(*, saga_id: int) -> Saga | None:
    return Saga.objects.prefetch_related("steps").filter(pk=saga_id).first()


def saga_by_key(*, name: str, idempotency_key: str) -> Saga | None:
    return Saga.objects.filter(name=name, idempotency_key=idempotency_key).first()


def saga_list(*, status: str | None = None, name: str | None = None) -> QuerySet[Saga]:
    sagas = Saga.objects.all()
    if status:
        sagas = sagas.filter(status=status)
    if name:
        sagas = sagas.filter(name=name)
    return sagas.order_by("-pk")


def sagas_needing_attention(*, now: datetime) -> dict[str, int]:
    """How many sagas gave up (FAILED) and how many are overdue (stuck, for now)."""
    return {
        "failed": Saga.objects.filter(status=SagaStatus.FAILED).count(),
        "stuck": Saga.objects.filter(
            status__in=ACTIVE_STATUSES, deadline_at__lt=now
        ).count(),
    }


def outbox_claim(
    *,
    model: type[AbstractOutboxMessage],
    now: datetime,
    limit: int,
    min_age: timedelta | None = None,
) -> list[AbstractOutboxMessage]:
    """Lock a batch of due, unpublished rows; rows another relay holds are skipped.

    Rows are picked by "not yet published", never by a last-seen id: ids are allocated
    at insert and commit out of order, so a watermark would skip a late committer.
    """
    rows = model.objects.filter(published_at__isnull=True).filter(
        Q(next_attempt_at__isnull=True) | Q(next_attempt_at__lte=now)
    )
    if min_age is not None:
        rows = rows.filter(created_at__lte=now - min_age)
    return list(rows.order_by("pk").select_for_update(skip_locked=True)[:limit])


def outbox_pending_count(*, model: type[AbstractOutboxMessage]) -> int:
    return model.objects.filter(published_at__isnull=True).count()


VIEW_SAGAS = "sagas.view_saga"


def saga_visible_to(*, user, saga_id: int) -> Saga | None:
    """A saga with its steps and events, for the user it runs for (staff with
    sagas.view_saga: anyone's); None for anyone else's."""
    sagas = Saga.objects.prefetch_related(
        Prefetch("steps", queryset=SagaStep.objects.order_by("index")),
        Prefetch("events", queryset=SagaEvent.objects.order_by("pk")),
    )
    sagas = visible_to(sagas, user=user, permission=VIEW_SAGAS, owner="owner_id")
    return sagas.filter(pk=saga_id).first()


def saga_statuses(*, saga_ids: Iterable[int | None]) -> dict[int, str]:
    """The status of each saga named, by id; ids of no saga are absent."""
    ids = [saga_id for saga_id in saga_ids if saga_id is not None]
    return dict(Saga.objects.filter(pk__in=ids).values_list("pk", "status"))
