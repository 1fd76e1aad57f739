"""What a run costs, read from the servers and the processes: SQL statements
(pg_stat_statements), transactions committed (pg_stat_database: every one, an
autocommit statement's too), broker messages (Redis INFO commandstats) and CPU time
(every process of the run, the servers' included)."""

import time
from dataclasses import dataclass, field

import psutil
from django.db import connection, transaction

from shop.celery import app as celery_app

# Marks the bench's own queries (its polls), which are not the system's cost.
OWN = "/* bench */"
# Statements that only open or end a transaction: counted apart from the work.
_TRANSACTION_CONTROL = ("BEGIN", "COMMIT", "ROLLBACK", "START TRANSACTION")
# PostgreSQL (15 and later) flushes a backend's counters to pg_stat_database at most
# once a second while it works, and within 10 s once it is idle: a run's commits all
# show this long after it (pg_stat_statements counts at once).
SETTLE_SECONDS = 11.0


@dataclass
class Snapshot:
    commits: int  # transactions committed (pg_stat_database), as flushed so far
    rollbacks: int
    statements: dict[str, int] | None  # query text -> calls; None: not counted here
    broker: dict[str, int] | None  # Redis command -> calls; None: not Redis
    cpu: dict[str, float | None]  # CPU seconds so far, by process kind
    wal: int  # bytes of WAL the server has written so far (every database)


@dataclass
class Costs:
    """The difference between two snapshots, per saga."""

    sagas: int
    commits: float  # every transaction committed, an autocommit statement too
    rollbacks: float
    statements: float | None = None  # without BEGIN/COMMIT/ROLLBACK
    transaction_control: float | None = None  # BEGIN/COMMIT/ROLLBACK
    commit_statements: float | None = None  # explicit COMMITs (of a transaction)
    task_messages: float | None = None  # messages put on a queue (LPUSH)
    event_messages: float | None = None  # pub/sub messages (events, remote control)
    wal_kb: float | None = None  # WAL written, server-wide, as the peers measure it
    cpu_seconds: float | None = None  # every process of the run, servers included
    cpu_by_process: dict[str, float] = field(default_factory=dict)
    top_statements: list[dict] = field(default_factory=list)

    def as_dict(self) -> dict:
        return self.__dict__.copy()


def statements_enable() -> str | None:
    """Make pg_stat_statements readable in this database; None, or why it cannot be.

    The project-local PostgreSQL loads it at start (shop.devenv); a server that does
    not load it gives no statement counts, and the bench says so."""
    try:
        with connection.cursor() as cursor:
            cursor.execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
            cursor.execute("SELECT count(*) FROM pg_stat_statements")
    except Exception as exc:  # not loaded, or not allowed
        connection.close()
        return str(exc).strip().splitlines()[0]
    return None


@transaction.atomic  # one transaction: the next snapshot counts its COMMIT
def snapshot(*, count_statements: bool, fleet_cpu: dict[str, float]) -> Snapshot:
    statements = None
    with connection.cursor() as cursor:
        if count_statements:
            cursor.execute(
                "SELECT query, sum(calls)::bigint FROM pg_stat_statements "
                "WHERE dbid = (SELECT oid FROM pg_database "
                "WHERE datname = current_database()) GROUP BY query"
            )
            statements = dict(cursor.fetchall())
        cursor.execute(
            "SELECT pg_backend_pid(), "
            "pg_wal_lsn_diff(pg_current_wal_lsn(), '0/0')::bigint"
        )
        backend, wal = cursor.fetchone()
    commits, rollbacks = _transactions()
    broker, broker_pid = _broker_commands()
    cpu = {
        **fleet_cpu,
        "client": _cpu_seconds(psutil.Process()),
        "postgresql": _server_cpu(backend, "postgres", parent=True),
        "redis": _server_cpu(broker_pid, "redis"),
    }
    return Snapshot(commits, rollbacks, statements, broker, cpu, wal)


def settled(snapshot: Snapshot) -> Snapshot:
    """``snapshot`` with the commits of its time, once every backend flushed them."""
    time.sleep(SETTLE_SECONDS)
    snapshot.commits, snapshot.rollbacks = _transactions()
    return snapshot


def costs(
    before: Snapshot, after: Snapshot, *, sagas: int, own_transactions: int = 0
) -> Costs:
    """What happened between ``before`` and ``after``, per saga, without the bench's
    own: its polls (``own_transactions``, each a transaction of its own), and the
    snapshots' own transactions and queries (they name pg_stat_*)."""
    per = max(1, sagas)
    own = own_transactions + 2
    result = Costs(
        sagas=sagas,
        commits=(after.commits - before.commits - own) / per,
        rollbacks=(after.rollbacks - before.rollbacks) / per,
        wal_kb=round((after.wal - before.wal) / 1024 / per, 2),
    )
    if before.statements is not None and after.statements is not None:
        _statements(result, before.statements, after.statements, per)
    if before.broker is not None and after.broker is not None:
        delta = {
            c: after.broker.get(c, 0) - before.broker.get(c, 0) for c in after.broker
        }
        result.task_messages = (delta.get("lpush", 0) + delta.get("rpush", 0)) / per
        result.event_messages = delta.get("publish", 0) / per
    spent = {
        kind: (after.cpu[kind] - before.cpu[kind]) / per
        for kind in after.cpu
        if after.cpu[kind] is not None and before.cpu.get(kind) is not None
    }
    result.cpu_by_process = {kind: round(seconds, 5) for kind, seconds in spent.items()}
    if len(spent) == len(after.cpu):  # the servers too: they run on this machine
        result.cpu_seconds = round(sum(spent.values()), 5)
    return result


def _statements(result: Costs, before: dict, after: dict, per: int) -> None:
    calls = {query: n - before.get(query, 0) for query, n in after.items()}
    calls = {q: n for q, n in calls.items() if n > 0 and not _is_own(q)}
    control = sum(n for q, n in calls.items() if _is_control(q))
    result.transaction_control = control / per
    commits = sum(n for q, n in calls.items() if q.strip().upper() == "COMMIT")
    result.commit_statements = (commits - 1) / per  # less the before snapshot's
    result.statements = (sum(calls.values()) - control) / per
    result.top_statements = [
        {"calls_per_saga": round(n / per, 3), "query": q[:300]}
        for q, n in sorted(calls.items(), key=lambda kv: -kv[1])
        if not _is_control(q)
    ][:25]


def _is_own(query: str) -> bool:
    return OWN in query or "pg_stat_" in query


def _is_control(query: str) -> bool:
    return query.strip().upper().startswith(_TRANSACTION_CONTROL)


def _transactions() -> tuple[int, int]:
    """Transactions committed and rolled back in this database, as flushed so far."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT xact_commit, xact_rollback FROM pg_stat_database "
            "WHERE datname = current_database()"
        )
        return cursor.fetchone()


def _server_cpu(pid: int | None, name: str, *, parent: bool = False) -> float | None:
    """CPU seconds of a server on this machine (its backends included, ended ones
    too, as its main process waited for them); None if it is not here (a process
    of that pid here that is not ``name`` is someone else)."""
    from shop.bench.fleet import process_cpu

    try:
        process = psutil.Process(pid) if pid else None
        if process is not None and parent:
            process = process.parent()  # a backend's parent: the postmaster
        if process is None or name not in process.name():
            return None
    except psutil.Error:
        return None
    return process_cpu(process.pid)


def _cpu_seconds(process: psutil.Process) -> float:
    times = process.cpu_times()
    return times.user + times.system


def _broker_commands() -> tuple[dict[str, int] | None, int | None]:
    """Calls of each Redis command so far, and the server's pid; None, None if the
    broker is not Redis."""
    with celery_app.connection_for_write() as conn:
        client = getattr(conn.default_channel, "client", None)
        if client is None or not hasattr(client, "info"):
            return None, None
        stats = client.info("commandstats")
        pid = client.info("server").get("process_id")
    calls = {
        name.removeprefix("cmdstat_"): value.get("calls", 0)
        for name, value in stats.items()
    }
    return calls, pid
