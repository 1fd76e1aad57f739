"""The outbox relay: publishes committed outbox rows and marks them published.

Delivery is at least once. Rows are claimed with ``FOR UPDATE SKIP LOCKED``, so several
relays never publish the same row in the normal case; a relay that dies after publishing
and before its commit publishes the row again, so every consumer tolerates a duplicate.

Row locks are held while the broker is called, so every broker call is bounded
(BROKER_TIMEOUT, with publisher confirms on RabbitMQ: a row is marked published only
once the broker has taken it). A broker that is away postpones the row with backoff for
as long as it lasts; a row that can never be published (Undeliverable) is set aside as
dead, for an operator, instead of being retried forever.
"""

import contextlib
import functools
import logging
import math
import select
import time
from collections.abc import Callable, Iterable
from datetime import timedelta

import psycopg2
from celery import current_app
from django.conf import settings
from django.db import close_old_connections, connections, transaction
from django.utils import timezone

from sagas import selectors, telemetry
from sagas.cleaning import delete_in_batches
from sagas.messaging import subscriptions
from sagas.messaging.correlation import correlated
from sagas.messaging.outbox import (
    NOTIFY_CHANNEL,
    AbstractOutboxMessage,
    outbox_models,
)
from shop import sql
from shop.connections import close_dead_connections

logger = logging.getLogger(__name__)


class Undeliverable(Exception):
    """Raised by a publisher for a row that can never be published as it is."""


# After a failed publish a row waits this long, doubling per attempt, up to a minute.
_FIRST_BACKOFF, _MAX_BACKOFF = 0.5, 60.0


def outbox_relay(
    *,
    models: Iterable[type[AbstractOutboxMessage]] | None = None,
    batch: int = 100,
    min_age: timedelta | None = None,
    announced: bool = False,
    until: float | None = None,
) -> int:
    """Publish every due pending row of ``models`` (default: all); return how many.

    ``announced``: ``models`` are those a commit just announced (NOTIFY), so each has a
    row written; they are claimed from at once, without first looking which have one
    due (a round trip on the way of every saga's launch and every choreographed hop).
    A batch from each outbox in turn, so a backlog in one holds none of the others
    up; ``until`` (``time.monotonic()``): stop after the round that passes it, rows
    still due or not.
    """
    models = list(models or outbox_models())
    if not announced:
        # One query finds the outboxes that have a row due: a claim (a transaction)
        # per outbox would cost as many on every poll.
        models = selectors.outboxes_due(models=models, now=timezone.now())
    total, pending = 0, models
    while pending:
        for model in list(pending):
            published, complete = _relay_batch(model, batch=batch, min_age=min_age)
            total += published
            if not complete or published < batch:
                pending.remove(model)  # drained, or the broker is away
        if until is not None and time.monotonic() >= until:
            break
    return total


def _relay_batch(
    model: type[AbstractOutboxMessage], *, batch: int, min_age: timedelta | None
) -> tuple[int, bool]:
    """Publish one batch; return (rows published, whether the whole batch went out)."""
    now = timezone.now()
    with transaction.atomic():
        rows = selectors.outbox_claim(
            model=model, now=now, limit=batch, min_age=min_age
        )
        done: list[int] = []
        with contextlib.ExitStack() as stack:
            producer = None
            for row in rows:
                takers = _takers(row)
                if takers:
                    # Row locks are held while the broker is called: keep batches small.
                    producer = producer or stack.enter_context(
                        current_app.producer_or_acquire()
                    )
                    try:
                        for send in takers:
                            send(row, producer, **_publish_options())
                    except Undeliverable as exc:
                        _bury(row, exc, now)
                        continue
                    except Exception as exc:  # the broker is away or refused it
                        _postpone(row, exc, now)
                        return len(_mark_published(model, done, timezone.now())), False
                    telemetry.outbox_sent(row)
                done.append(row.pk)
        # Stamped once the broker has taken them: recovery proves a loss against it.
        return len(_mark_published(model, done, timezone.now())), True


def _takers(row: AbstractOutboxMessage) -> list:
    """What sends this row: the engine's route for its topic, and one delivery per
    app subscribed to it. Sent again as a whole if one fails: every taker tolerates
    a duplicate (an inbox, or the saga lock)."""
    takers = []
    if (publisher := subscriptions.publisher(row.topic)) is not None:
        takers.append(publisher)
    for subscription in subscriptions.subscribers(row.topic, row.headers):
        takers.append(functools.partial(_deliver, subscription))
    return takers


def _deliver(subscription, row: AbstractOutboxMessage, producer, **options) -> None:
    """One task message for one subscriber, keyed by the row's own message id, with
    the row's saga headers (sagas.messaging.tracing), and shown in Flower and the
    workers' logs by its saga and topic rather than its whole body."""
    with correlated(**row.headers):
        current_app.send_task(
            subscription.task_name,
            args=(message_of(row),),
            queue=subscription.queue,
            producer=producer,
            argsrepr=f"(saga_id={row.saga_id}, {row.topic}, {row.message_id})",
            **options,
        )


def message_of(row: AbstractOutboxMessage) -> dict:
    """An outbox row as it travels: JSON, with the id its consumers dedupe by."""
    return {
        "message_id": str(row.message_id),
        "topic": row.topic,
        "aggregate_id": row.aggregate_id,
        "payload": row.payload,
        "headers": row.headers,
        "created_at": row.created_at.isoformat(),
    }


def _publish_options() -> dict:
    # Bounds a publish (and its confirmation, on RabbitMQ) on a broker that accepted
    # the connection and then stopped answering; the transport's own socket timeouts
    # bound the rest (shop.brokers).
    return {
        "timeout": settings.BROKER_TIMEOUT,
        "confirm_timeout": settings.BROKER_TIMEOUT,
    }


def _mark_published(model, pks: list[int], now) -> list[int]:
    if pks:  # one statement per batch, written by hand as the claim is
        sql.together(
            (
                f"UPDATE {sql.table_of(model)} SET published_at = %s, "
                "attempts = attempts + 1 WHERE id = ANY(%s)",
                [now, pks],
            )
        )
    return pks


def _postpone(row: AbstractOutboxMessage, exc: Exception, now) -> None:
    row.attempts += 1
    delay = min(_MAX_BACKOFF, _FIRST_BACKOFF * 2 ** (row.attempts - 1))
    row.next_attempt_at = now + timedelta(seconds=delay)
    row.last_error = _error_text(exc)
    row.save(update_fields=["attempts", "next_attempt_at", "last_error"])
    logger.warning(
        "outbox %s row %s (%s) not published, retry in %.1fs: %s",
        row._meta.label,
        row.pk,
        row.topic,
        delay,
        row.last_error,
    )


def _bury(row: AbstractOutboxMessage, exc: Exception, now) -> None:
    row.attempts += 1
    row.dead_at, row.last_error = now, _error_text(exc)
    row.save(update_fields=["attempts", "dead_at", "last_error"])
    logger.error(
        "outbox %s row %s (%s) can never be published, set aside: %r",
        row._meta.label,
        row.pk,
        row.topic,
        exc,
    )


def _error_text(exc: BaseException) -> str:
    """The error and what caused it: kombu wraps a refused publish (a RabbitMQ nack)
    in an OperationalError with no message of its own."""
    text = repr(exc)
    if exc.__cause__ is not None or exc.__context__ is not None:
        text += f" caused by {exc.__cause__ or exc.__context__!r}"
    return text[:2000]


def outbox_clean(*, days: int) -> int:
    """Delete rows published more than ``days`` ago; pending rows are never touched."""
    cutoff = timezone.now() - timedelta(days=days)
    return sum(
        delete_in_batches(model.objects.filter(published_at__lt=cutoff))
        for model in outbox_models()
    )


def relay_forever(*, poll: float, batch: int, should_stop: Callable[[], bool]) -> None:
    """Publish rows as their transactions commit, woken by NOTIFY, else by polling.

    A wake-up by commits claims from the outboxes they announced. Everything due is
    looked for on each poll, on the first wake-up after (re)listening, and at least
    every ``poll`` seconds however busy the notifications or a backlog keep it (a
    pass stops after ``poll`` seconds, and the next one waits for nothing): what no
    commit announces (a postponed row come due, a row sent again by the recovery
    sweep, a notification lost while the listener was away) must not wait for a
    quiet moment.
    """
    by_table = {m._meta.db_table: m for m in outbox_models()}
    listener, looked, wait = None, -math.inf, poll  # looked: when everything was
    while not should_stop():
        try:
            if listener is None:
                listener, looked = _listen(), -math.inf
            tables = _wait(listener, wait)
            close_dead_connections()
            close_old_connections()
            announced = [by_table[t] for t in tables if t in by_table]
            if time.monotonic() - looked >= poll:
                announced = []  # time to look everywhere
            if not announced:
                looked = time.monotonic()
            # An announced row an earlier batch took meanwhile makes an empty claim.
            until = time.monotonic() + poll
            outbox_relay(
                models=announced or None,
                batch=batch,
                announced=bool(announced),
                until=until,
            )
            wait = 0 if time.monotonic() >= until else poll  # cut short: go on
        except Exception as exc:  # the database or the broker is away; keep trying
            logger.warning("relay: %r; retrying in %.1fs", exc, poll)
            listener, wait = _close(listener), poll
            connections.close_all()
            time.sleep(poll)
    _close(listener)


def _listen():
    params = connections["default"].get_connection_params()
    conn = psycopg2.connect(**params)
    conn.set_session(autocommit=True)
    with conn.cursor() as cursor:
        cursor.execute(f"LISTEN {NOTIFY_CHANNEL}")
    return conn


def _wait(conn, timeout: float) -> set[str]:
    """Block until a notification or the timeout; return the tables announced.

    An empty set means "poll everything"."""
    conn.poll()
    if not conn.notifies:
        ready, _, _ = select.select([conn], [], [], timeout)
        if not ready:
            return set()
        conn.poll()
    tables = {n.payload for n in conn.notifies}
    conn.notifies.clear()
    return tables


def _close(conn) -> None:
    if conn is not None:
        with contextlib.suppress(Exception):
            conn.close()
    return None
