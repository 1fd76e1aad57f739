"""The supervisor behind `make run`: a dead process is restarted; a stop is final.
And the ports it serves on, which several checkouts on one machine must not share."""

import json
import signal
import socket
import sys
import threading
import time

import pytest

from shop.devenv import (
    DevenvError,
    Supervisor,
    _check_ports_free,
    _metrics_env,
    system_processes,
)


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


@pytest.fixture
def taken_port():
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        yield holder.getsockname()[1]


def test_the_ports_come_from_web_port_and_flower_port(monkeypatch):
    monkeypatch.setenv("WEB_PORT", "8611")
    monkeypatch.setenv("FLOWER_PORT", "5611")
    monkeypatch.setenv("FLOWER_BASIC_AUTH", "admin:secret")
    processes = system_processes()

    assert "--bind=127.0.0.1:8611" in processes["web"]
    assert "--port=5611" in processes["flower"]


@pytest.mark.parametrize("variable", ["WEB_PORT", "FLOWER_PORT"])
def test_a_port_in_use_is_refused_before_anything_starts(
    monkeypatch, taken_port, variable
):
    monkeypatch.setenv(variable, str(taken_port))
    other = {"WEB_PORT": "FLOWER_PORT", "FLOWER_PORT": "WEB_PORT"}[variable]
    with socket.socket() as free:
        free.bind(("127.0.0.1", 0))
        monkeypatch.setenv(other, str(free.getsockname()[1]))

    with pytest.raises(
        DevenvError, match=f"port {taken_port} is in use; set {variable}"
    ):
        _check_ports_free()


def test_a_port_that_is_not_a_port_is_named(monkeypatch):
    monkeypatch.setenv("WEB_PORT", "eighty")

    with pytest.raises(DevenvError, match=r"WEB_PORT must be a port .*'eighty'"):
        _check_ports_free()


def test_a_json_line_stays_one_with_its_process_named_and_others_are_prefixed(
    tmp_path,
):
    log = tmp_path / "system.log"
    script = 'print(\'{"level": "INFO", "message": "hi"}\'); print(\'plain\')'
    supervisor = Supervisor({"web": [sys.executable, "-c", script]}, log=log)
    supervisor.start()
    try:
        assert wait(lambda: log.read_text().count("\n") == 2), log.read_text()
    finally:
        supervisor.stop(timeout=5)

    first, second = log.read_text().splitlines()
    assert json.loads(first) == {"process": "web", "level": "INFO", "message": "hi"}
    assert second == "web | plain"


def test_make_run_gives_an_emptied_metrics_directory_to_all_but_flower(tmp_path):
    directory = tmp_path / "metrics"
    directory.mkdir()
    (directory / "counter_123.db").write_bytes(b"an earlier run's")

    env_of = _metrics_env(directory)

    assert set(env_of) == {"web", "worker", "beat", "relay"}
    assert set(system_processes()) == {*env_of, "flower"}
    assert {e["PROMETHEUS_MULTIPROC_DIR"] for e in env_of.values()} == {str(directory)}
    assert directory.is_dir() and not any(directory.iterdir())
