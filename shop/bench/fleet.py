"""The processes a benchmark runs against: Celery workers, the outbox relay and beat,
as `make run` starts them, with their output in one log file."""

import contextlib
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import psutil
from django.conf import settings

from shop.devenv import BASE, BIN, RUN, WORKER_QUEUES, PidFile, Supervisor

# The running fleet's pids, by database: an interrupted bench's processes are found
# and stopped by the next bench on its database (one runs at a time, under the lock
# shop.devenv.bench_lock takes), as they would take its messages with older code.
PIDS = RUN / "bench-pids"


@dataclass(frozen=True)
class FleetOptions:
    workers: int  # worker processes (each with its own pool)
    pool: str
    concurrency: int
    events: bool = False  # task events for Flower

    def describe(self) -> str:
        events = "events on" if self.events else "events off"
        return f"{self.workers} x {self.pool} -c {self.concurrency}, {events}"


class Fleet:
    def __init__(self, options: FleetOptions, *, log_dir: Path) -> None:
        self.options = options
        self.log_dir = log_dir
        env = {
            # Warnings only, as the peers log: the bench measures the sagas, not a
            # line per task (`make run` logs them at info).
            "LOG_LEVEL": "WARNING",
            **os.environ,
            "CELERY_WORKER_SEND_TASK_EVENTS": "true" if options.events else "false",
        }
        log_dir.mkdir(parents=True, exist_ok=True)
        self.log = log_dir / "fleet.log"
        # By database: benches on other databases (a test's) are left alone.
        self.pid_dir = PIDS / settings.DATABASES["default"]["NAME"]
        self.supervisor = Supervisor(
            self._commands(), log=self.log, env=env, pid_dir=self.pid_dir
        )

    def _commands(self) -> dict[str, list[str]]:
        celery = str(BIN / "celery")
        commands = {
            f"worker{n}": self._worker(celery, n)
            for n in range(1, self.options.workers + 1)
        }
        commands["relay"] = [sys.executable, str(BASE / "manage.py"), "relay_outbox"]
        commands["beat"] = [
            celery, "-A", "shop", "beat", "-l", "warning",
            "--scheduler=celery.beat:PersistentScheduler",
            f"--schedule={self.log_dir / 'beat-schedule'}",
            f"--pidfile={self.log_dir / 'beat.pid'}",
        ]  # fmt: skip
        return commands

    def _worker(self, celery: str, n: int) -> list[str]:
        return [
            celery, "-A", "shop", "worker", "-Q", WORKER_QUEUES,
            f"--pool={self.options.pool}", f"--concurrency={self.options.concurrency}",
            f"--hostname=bench{n}@%h", "--without-gossip", "--without-mingle",
            "-l", "warning",
        ]  # fmt: skip

    def start(self) -> "Fleet":
        stop_leftovers(self.pid_dir)
        self.supervisor.start()
        self._wait_ready()
        return self

    def stop(self) -> None:
        self.supervisor.stop()

    def _wait_ready(self, timeout: float = 90.0) -> None:
        from shop.celery import app

        names = {f"bench{n}@" for n in range(1, self.options.workers + 1)}
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.check_alive()
            replies = app.control.ping(timeout=0.5) or []
            answered = {host.split("@")[0] + "@" for reply in replies for host in reply}
            if names <= answered:
                return
        raise RuntimeError(f"the workers did not start; see {self.log}")

    def check_alive(self) -> None:
        """Raise if a process of the fleet has died (a run with one is not measured:
        nothing restarts it)."""
        for name, proc in self.supervisor.procs.items():
            if proc.poll() is not None:
                log = self.log.read_text(errors="replace")
                raise RuntimeError(f"{name} exited ({proc.returncode}):\n{log[-2000:]}")

    def cpu_seconds(self) -> dict[str, float]:
        """CPU time (user and system) each of the fleet's processes has used so far,
        pool processes included."""
        used: dict[str, float] = {}
        for name, proc in self.supervisor.procs.items():
            kind = "workers" if name.startswith("worker") else name
            used[kind] = used.get(kind, 0.0) + process_cpu(proc.pid)
        return used

    def worker_rss(self) -> int:
        """Resident memory of every worker process and its pool, in bytes."""
        total = 0
        for name, proc in self.supervisor.procs.items():
            if not name.startswith("worker"):
                continue
            try:
                parent = psutil.Process(proc.pid)
                total += sum(
                    p.memory_info().rss for p in [parent, *parent.children(True)]
                )
            except psutil.NoSuchProcess:
                pass
        return total


def process_cpu(pid: int) -> float:
    """CPU seconds used by a process and all its descendants, those that ended too
    (as far as it waited for them, as a server does for its backends)."""
    try:
        parent = psutil.Process(pid)
        own = parent.cpu_times()
        total = own.user + own.system + own.children_user + own.children_system
        for child in parent.children(recursive=True):
            times = child.cpu_times()
            total += times.user + times.system
    except psutil.Error:
        return 0.0
    return total


def stop_leftovers(directory: Path) -> list[int]:
    """Stop what an earlier, interrupted bench left running (each pid checked to be
    that very process), with its pool; return their pids."""
    stopped = []
    for path in sorted(directory.glob("[!.]*")) if directory.exists() else []:
        record = PidFile(directory, path.name)
        if (process := record.process()) is not None:
            for member in [process, *process.children(recursive=True)]:
                with contextlib.suppress(psutil.Error):
                    member.kill()
            stopped.append(process.pid)
        record.remove()
    return stopped
