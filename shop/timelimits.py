"""Celery's task time limits in a solo worker, whose pool enforces none of its own.

A solo worker runs each task in its own main thread: no pool process to hand it to,
none to read its result back from, which is what makes one solo worker per core the
fastest layout for short saga steps (README, *Scale*). Celery's time limits need a
pool process to interrupt or replace, so here they are enforced as prefork does:

- the **soft limit** raises SoftTimeLimitExceeded in the task (a SIGALRM, as prefork's
  pool sends its process a signal), which rolls its step back and counts as timed out;
- the **hard limit** catches a task that does not return even so (stuck in C code,
  or one that swallows the exception): a watchdog thread reports the failure as
  prefork's main process does (the task's errbacks, with TimeLimitExceeded) and ends
  the process, which its supervisor starts again, as prefork replaces a pool process.
  Its message, unacknowledged, is delivered again; the saga's generation or lock
  makes that copy do nothing once the report is recorded.
"""

import contextlib
import logging
import os
import signal
import sys
import threading
import time
from dataclasses import dataclass

from billiard.exceptions import TimeLimitExceeded
from celery import Task, signals
from celery.concurrency import get_implementation
from celery.concurrency.solo import TaskPool as SoloPool
from celery.exceptions import SoftTimeLimitExceeded

logger = logging.getLogger(__name__)

# The exit status of a solo worker ended by a hard time limit.
HARD_LIMIT_EXIT = 70  # EX_SOFTWARE


@dataclass
class _Running:
    task: Task
    task_id: str
    request: object
    soft: float | None
    hard: float | None
    hard_deadline: float | None  # time.monotonic()


_lock = threading.Condition()
_running: _Running | None = None


def enforce_in_solo_workers(sender=None, **_) -> None:
    """worker_init: enforce time limits if this worker's pool is solo (prefork and
    the others do their own, or say they have none)."""
    if get_implementation(sender.pool_cls) is not SoloPool:
        return
    signal.signal(signal.SIGALRM, _soft_limit_reached)
    signals.task_prerun.connect(_arm, weak=False)
    signals.task_postrun.connect(_disarm, weak=False)
    threading.Thread(target=_watch, name="hard-time-limit", daemon=True).start()


def limits_of(task: Task) -> tuple[float | None, float | None]:
    """(hard, soft) for the task at work: its message's, else its own, else the app's,
    as prefork reads them."""
    hard, soft = task.request.timelimit or (None, None)
    conf = task.app.conf
    hard = hard or task.time_limit or conf.task_time_limit
    soft = soft or task.soft_time_limit or conf.task_soft_time_limit
    return hard, soft


def _arm(task_id=None, task=None, **_) -> None:
    global _running
    hard, soft = limits_of(task)
    with _lock:
        _running = _Running(
            task=task,
            task_id=task_id,
            request=task.request,
            soft=soft,
            hard=hard,
            hard_deadline=time.monotonic() + hard if hard else None,
        )
        _lock.notify()
    if soft:
        signal.setitimer(signal.ITIMER_REAL, soft)


def _disarm(**_) -> None:
    global _running
    with _lock:
        _running = None  # first: an alarm that goes off now finds no task to stop
    signal.setitimer(signal.ITIMER_REAL, 0)


def _soft_limit_reached(signum, frame) -> None:
    running = _running
    if running is None:
        return  # the task ended as the alarm went off
    logger.warning(
        "Soft time limit (%ss) exceeded for %s[%s]",
        running.soft,
        running.task.name,
        running.task_id,
    )
    raise SoftTimeLimitExceeded(running.soft)


def _watch() -> None:
    """End the process when a task outlives its hard limit."""
    while True:
        with _lock:
            while _running is None or _running.hard_deadline is None:
                _lock.wait()
            running = _running
            left = running.hard_deadline - time.monotonic()
            if left > 0:
                _lock.wait(left)
                continue  # ended, replaced, or time to look again
        _hard_limit_reached(running)


def _hard_limit_reached(running: _Running) -> None:
    logger.error(
        "Hard time limit (%ss) exceeded for %s[%s]: this solo worker ends, to be "
        "started again by its supervisor",
        running.hard,
        running.task.name,
        running.task_id,
    )
    try:
        # What prefork's main process does for a pool process it replaces: the
        # task's errbacks hear of it (sagas.orchestration.tasks.step_failed).
        running.task.backend.mark_as_failure(
            running.task_id,
            TimeLimitExceeded(running.hard),
            request=running.request,
            store_result=False,
        )
    except Exception as exc:  # the broker is away: the recovery sweep finds the saga
        logger.error("the failure of %s was not reported: %r", running.task_id, exc)
    finally:
        # Not logging.shutdown(): the stuck thread may hold a handler's lock.
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(Exception):
                stream.flush()
        os._exit(HARD_LIMIT_EXIT)
