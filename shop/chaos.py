"""Crashes on purpose, for the demo: `kill -9` of this checkout's Celery worker."""

import os
import signal
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import psutil
from django.db import connection

from sagas.models import ENDED_STATUSES, Saga
from shop import devenv


class NotSupervised(Exception):
    """No worker of a system this checkout started is there to be killed."""


@dataclass
class Kill:
    at: float  # seconds since the epoch
    processes: int
    ended_before: int


class WorkerKiller(threading.Thread):
    """Kill the supervised worker (main and pool) ``times`` times, evenly spread over
    the batch's progress: at 1/(times+1), 2/(times+1), … of its sagas ended.

    The supervisor of `make run` starts the worker again; what was in flight is then
    recovered by the engine, which is what the demo measures.
    """

    def __init__(
        self, *, saga_ids: list[int], times: int, pid_dir: Path | None = None
    ) -> None:
        super().__init__(daemon=True)
        self.saga_ids, self.times, self.pid_dir = saga_ids, times, pid_dir
        self.kills: list[Kill] = []
        self.error: NotSupervised | None = None
        self.done = threading.Event()

    def run(self) -> None:
        try:
            for k in range(1, self.times + 1):
                target = len(self.saga_ids) * k // (self.times + 1)
                while not self.done.is_set() and (ended := self._ended()) < target:
                    time.sleep(0.3)
                if self.done.is_set():
                    return
                killed = supervised_worker(self.pid_dir)
                self.kills.append(Kill(time.time(), kill_worker(killed), ended))
                wait_for_restart(killed, self.pid_dir)
        except NotSupervised as exc:
            self.error = exc
        finally:
            connection.close()

    def _ended(self) -> int:
        return Saga.objects.filter(
            pk__in=self.saga_ids, status__in=ENDED_STATUSES
        ).count()


def supervised_worker(pid_dir: Path | None = None) -> psutil.Process:
    """The Celery worker that this checkout's `make run` / `make demo` started.

    It is known by the pid its supervisor recorded, never looked for by name: other
    checkouts' and other users' workers on the machine are none of the demo's business.
    """
    record = devenv.PidFile(pid_dir or devenv.PIDS, "worker")
    if not record.path.exists():
        raise NotSupervised(
            f"no worker to kill: {record.path} is missing, so this checkout's "
            "`make run` is not running (--kill-worker kills only the worker of a "
            "system this checkout started)"
        )
    process = record.process()
    if process is None:
        raise NotSupervised(
            f"the worker recorded in {record.path} (pid {record.read()['pid']}) "
            "is no longer running"
        )
    if os.getpgid(process.pid) != process.pid:
        raise NotSupervised(f"pid {process.pid} does not lead a process group")
    return process


def kill_worker(worker: psutil.Process) -> int:
    """SIGKILL the worker's process group (it and its pool); return how many died."""
    group = [worker, *worker.children(recursive=True)]
    os.killpg(worker.pid, signal.SIGKILL)
    return len(group)


def wait_for_restart(
    killed: psutil.Process, pid_dir: Path | None = None, timeout: float = 60.0
) -> psutil.Process:
    """The worker the supervisor started in place of ``killed``."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            worker = supervised_worker(pid_dir)
            if worker.pid != killed.pid:
                return worker
        except NotSupervised:
            if time.monotonic() > deadline:
                raise
        if time.monotonic() > deadline:
            raise NotSupervised(f"pid {killed.pid} was killed but is still running")
        time.sleep(0.2)
