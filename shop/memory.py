"""A worker's memory kept flat: the garbage a failed task leaves is collected at once.

Every task that does not succeed (a business error that compensates a saga, a retry,
a stale step ignored) leaves a reference cycle behind: Celery's ExceptionInfo, its
billiard Traceback holding a copy of every frame's code positions (tens of KB on
Python 3.11), and the frames themselves (celery/celery#8882). The cycle outlives the
young generations, and only a full collection frees it; CPython runs one only once
the objects promoted since the last exceed a quarter of all long-lived ones, which in
a worker holding Django, Celery and the apps (about 110,000 objects) is rare. In the
bench a burst's failures grew each solo worker by about 65 MB before one came.

So the worker's main process, once it has imported the apps and before it starts its
pool or connects to the broker, moves what it has loaded to the permanent generation
(gc.freeze, as the CPython docs advise before forking: prefork's pool processes
inherit it, and their collections no longer write to every inherited object). A full
collection then looks only at what was made since, about a millisecond instead of 30,
and one runs before the task that follows one that did not succeed. The broker's
channels are made after the freeze: one dropped on a reconnection is garbage a
collection can still free.
"""

import gc

from celery import states
from celery.worker.control import inspect_command

_failed = False  # a task of this process did not succeed since the last collection


def freeze_what_is_loaded(**_) -> None:
    """worker_init: the apps are imported; no pool process, no broker connection yet."""
    gc.collect()  # what start-up left behind is not kept forever
    gc.freeze()


def note_how_it_ended(state=None, **_) -> None:
    """task_postrun: a task that did not succeed (failed, retried, ignored, rejected)
    left its exception's cycle behind."""
    global _failed
    _failed = _failed or state != states.SUCCESS


def collect_after_a_failure(**_) -> None:
    """task_prerun: the task before this one holds nothing any more. Per process: in
    a threads pool another thread's failed task may still hold its own, which the next
    collection frees."""
    global _failed
    if _failed:
        _failed = False
        gc.collect()


@inspect_command()
def garbage(state, **_) -> dict:
    """`celery -A shop inspect garbage`: what the worker's own process holds of
    failed tasks (solo and threads pools; a prefork pool's processes are others)."""
    tracked = gc.get_objects()
    infos = sum(1 for o in tracked if type(o).__name__ == "ExceptionInfo")
    return {
        "exception_infos": infos,
        "frozen_objects": gc.get_freeze_count(),
        "tracked_objects": len(tracked),
        "collections": [generation["collections"] for generation in gc.get_stats()],
    }
