"""Crashes on purpose, for the demo: `kill -9` of the Celery worker during a batch."""

import contextlib
import signal
import threading
import time
from dataclasses import dataclass

import psutil
from django.db import connection

from sagas.models import ENDED_STATUSES, Saga


@dataclass
class Kill:
    at: float  # seconds since the epoch
    processes: int
    ended_before: int


class WorkerKiller(threading.Thread):
    """Kill every Celery worker process (main and pool) ``times`` times, evenly spread
    over the batch's progress: at 1/(times+1), 2/(times+1), … of its sagas ended.

    The supervisor of `make run` starts the worker again; what was in flight is then
    recovered by the engine, which is what the demo measures.
    """

    def __init__(self, *, saga_ids: list[int], times: int) -> None:
        super().__init__(daemon=True)
        self.saga_ids, self.times = saga_ids, times
        self.kills: list[Kill] = []
        self.done = threading.Event()

    def run(self) -> None:
        try:
            for k in range(1, self.times + 1):
                target = len(self.saga_ids) * k // (self.times + 1)
                while not self.done.is_set() and (ended := self._ended()) < target:
                    time.sleep(0.3)
                if self.done.is_set():
                    return
                self.kills.append(Kill(time.time(), kill_workers(), ended))
                time.sleep(2)  # let the supervisor start a new one first
        finally:
            connection.close()

    def _ended(self) -> int:
        return Saga.objects.filter(
            pk__in=self.saga_ids, status__in=ENDED_STATUSES
        ).count()


def kill_workers() -> int:
    """SIGKILL every Celery worker process on this machine; return how many."""
    victims = [
        p
        for p in psutil.process_iter(["cmdline"])
        if (cmd := p.info["cmdline"]) and "celery" in " ".join(cmd) and "worker" in cmd
    ]
    for process in victims:
        with contextlib.suppress(psutil.NoSuchProcess):
            process.send_signal(signal.SIGKILL)
    return len(victims)
