"""Database connections checked before each request and task, without a round trip.

A connection that its server ended (a PostgreSQL restart, a server-side timeout) says
so on its socket: the server's goodbye and then the end of the stream are readable,
while an idle connection is otherwise sent nothing. Looking at the socket costs no
round trip; Django's CONN_HEALTH_CHECKS sends a query before each first use instead,
one more statement for every task and request.
"""

import select

from django.db import connections


def close_dead_connections(**kwargs) -> None:
    """Close the connections their server has ended; the next query opens a new one.

    Django itself closes, around each request, those past CONN_MAX_AGE or unusable
    after an error (close_old_connections); tasks call both."""
    for connection in connections.all(initialized_only=True):
        raw = connection.connection
        if raw is not None and not connection.in_atomic_block and _ended(raw):
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
