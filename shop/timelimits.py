"""Celery's task time limits in a solo worker, whose pool enforces none of its own.

A solo worker runs each task in its own main thread: no pool process to hand it to,
none to read its result back from, which is what makes one solo worker per core the
fastest layout for short saga steps (README, *Scale*). Celery's time limits need a
pool process to interrupt or replace, so here they are enforced as prefork does:

- the **soft limit** raises SoftTimeLimitExceeded in the task (a SIGALRM, as prefork's
  pool sends its process a signal), which rolls its step back and counts as timed out;
- the **hard limit** catches a task that does not return even so (blocked in a call
  that ignores signals, or one that swallows the exception): a watchdog thread
  reports the failure as prefork's main process does (the task's errbacks, with
  TimeLimitExceeded), acknowledges the task's message as prefork does (so it is not
  run again: its report decides what follows) and ends the process, which its
  supervisor starts again, as prefork replaces a pool process;
- past that, faulthandler ends the process from C: a call that never releases the GIL
  leaves no Python thread to run the watchdog. Then nothing is reported or
  acknowledged, and the message comes back (the saga lock and its generation make a
  copy harmless; the recovery sweep resends what is lost).

The task's own thread does as little as it can: it sets the alarm and says what runs.
The watchdog looks every WATCH_SECONDS rather than being woken, and faulthandler's
timer (a thread started, and joined when cancelled) is armed for a few tasks at a
time, not for each: between them they cost a task about 3 µs instead of 40.

A solo worker takes one message at a time (concurrency 1, whatever it was given):
another one reserved would wait behind a stalled step, and go with the worker.
"""

import contextlib
import faulthandler
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
from celery.worker import state as worker_state

# The exit status of a solo worker ended by a hard time limit.
HARD_LIMIT_EXIT = 70  # EX_SOFTWARE
# How long after the hard limit faulthandler ends the process if the watchdog could not
# (up to LAST_RESORT_SPAN later: one arming covers the tasks that start meanwhile).
LAST_RESORT_SECONDS = 5.0
LAST_RESORT_SPAN = 10.0
# How often the watchdog looks: a hard limit is acted on up to this late.
WATCH_SECONDS = 0.25
ACK_SETTLE_SECONDS = 0.5
# How long the watchdog has to report a hard limit and acknowledge, before faulthandler.
REPORT_SECONDS = 30.0


@dataclass(frozen=True)
class _Running:
    task: Task
    task_id: str
    request: object  # the task's context, for its errbacks
    soft: float | None
    hard: float | None
    hard_deadline: float | None  # time.monotonic()


_lock = threading.Lock()
_running: _Running | None = None
_last_resort_at = 0.0  # when faulthandler's timer ends the process (monotonic); 0: off
# The worker's own --time-limit and --soft-time-limit (or the app's settings).
_worker_limits: dict[str, float | None] = {"hard": None, "soft": None}


def enforce_in_solo_workers(sender=None, **_) -> None:
    """worker_init: enforce time limits if this worker's pool is solo (prefork does
    its own; gevent only the hard limit, eventlet and threads none)."""
    pool = get_implementation(sender.pool_cls)
    if not (isinstance(pool, type) and issubclass(pool, SoloPool)):
        return
    sender.concurrency = 1  # read after worker_init, for the prefetch count
    _worker_limits.update(hard=sender.time_limit, soft=sender.soft_time_limit)
    signal.signal(signal.SIGALRM, _soft_limit_reached)
    signals.task_prerun.connect(_arm, weak=False)
    signals.task_postrun.connect(_disarm, weak=False)
    threading.Thread(target=_watch, name="hard-time-limit", daemon=True).start()


def limits_of(task: Task) -> tuple[float | None, float | None]:
    """(hard, soft) for the task at work: its message's, else its own, else the
    worker's, as prefork reads them."""
    hard, soft = task.request.timelimit or (None, None)
    hard = hard or task.time_limit or _worker_limits["hard"]
    soft = soft or task.soft_time_limit or _worker_limits["soft"]
    return hard, soft


def _arm(task_id=None, task=None, **_) -> None:
    global _running
    hard, soft = limits_of(task)
    running = _Running(
        task=task,
        task_id=task_id,
        request=task.request,
        soft=soft,
        hard=hard,
        hard_deadline=time.monotonic() + hard if hard else None,
    )
    with _lock:
        _running = running
        if hard:
            _last_resort_within(hard + LAST_RESORT_SECONDS)
        else:
            _last_resort_off()  # a task without a limit may take as long as it takes
    if soft:
        signal.setitimer(signal.ITIMER_REAL, soft)


def _disarm(**_) -> None:
    # The alarm may go off as the task ends, and its handler run in here: the clock
    # is stopped all the same (once stopped, no other alarm can come).
    while True:
        try:
            _stop_the_clock()
            return
        except SoftTimeLimitExceeded:
            continue


def _stop_the_clock() -> None:
    global _running
    signal.setitimer(signal.ITIMER_REAL, 0)
    # The last resort stays armed: the next task most likely needs it too; the
    # watchdog turns it off once no task runs.
    with _lock:
        _running = None


def _last_resort_within(seconds: float) -> None:
    """Have faulthandler end the process between ``seconds`` and LAST_RESORT_SPAN
    later, unless it is so already; the caller holds the lock."""
    global _last_resort_at
    earliest = time.monotonic() + seconds
    if not earliest <= _last_resort_at <= earliest + LAST_RESORT_SPAN:
        faulthandler.dump_traceback_later(seconds + LAST_RESORT_SPAN, exit=True)
        _last_resort_at = earliest + LAST_RESORT_SPAN


def _last_resort_off() -> None:
    global _last_resort_at
    if _last_resort_at:
        faulthandler.cancel_dump_traceback_later()
        _last_resort_at = 0.0


def _soft_limit_reached(signum, frame) -> None:
    running = _running
    if running is None:
        return  # the task ended as the alarm went off
    _say(
        f"Soft time limit ({running.soft}s) exceeded for "
        f"{running.task.name}[{running.task_id}]"
    )
    raise SoftTimeLimitExceeded(running.soft)


def _watch() -> None:
    """End the process when a task outlives its hard limit. The decision and the end
    are taken holding the lock, so the task cannot end and another start between."""
    global _running
    while True:
        with _lock:
            running, now = _running, time.monotonic()
            if running is None:
                _last_resort_off()  # idle: nothing may end it
            elif running.hard_deadline is not None and running.hard_deadline <= now:
                if _active(running.task_id):
                    _hard_limit_reached(running)  # does not return
                # It ended, but the alarm cut its disarming short: nothing to end.
                _running = None
        left = WATCH_SECONDS
        if running is not None and running.hard_deadline is not None:
            left = min(left, running.hard_deadline - now)
        time.sleep(max(left, 0.0))


def _active(task_id: str):
    """The worker's request for the task, while it runs."""
    return next((r for r in worker_state.active_requests if r.id == task_id), None)


def _hard_limit_reached(running: _Running) -> None:
    _say(
        f"Hard time limit ({running.hard}s) exceeded for "
        f"{running.task.name}[{running.task_id}]: this solo worker ends, to be "
        "started again by its supervisor"
    )
    # The report and the acknowledgement may each wait up to BROKER_TIMEOUT (a
    # retry doubles it): the last resort must not cut them short.
    faulthandler.dump_traceback_later(REPORT_SECONDS, exit=True)
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
        _say(f"the timeout of {running.task_id} was not reported: {exc!r}")
    try:
        _acknowledge(_active(running.task_id))
    except Exception as exc:
        _say(f"the message of {running.task_id} was not acknowledged: {exc!r}")
    finally:
        os._exit(HARD_LIMIT_EXIT)


def _acknowledge(request) -> None:
    """As prefork does after a hard limit (task_acks_on_failure_or_timeout): the report
    decides what follows, so the message must not be run again."""
    if request is None or request.message.acknowledged:
        return
    # The message itself: Request.acknowledge() leaves the ack to the event loop
    # (Consumer.call_soon_ack), which never runs again here.
    request.message.ack()
    qos = request.message.channel.qos
    if hasattr(qos, "restore_unacked"):
        # Redis: what else this worker holds (a retry waiting out its countdown)
        # goes back to its queue now, not after the visibility timeout.
        qos.restore_unacked()
    else:
        # AMQP: a connection closed with frames unread is reset, and a broker that
        # sees the reset before it has read the acknowledgement drops it.
        time.sleep(ACK_SETTLE_SECONDS)


def _say(line: str) -> None:
    """To the worker's stderr without logging's locks, which the stuck thread may
    hold (blocked in the middle of a log line)."""
    with contextlib.suppress(OSError, ValueError):
        os.write(sys.stderr.fileno(), f"[timelimits] {line}\n".encode())
