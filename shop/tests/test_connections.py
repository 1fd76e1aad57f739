"""A connection its server ended is dropped before a request or task uses it, seen on
its socket without a query; a healthy one is kept, whatever its descriptor's number;
one a task left in a transaction is closed after it."""

import contextlib
import os
import resource
import time

import psycopg2
import pytest
from django.db import connection, transaction

from shop.celery import close_unusable_connections
from shop.connections import _ended, close_dead_connections

pytestmark = pytest.mark.django_db(transaction=True)


def backend_pid() -> int:
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        return cursor.fetchone()[0]


def test_a_healthy_connection_is_kept():
    pid = backend_pid()

    close_dead_connections()

    assert connection.connection is not None
    assert backend_pid() == pid  # the same session: not reopened


def test_a_connection_its_server_ended_is_dropped_and_the_next_query_works():
    pid = backend_pid()
    params = connection.get_connection_params()
    with contextlib.closing(psycopg2.connect(**params)) as other:
        other.autocommit = True
        other.cursor().execute("SELECT pg_terminate_backend(%s)", [pid])
    time.sleep(0.2)  # the server's goodbye reaches the socket

    close_dead_connections()

    assert connection.connection is None  # dropped before anyone used it
    assert backend_pid() != pid  # a new one, and it works


def test_a_descriptor_numbered_over_1024_is_watched_too():
    backend_pid()
    raw = connection.connection
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft <= 1100:
        pytest.skip(f"this process may open only {soft} files")
    high = os.dup2(raw.fileno(), 1100)
    try:

        class Dup:
            closed = 0

            def fileno(self):
                return high

        assert _ended(Dup()) is False  # healthy: select() would have failed here
    finally:
        os.close(high)


def backends_in_transaction(pid: int) -> int:
    params = connection.get_connection_params()
    with contextlib.closing(psycopg2.connect(**params)) as other:
        other.autocommit = True
        cursor = other.cursor()
        cursor.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE pid = %s "
            "AND state LIKE 'idle in transaction%%'",
            [pid],
        )
        return cursor.fetchone()[0]


@pytest.mark.parametrize("closed_by_celery_first", [False, True])
def test_a_transaction_a_task_left_open_is_ended_and_the_next_task_can_open_one(
    closed_by_celery_first,
):
    # What an exception striking inside Django's atomic as it opens or closes leaves:
    # a block entered and never exited.
    transaction.atomic(durable=True).__enter__()
    pid = backend_pid()
    assert backends_in_transaction(pid) == 1
    if closed_by_celery_first:
        connection.close()  # Celery's fixup may close it first: Django only marks it

    close_unusable_connections()  # the worker's hook after every task

    time.sleep(0.2)  # the server sees the socket closed
    assert backends_in_transaction(pid) == 0  # its locks are let go now
    with transaction.atomic(durable=True):  # not refused as nested
        assert backend_pid() != pid
