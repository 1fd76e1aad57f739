"""`demo --kill-worker`: it kills the worker its checkout's supervisor started, by
the pid recorded, and no other Celery worker on the machine."""

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading

import psutil
import pytest
from django.core.management import CommandError, call_command

from shop import devenv
from shop.chaos import NotSupervised, kill_worker, supervised_worker, wait_for_restart
from shop.devenv import BASE, PidFile, Supervisor
from tests.cluster import wait_until

# Looks like a Celery worker to anything matching command lines, and starts a child
# in its process group, as a worker starts its pool.
POOL = "import time; time.sleep(60)"
MAIN = "; ".join(
    [
        "import subprocess, sys, time",
        f"subprocess.Popen([sys.executable, '-c', {POOL!r}])",
        "time.sleep(60)",
    ]
)
LOOKALIKE = [sys.executable, "-c", MAIN, "celery", "-A", "shop", "worker"]


@pytest.fixture
def stranger():
    """A worker-looking process this checkout's supervisor did not start."""
    proc = subprocess.Popen(LOOKALIKE, cwd=BASE, start_new_session=True)
    yield proc
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


@pytest.fixture
def supervised(tmp_path):
    supervisor = Supervisor({"worker": LOOKALIKE}, pid_dir=tmp_path)
    supervisor.start()
    watcher = threading.Thread(target=supervisor.watch, daemon=True)
    watcher.start()
    yield supervisor
    supervisor.stop(timeout=5)
    watcher.join(5)


def pool_of(pid: int) -> list[psutil.Process]:
    return wait_until(
        lambda: psutil.Process(pid).children(), timeout=10, what="the pool to start"
    )


def dead(process: psutil.Process) -> bool:
    try:
        return process.status() == psutil.STATUS_ZOMBIE  # killed, not yet reaped
    except psutil.NoSuchProcess:
        return True


def test_only_the_supervised_worker_and_its_pool_are_killed_then_restarted(
    tmp_path, stranger, supervised
):
    first = supervised.procs["worker"]
    pool = pool_of(first.pid)
    stranger_pool = pool_of(stranger.pid)

    worker = supervised_worker(tmp_path)
    assert worker.pid == first.pid
    assert kill_worker(worker) == 2

    assert first.wait(5) == -signal.SIGKILL
    restarted = wait_for_restart(worker, tmp_path, timeout=10)
    assert restarted.pid == supervised.procs["worker"].pid != first.pid
    assert stranger.poll() is None, "a worker the supervisor did not start was killed"
    assert not any(map(dead, stranger_pool))
    wait_until(lambda: all(map(dead, pool)), timeout=5, what="the pool to die")


def test_a_stop_removes_the_pid_files(tmp_path, supervised):
    assert (tmp_path / "worker").exists()
    supervised.stop(timeout=5)

    assert not (tmp_path / "worker").exists()
    with pytest.raises(NotSupervised, match="worker is missing"):
        supervised_worker(tmp_path)


def test_a_recorded_pid_now_given_to_another_process_is_not_killed(tmp_path, stranger):
    # The record of a worker that died: its pid, now the stranger's, and its start.
    PidFile(tmp_path, "worker").write(stranger.pid)
    record = PidFile(tmp_path, "worker").read()
    record["started"] -= 60
    (tmp_path / "worker").write_text(json.dumps(record))

    with pytest.raises(NotSupervised, match="is no longer running"):
        supervised_worker(tmp_path)
    assert stranger.poll() is None


def test_kill_worker_without_a_system_of_this_checkout_fails_clearly(
    tmp_path, monkeypatch, stranger
):
    monkeypatch.setattr(devenv, "PIDS", tmp_path / "pids")  # no make run here

    with pytest.raises(CommandError, match=r"pids/worker is missing"):
        call_command("demo", "--url=http://127.0.0.1:9", "--kill-worker=1")
    assert stranger.poll() is None
