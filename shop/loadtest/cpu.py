"""CPU time the system spends: its supervised processes and its local servers.

A process counts with all of its descendants (gunicorn's workers, a Celery worker's
pool, PostgreSQL's backends), those still running by their own times and those that
ended by what their parent reaped (the kernel adds a reaped child's time to its
parent's "children" times), so a backend that comes and goes within a stage is counted.
"""

import urllib.parse
from pathlib import Path

import psutil
from django.conf import settings
from django.db import connection

from shop.celery import app as celery_app
from shop.devenv import PidFile

# Flower watches the system, it is not part of it: its CPU is left out.
LEFT_OUT = frozenset({"flower"})
LOCAL_HOSTS = frozenset({"", "localhost", "127.0.0.1", "::1"})

Key = tuple[str, int, float]  # role, pid, start time: a restarted process is another


class CpuMeter:
    """Samples of the CPU seconds used so far, by process; ``used`` between two."""

    def __init__(self, pid_dir: Path) -> None:
        self.pid_dir = pid_dir

    def processes(self) -> dict[str, psutil.Process]:
        """The system's processes by role, found afresh (a worker may be restarted)."""
        found = {}
        if self.pid_dir.is_dir():
            for path in sorted(self.pid_dir.glob("[!.]*")):
                if path.name not in LEFT_OUT and (
                    process := PidFile(self.pid_dir, path.name).process()
                ):
                    found[path.name] = process
        if found:  # the servers count only beside a system this checkout runs
            for role, server in (("postgres", _postgres()), ("redis", _redis())):
                if server is not None:
                    found[role] = server
        return found

    def sample(self) -> dict[Key, float]:
        return {
            (role, p.pid, p.create_time()): tree_cpu_seconds(p)
            for role, p in self.processes().items()
        }

    @staticmethod
    def used(before: dict[Key, float], after: dict[Key, float]) -> dict[str, float]:
        """CPU seconds by role between two samples (empty if nothing was found). A
        process started in between counts from its start; one that ended in between
        is missing from ``after``, and its last stretch with it."""
        used: dict[str, float] = {}
        for key, seconds in after.items():
            used[key[0]] = used.get(key[0], 0.0) + seconds - before.get(key, 0.0)
        return used


def tree_cpu_seconds(process: psutil.Process) -> float:
    """User and system seconds of ``process`` and every descendant, ended ones too."""
    total = 0.0
    try:
        tree = [process, *process.children(recursive=True)]
    except psutil.Error:
        return total
    for member in tree:
        try:
            times = member.cpu_times()
        except psutil.Error:
            continue  # ended since it was listed: its parent has its time by now
        total += times.user + times.system + times.children_user + times.children_system
    return total


def _postgres() -> psutil.Process | None:
    """The postmaster of the database this process uses, if it runs on this machine:
    the parent of this connection's backend."""
    host = connection.settings_dict.get("HOST") or ""
    if not (host.startswith("/") or host in LOCAL_HOSTS):
        return None
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        [backend] = cursor.fetchone()
    try:
        return _named(psutil.Process(backend).parent(), "postgres")
    except psutil.Error:
        return None


def _redis() -> psutil.Process | None:
    """The Redis server of the broker, if it runs on this machine."""
    url = urllib.parse.urlsplit(settings.CELERY_BROKER_URL)
    local = url.scheme == "redis+socket" or (
        url.scheme == "redis" and (url.hostname or "") in LOCAL_HOSTS
    )
    if not local:
        return None
    with celery_app.connection_for_write() as conn:
        pid = conn.default_channel.client.info("server")["process_id"]
    try:
        return _named(psutil.Process(pid), "redis")
    except psutil.Error:
        return None


def _named(process: psutil.Process | None, name: str) -> psutil.Process | None:
    return process if process is not None and name in process.name() else None
