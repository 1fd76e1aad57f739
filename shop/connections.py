"""Database connections checked before each request and task, without a round trip.

A connection that its server ended (a PostgreSQL restart, a server-side timeout) says
so on its socket: the server's goodbye and then the end of the stream are readable,
while an idle connection is otherwise sent nothing. Looking at the socket costs no
round trip; Django's CONN_HEALTH_CHECKS sends a query before each first use instead,
one more statement for every task and request.
"""

import logging
import select

from django.db import connections

logger = logging.getLogger(__name__)


def close_dead_connections(**kwargs) -> None:
    """Close the connections their server has ended; the next query opens a new one.

    Django itself closes, around each request, those past CONN_MAX_AGE or unusable
    after an error (close_old_connections); tasks call both."""
    for connection in connections.all(initialized_only=True):
        raw = connection.connection
        if raw is not None and not connection.in_atomic_block and _ended(raw):
            connection.close()


def end_abandoned_transactions(**kwargs) -> None:
    """Let go of a connection that a finished task left inside an atomic block.

    No block is open between tasks. One still open was abandoned by an exception that
    struck inside Django's own ``atomic`` (a soft time limit raised as the block
    opened or closed), so its bookkeeping never unwound. Django keeps such a
    connection in its block even once it is closed (it only marks it closed in a
    transaction), so every later query in this thread would fail on the closed
    connection, and every ``atomic(durable=True)`` be refused as nested, until the
    process ended. Forgotten here, it is closed for good (ending its transaction, if
    nothing did before) and the next query connects afresh."""
    for connection in connections.all(initialized_only=True):
        if connection.in_atomic_block:
            logger.warning(
                "database %s: a task left a transaction open; closing its connection",
                connection.alias,
            )
            _forget(connection)


def _forget(connection) -> None:
    """Forget the connection's blocks, as Django does when it connects again
    (``BaseDatabaseWrapper.connect``), then close it: out of any block, ``close``
    lets it go even if closing fails, and the next query opens a new one."""
    connection.atomic_blocks, connection.savepoint_ids = [], []
    connection.needs_rollback = False
    connection.in_atomic_block = connection.closed_in_transaction = False
    connection.close()


def _ended(raw) -> bool:
    if raw.closed:
        return True
    # poll, not select: select cannot watch a descriptor numbered 1024 or more, and
    # a web process with many clients has such descriptors.
    watch = select.poll()
    try:
        watch.register(raw.fileno(), select.POLLIN | select.POLLERR | select.POLLHUP)
        ready = watch.poll(0)
    except (OSError, ValueError):
        return True
    # Anything to read on an idle connection is its end (or, rarely, a notice: then
    # a new connection costs only its setup).
    return bool(ready)
