"""Barrier writes: may this phase of this participant do its business work now?

Called inside the transaction of the participant's business change, so the barrier
row and the change commit together or not at all (DTM's rules, Seata's fence):

    try      once; refused if a cancel came first (the "hanging" try)
    confirm  once
    cancel   once; if its try never ran, it records the try as done by the cancel
             (the "null compensation") and does nothing, so a late try does nothing

Each rule is an ``INSERT ... ON CONFLICT DO NOTHING`` on the row unique per
(saga, branch, phase): the database decides, however many copies race.
"""

from datetime import datetime
from enum import StrEnum

from django.db import connection

from sagas.models import Barrier, BarrierOp
from shop import sql


class Passage(StrEnum):
    DUE = "due"  # do the business work now
    DONE = "done"  # done before: a duplicate
    NOTHING_TRIED = "nothing tried"  # a cancel whose try never ran (now never will)
    CANCELLED_FIRST = "cancelled first"  # a try whose cancel came first


def barrier_pass(*, saga_id: int, branch: str, op: str) -> Passage:
    """Whether ``op`` of ``branch`` is due now, and if not, why; recorded either way."""
    if op == BarrierOp.CANCEL:
        # The try's row, written now or by a fence (a timeout, an operator's cancel),
        # is no try that ran: there is nothing to undo.
        tried = not _record(saga_id, branch, BarrierOp.TRY, op) and (
            _reason(saga_id, branch, BarrierOp.TRY) == BarrierOp.TRY
        )
        if not _record(saga_id, branch, op, op):
            return Passage.DONE
        return Passage.DUE if tried else Passage.NOTHING_TRIED
    if _record(saga_id, branch, op, op):
        return Passage.DUE
    if op == BarrierOp.TRY and _reason(saga_id, branch, op) != BarrierOp.TRY:
        return Passage.CANCELLED_FIRST
    return Passage.DONE


def barrier_fence(*, saga_id: int, branch: str, reason: str) -> bool:
    """Stop ``branch``'s try (a choreographed step's action) from ever running, for
    ``reason`` (a timeout, an operator's cancel); False if it already ran."""
    return _record(saga_id, branch, BarrierOp.TRY, reason)


def barrier_passed(*, saga_id: int, branch: str, op: str) -> bool:
    """Has ``op`` of ``branch`` been recorded (done, or fenced)?"""
    return Barrier.objects.filter(saga_id=saga_id, branch=branch, op=op).exists()


def barriers_clean(*, ended_before: datetime, batch: int = 1000) -> int:
    """Delete the barriers of sagas that ended before ``ended_before``, a batch at a
    time: each batch locks only its own rows, never the table."""
    table, sagas = Barrier._meta.db_table, "sagas_saga"
    deleted = 0
    while True:
        with connection.cursor() as cursor:
            cursor.execute(
                f"DELETE FROM {table} WHERE id IN ("
                f" SELECT b.id FROM {table} b JOIN {sagas} s ON s.id = b.saga_id"
                "  WHERE s.status IN ('COMPLETED', 'COMPENSATED')"
                "  AND s.finished_at < %s LIMIT %s)",
                [ended_before, batch],
            )
            deleted += cursor.rowcount
            if cursor.rowcount < batch:
                return deleted


def _reason(saga_id: int, branch: str, op: str) -> str:
    """Which op wrote the row of (saga, branch, op): a try written by a cancel, or a
    timeout, is no try of its own."""
    return (
        Barrier.objects.filter(saga_id=saga_id, branch=branch, op=op)
        .values_list("reason", flat=True)
        .first()
        or ""
    )


def _record(saga_id: int, branch: str, op: str, reason: str) -> bool:
    """Insert the row of (saga, branch, op); False if it was there already."""
    return bool(
        sql.fetch(
            f"INSERT INTO {Barrier._meta.db_table} "
            "(saga_id, branch, op, reason, created_at) "
            "VALUES (%s, %s, %s, %s, now()) ON CONFLICT DO NOTHING RETURNING id",
            [saga_id, branch, op, reason],
        )
    )
