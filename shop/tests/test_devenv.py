"""The supervisor behind `make run`: a dead process is restarted; a stop is final."""

import signal
import threading
import time

from shop.devenv import Supervisor


def wait(predicate, timeout=10.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return False


def test_a_process_that_dies_is_started_again_and_a_stop_stops_everything():
    supervisor = Supervisor({"sleeper": ["sleep", "60"], "other": ["sleep", "60"]})
    supervisor.start()
    watcher = threading.Thread(target=supervisor.watch, daemon=True)
    watcher.start()
    try:
        first = supervisor.procs["sleeper"]
        first.send_signal(signal.SIGKILL)
        assert wait(lambda: supervisor.procs["sleeper"] is not first), "not restarted"
        assert supervisor.procs["sleeper"].poll() is None
    finally:
        supervisor.stop(timeout=5)
    watcher.join(5)

    assert not watcher.is_alive()
    assert all(proc.poll() is not None for proc in supervisor.procs.values())
    time.sleep(1)  # the watcher had its chance to restart something, and did not
    assert all(proc.poll() is not None for proc in supervisor.procs.values())


def test_a_process_that_keeps_dying_stops_the_supervisor():
    supervisor = Supervisor({"crasher": ["false"]})
    supervisor.start()
    try:
        assert supervisor.watch() == 1
    finally:
        supervisor.stop(timeout=5)
