"""An interrupted bench's processes are stopped by the next one: left running, they
would take its messages with whatever code they started with."""

import json
import subprocess
import sys

import psutil

from shop.bench.fleet import stop_leftovers
from shop.devenv import PidFile
from tests.cluster import wait_until

# A process with a child of its own, as a worker with its pool.
PARENT = "import subprocess, time; subprocess.Popen(['sleep', '60']); time.sleep(60)"


def test_an_earlier_benchs_processes_and_their_children_are_stopped(tmp_path):
    leftover = subprocess.Popen([sys.executable, "-c", PARENT])
    children = wait_until(
        lambda: psutil.Process(leftover.pid).children(), timeout=10, what="its child"
    )
    PidFile(tmp_path, "worker1").write(leftover.pid)

    assert stop_leftovers(tmp_path) == [leftover.pid]

    assert leftover.wait(timeout=10) is not None
    psutil.wait_procs(children, timeout=10)
    assert not any(c.is_running() and c.status() != "zombie" for c in children)
    assert not list(tmp_path.iterdir())  # its record is gone too


def test_a_pid_now_used_by_another_process_is_left_alone(tmp_path):
    other = subprocess.Popen(["sleep", "60"])
    try:
        # Recorded with another start time: the pid has been given to a new process.
        started = psutil.Process(other.pid).create_time() - 3600
        (tmp_path / "worker1").write_text(
            json.dumps({"pid": other.pid, "started": started})
        )

        assert stop_leftovers(tmp_path) == []
        assert other.poll() is None
    finally:
        other.kill()
        other.wait()
