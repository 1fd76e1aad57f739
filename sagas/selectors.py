"""Reads and row locks of the saga engine; every lock is taken in primary-key order."""

from collections.abc import Iterable
from datetime import datetime, timedelta

from django.db import connection
from django.db.models import Prefetch, Q, QuerySet

from sagas.messaging.outbox import AbstractOutboxMessage, outbox_models
from sagas.models import (
    ACTIVE_STATUSES,
    OutboxMessage,
    Saga,
    SagaEvent,
    SagaStatus,
    SagaStep,
)
from shop import sql
from shop.permissions import visible_to


def saga_lock(*, saga_id: int, statement_timeout: float | None = None) -> Saga | None:
    """Lock one saga row; every change to a saga or its steps happens under it.

    ``statement_timeout`` (seconds) bounds every later statement of the transaction,
    set in the same round trip as the lock (set_config(.., true) is ``SET LOCAL``).
    On the hot path: hand-written SQL (shop.sql).
    """
    lock, params = _lock(saga_id, statement_timeout, f"{sql.columns(Saga)}")
    return sql.first(sql.instances(Saga, lock, params))


def saga_lock_with_steps(
    *, saga_id: int, statement_timeout: float | None = None
) -> tuple[Saga | None, list[SagaStep]]:
    """saga_lock, then the saga and its steps as the lock's last holder left them, in
    one round trip: two statements sent as one message (simple query protocol).

    Two statements, not one: under READ COMMITTED each statement reads from a
    snapshot of its own start, so the second, started once the lock is held, sees
    what the holder before committed. One statement that locked the saga and joined
    its steps would read the steps as they were before it waited for the lock.
    psycopg2 runs such a message in one go and returns the last statement's rows.
    A saga with no step rows (deleted by hand) comes with none, for its caller to
    flag, as saga_steps would give.
    """
    lock, params = _lock(saga_id, statement_timeout, "1")
    saga_table, step_table = sql.table_of(Saga), sql.table_of(SagaStep)
    read = (
        f"SELECT {sql.columns(Saga)}, {sql.columns(SagaStep)} FROM {saga_table} "
        f"LEFT JOIN {step_table} ON {step_table}.saga_id = {saga_table}.id "
        f"WHERE {saga_table}.id = %s ORDER BY {step_table}.index"
    )
    rows = sql.fetch(read, [saga_id], after=(lock, params))
    if not rows:
        return None, []
    saga, start = sql.instance(Saga, rows[0]), sql.width(Saga)
    steps = [sql.instance(SagaStep, row, start=start) for row in rows]
    return saga, [step for step in steps if step.pk is not None]


def _lock(saga_id: int, statement_timeout: float | None, select: str):
    also, params = "", [saga_id]
    if statement_timeout is not None:
        also = ", set_config('statement_timeout', %s, true) AS _timeout"
        params.insert(0, str(max(1, int(statement_timeout * 1000))))
    query = f"SELECT {select}{also} FROM {sql.table_of(Saga)} WHERE id = %s FOR UPDATE"
    return query, params


def saga_steps(*, saga: Saga) -> list[SagaStep]:
    return sql.select(SagaStep, "saga_id = %s", [saga.pk], tail="ORDER BY index")


def sagas_overdue_lock(
    *, now: datetime, sent_before: datetime | None, limit: int
) -> list[Saga]:
    """Overdue active sagas whose work was sent before ``sent_before`` (the queues have
    been consumed past it), skipping those a worker holds now.

    A saga whose step is executing is locked by that step's transaction, so SKIP LOCKED
    passes over it: only sagas nobody is working on can be recovered.
    """
    sent_early = Q(sent_at__isnull=True)
    if sent_before is not None:
        sent_early |= Q(sent_at__lt=sent_before)
    return list(
        _overdue(now)
        .filter(sent_early)
        .order_by("pk")
        .select_for_update(skip_locked=True, of=("self",))[:limit]
    )


def sagas_overdue_unproven(*, now: datetime, sent_before: datetime | None) -> bool:
    """Are there overdue sagas whose work may still be queued (a probe would tell)?"""
    overdue = _overdue(now)
    if sent_before is not None:
        overdue = overdue.filter(sent_at__gte=sent_before)
    return overdue.exists()


def _overdue(now: datetime) -> QuerySet[Saga]:
    # Served by the partial index on the deadlines of active sagas.
    return Saga.objects.filter(status__in=ACTIVE_STATUSES, deadline_at__lt=now)


def saga_last_dispatch(*, saga_id: int) -> OutboxMessage | None:
    """The newest event that sent (or is to send) this saga's work."""
    return (
        OutboxMessage.objects.filter(aggregate_id=str(saga_id)).order_by("-pk").first()
    )


def saga_events(*, saga_id: int, topics=None) -> list[AbstractOutboxMessage]:
    """A saga's events of ``topics`` (None: all), in every app's outbox, oldest
    first."""
    rows = []
    for model in outbox_models():
        found = model.objects.filter(saga_id=saga_id)
        rows += found if topics is None else found.filter(topic__in=list(topics))
    return sorted(rows, key=lambda row: row.created_at)


def saga_get(*, saga_id: int) -> Saga | None:
    return Saga.objects.prefetch_related("steps").filter(pk=saga_id).first()


def saga_list(
    *, status: str | None = None, name: str | None = None, mode: str | None = None
) -> QuerySet[Saga]:
    filters = {"status": status, "name": name, "mode": mode}
    return Saga.objects.filter(**{k: v for k, v in filters.items() if v}).order_by(
        "-pk"
    )


def sagas_needing_attention(*, now: datetime) -> dict[str, int]:
    """How many sagas an operator must look at, and how many are overdue.

    ``failed``: gave up (FAILED). ``attention``: still active but unable to move on
    their own (a step after the pivot failing over and over, work that cannot be
    sent, a saga the recovery sweep cannot handle). ``overdue``: past their deadline,
    queued behind a backlog or lost; the recovery sweep tells which and resends.
    """
    active = Saga.objects.filter(status__in=ACTIVE_STATUSES)
    return {
        "failed": Saga.objects.filter(status=SagaStatus.FAILED).count(),
        "attention": active.exclude(attention="").count(),
        "overdue": _overdue(now).count(),
    }


def sagas_needing_attention_q() -> Q:
    """The sagas the admin lists under Needs attention: FAILED or flagged."""
    return Q(status=SagaStatus.FAILED) | (
        Q(status__in=ACTIVE_STATUSES) & ~Q(attention="")
    )


# A row the relay is to publish now. The relay's statements are hand-written SQL
# (shop.sql): in a choreographed saga it claims and marks a row for every event.
_DUE = (
    "published_at IS NULL AND dead_at IS NULL "
    "AND (next_attempt_at IS NULL OR next_attempt_at <= %s)"
)


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
    where, params = _DUE, [now]
    if min_age is not None:
        where, params = f"{where} AND created_at <= %s", [now, now - min_age]
    tail = "ORDER BY id LIMIT %s FOR UPDATE SKIP LOCKED"
    return sql.select(model, where, [*params, limit], tail=tail)


def outboxes_due(
    *, models: list[type[AbstractOutboxMessage]], now: datetime
) -> list[type[AbstractOutboxMessage]]:
    """Those of ``models`` that have a row due for publishing, in one query (served
    by each outbox's partial index of pending rows)."""
    if not models:
        return []
    query = " UNION ALL ".join(
        f"(SELECT {n} FROM {sql.table_of(model)} WHERE {_DUE} LIMIT 1)"
        for n, model in enumerate(models)
    )
    return [models[n] for (n,) in sql.fetch(query, [now] * len(models))]


def outbox_pending_count(*, model: type[AbstractOutboxMessage]) -> int:
    return model.objects.filter(published_at__isnull=True, dead_at__isnull=True).count()


# The backlog counted at most: past it, the gauge says "this many or more" and its
# count stays a bounded scan of the pending rows' index.
BACKLOG_CAP = 100_000


def outbox_backlog() -> list[tuple[str, int, datetime | None]]:
    """``(app, pending rows, when the oldest was written)`` of each outbox, in one
    query over their partial indexes of pending rows (the oldest is the one of the
    lowest id: ids are allocated as rows are written)."""
    parts, params = [], []
    for model in outbox_models():
        table = sql.table_of(model)
        pending = "published_at IS NULL AND dead_at IS NULL"
        parts.append(
            f"SELECT %s, (SELECT count(*) FROM (SELECT 1 FROM {table} WHERE {pending} "
            f"LIMIT %s) capped), (SELECT created_at FROM {table} WHERE {pending} "
            "ORDER BY id LIMIT 1)"
        )
        params += [model._meta.app_label, BACKLOG_CAP]
    if not parts:
        return []
    with connection.cursor() as cursor:
        cursor.execute(" UNION ALL ".join(parts), params)
        return [tuple(row) for row in cursor.fetchall()]


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


def outbox_rows_of(*, saga_ids: Iterable[int]) -> dict[str, int]:
    """How many outbox rows the sagas wrote, by outbox ("orders.OutboxMessage": 4)."""
    ids = list(saga_ids)
    return {
        model._meta.label: model.objects.filter(saga_id__in=ids).count()
        for model in outbox_models()
    }


def saga_ends(*, saga_ids: Iterable[int]) -> dict[int, tuple[str, datetime | None]]:
    """``(status, finished_at)`` of each saga named, by id; no saga, no entry."""
    rows = Saga.objects.filter(pk__in=list(saga_ids))
    return {
        pk: (status, end)
        for pk, status, end in rows.values_list("pk", "status", "finished_at")
    }
