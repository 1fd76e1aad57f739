"""A worker's memory kept flat: the garbage a failed task leaves is collected at once.

Every task that raises (a business error that compensates a saga, a retry, a stale
step ignored) leaves a reference cycle behind: Celery's ExceptionInfo, its billiard
Traceback holding a copy of every frame's code positions (tens of KB on Python
3.11), and the frames themselves (celery/celery#8882). The cycle outlives the
young generations, and only a full collection frees it; CPython runs one only once
the objects promoted since the last exceed a quarter of all long-lived ones, which in
a worker holding Django, Celery and the apps (about 110,000 objects) is rare. In the
bench a burst's failures grew each solo worker by about 65 MB before one came.

So once a process that runs tasks has loaded everything, what it has loaded is moved
to the permanent generation (gc.freeze, as the CPython docs advise for long-running
servers): a full collection then looks only at what was made since, about a
millisecond instead of 30, and one runs before the task that follows a failure.
"""

import gc

from celery.worker.control import inspect_command

_failed = False  # a task of this process raised since the last collection


def freeze_what_is_loaded(**_) -> None:
    """worker_ready (solo and threads pools run tasks in this process) and
    worker_process_init (each prefork pool process)."""
    gc.collect()  # what start-up left behind is not kept forever
    gc.freeze()


def note_a_failure(**_) -> None:
    """task_failure and task_retry (sent while the task's exception is still held)."""
    global _failed
    _failed = True


def collect_after_a_failure(**_) -> None:
    """task_prerun: the failed task before this one holds nothing any more."""
    global _failed
    if _failed:
        _failed = False
        gc.collect()


@inspect_command()
def garbage(state, **_) -> dict:
    """`celery -A shop inspect garbage`: what the worker's own process holds of
    failed tasks (solo and threads pools; a prefork pool's processes are others)."""
    infos = sum(1 for o in gc.get_objects() if type(o).__name__ == "ExceptionInfo")
    return {
        "exception_infos": infos,
        "frozen_objects": gc.get_freeze_count(),
        "tracked_objects": len(gc.get_objects()),
        "collections": [generation["collections"] for generation in gc.get_stats()],
    }
