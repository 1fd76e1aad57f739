"""A connection its server ended is dropped before a request or task uses it, seen on
its socket without a query; a healthy one is kept, whatever its descriptor's number;
one a task left inside an atomic block is let go after it."""

import contextlib
import os
import resource
import time

import psycopg2
import pytest
from celery import shared_task
from celery.signals import task_postrun
from django.db import connection, transaction

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


@shared_task(name="shop.tests.nothing")
def nothing() -> None:
    """A task to run the worker's hooks around."""


def after_a_task() -> None:
    """The worker's hooks after a task, as Celery sends them."""
    task_postrun.send(
        sender=nothing, task_id="t", task=nothing, args=(), kwargs={}, retval=None
    )


def in_transaction(pid: int, *, wait_for: bool) -> bool:
    """Is the session ``pid`` in a transaction, seen from another session? Waits up
    to 10 s for it to be ``wait_for`` (the server sees a closed socket soon after)."""
    params = connection.get_connection_params()
    with contextlib.closing(psycopg2.connect(**params)) as other:
        other.autocommit = True
        cursor = other.cursor()
        deadline = time.monotonic() + 10
        while True:
            cursor.execute(
                "SELECT count(*) > 0 FROM pg_stat_activity WHERE pid = %s "
                "AND state LIKE 'idle in transaction%%'",
                [pid],
            )
            found = cursor.fetchone()[0]
            if found == wait_for or time.monotonic() > deadline:
                return found
            time.sleep(0.05)


@pytest.mark.parametrize("closed_by_celery_first", [False, True])
def test_a_connection_a_task_left_in_a_transaction_is_let_go_after_it(
    closed_by_celery_first,
):
    # What an exception striking inside Django's atomic as it opens or closes leaves:
    # a block entered and never exited.
    transaction.atomic(durable=True).__enter__()
    pid = backend_pid()
    if closed_by_celery_first:
        connection.close()  # Celery's fixup may close it first: Django only marks it

    after_a_task()

    assert not in_transaction(pid, wait_for=False)  # its row locks are let go
    assert not connection.in_atomic_block
    with transaction.atomic(durable=True):  # not refused as nested
        assert backend_pid() != pid  # nor run on the closed connection


def test_a_task_run_inline_inside_a_transaction_leaves_it_alone():
    with transaction.atomic():
        pid = backend_pid()
        nothing.apply()  # its hooks run in the caller's transaction
        assert connection.in_atomic_block
        assert backend_pid() == pid
        assert in_transaction(pid, wait_for=True)


def test_a_connection_django_let_go_after_its_block_is_not_taken_for_a_left_one(
    caplog,
):
    with transaction.atomic():
        backend_pid()
        connection.close()  # inside its block: Django marks it, and lets it go after

    after_a_task()

    assert "left a transaction open" not in caplog.text
    assert backend_pid()  # connects afresh
