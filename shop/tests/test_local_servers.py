"""The project-local PostgreSQL and Redis: no other local user gets in.

Each test starts servers of its own in a directory of its own (under .run/, which the
PostgreSQL user can reach), never the ones the suite runs on.
"""

import contextlib
import os
import pwd
import shutil
import stat
import tempfile
from pathlib import Path

import environ
import psycopg2
import pytest

from shop.devenv import RUN, LocalPostgres, LocalRedis
from tests.cluster import wait_until


@pytest.fixture
def run_dir(monkeypatch):
    monkeypatch.delenv("PGPASSWORD", raising=False)  # only what a test gives counts
    RUN.mkdir(exist_ok=True)
    path = Path(tempfile.mkdtemp(prefix="test-", dir=RUN))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def postgres(run_dir):
    server = LocalPostgres(run_dir)
    yield server
    server.release()  # this test is its only user: it stops
    shutil.rmtree(server.socket_dir, ignore_errors=True)


def connect(server: LocalPostgres, **params):
    return psycopg2.connect(
        host=str(server.socket_dir), user="postgres", dbname="postgres", **params
    )


def assert_password_required(server: LocalPostgres, url: str) -> None:
    with pytest.raises(psycopg2.OperationalError, match="no password supplied"):
        connect(server)
    with pytest.raises(psycopg2.OperationalError, match="authentication failed"):
        connect(server, password="a guess")

    config = environ.Env.db_url_config(url)  # as settings.py reads DATABASE_URL
    assert config["PASSWORD"] == server.password
    with (
        contextlib.closing(
            psycopg2.connect(
                host=config["HOST"],
                user=config["USER"],
                dbname=config["NAME"],
                password=config["PASSWORD"],
            )
        ) as connection,
        connection.cursor() as cursor,
    ):
        cursor.execute("SELECT current_database()")
        assert cursor.fetchone() == ("sagashop",)


def assert_only_its_user_enters(directory: Path, user: str | None) -> None:
    found = directory.stat()
    assert stat.S_IMODE(found.st_mode) == 0o700
    assert found.st_uid == (pwd.getpwnam(user).pw_uid if user else os.geteuid())


def test_the_local_postgres_wants_its_password_and_hides_its_socket(postgres):
    url = postgres.acquire()

    assert_password_required(postgres, url)
    assert_only_its_user_enters(postgres.socket_dir, postgres.user)
    assert stat.S_IMODE((postgres.run / "postgres_password").stat().st_mode) == 0o600


def test_a_cluster_that_trusted_every_local_user_is_upgraded_on_its_next_start(
    postgres,
):
    leave_as_an_earlier_checkout_did(postgres)

    for _ in range(2):  # every start does it, and the second finds nothing to do
        server = LocalPostgres(postgres.run)  # as the next command sets it up
        url = server.acquire()
        assert_password_required(server, url)
        assert_only_its_user_enters(server.socket_dir, server.user)
        server.release()


# What initdb --auth=trust writes.
TRUST = """\
local   all             all                                     trust
host    all             all             127.0.0.1/32            trust
host    all             all             ::1/128                 trust
local   replication     all                                     trust
host    replication     all             127.0.0.1/32            trust
host    replication     all             ::1/128                 trust
"""


def leave_as_an_earlier_checkout_did(server: LocalPostgres) -> None:
    """The cluster of a checkout before passwords: no password, every local user
    trusted, the socket directory open to everyone; stopped."""
    server.acquire()
    with contextlib.closing(connect(server, password=server.password)) as admin:
        admin.autocommit = True
        with admin.cursor() as cursor:
            cursor.execute("ALTER ROLE postgres PASSWORD NULL")
            (server.data / "pg_hba.conf").write_text(TRUST)
            cursor.execute("SELECT pg_reload_conf()")
    wait_until(
        lambda: enters_without_password(server), timeout=10, what="trust to apply"
    )
    server.release()
    server.socket_dir.chmod(0o777)


def enters_without_password(server: LocalPostgres) -> bool:
    try:
        connect(server).close()
    except psycopg2.OperationalError:
        return False
    return True


def test_the_local_redis_socket_is_for_its_user_only(run_dir):
    server = LocalRedis(run_dir)
    try:
        server.acquire()
        assert_only_its_user_enters(server.socket.parent, None)
        assert stat.S_IMODE(server.socket.stat().st_mode) == 0o700
    finally:
        server.release()
        shutil.rmtree(server.socket.parent, ignore_errors=True)
