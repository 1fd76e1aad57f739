"""Real worker, relay, beat and broker processes for end-to-end tests."""

import contextlib
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import requests

from shop.devenv import WORKER_QUEUES, redis_command

BASE = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent

_RECEIVED = re.compile(r"Task (\S+)\[([0-9a-f-]+)\] received")
_FINISHED = re.compile(r"Task (\S+)\[([0-9a-f-]+)\] (?:succeeded|ignored|raised|retry)")


class Cluster:
    """The processes of a running sagashop, pointed at the test database.

    Every process runs in its own session, so killing one with SIGKILL takes its pool
    children with it, as a crashed machine would.
    """

    def __init__(
        self,
        *,
        db_name: str,
        env: dict[str, str] | None = None,
        concurrency: int = 2,
        pool: str = "prefork",
    ):
        self.logs = Path(tempfile.mkdtemp(prefix="sagashop-cluster-"))
        self.env = {**os.environ, "DATABASE_NAME": db_name, **(env or {})}
        self.concurrency = concurrency
        self.pool = pool  # prefork, as `make run`; solo, one per core, as the bench
        self.procs: dict[str, subprocess.Popen] = {}
        self.commands: dict[str, list[str]] = {}
        self.workers = 0
        self.restarts: list[str] = []
        self._lock = threading.Lock()  # the supervisor never races a kill or a stop
        self._stopping = threading.Event()

    # lifecycle ---------------------------------------------------------------------

    def start(self, *, beat: bool = False) -> "Cluster":
        self.start_relay()
        self.start_worker()
        if beat:
            self.start_beat()
        return self

    def start_worker(self) -> str:
        self.workers += 1
        name = f"worker{self.workers}"
        command = [
            str(BIN / "celery"),
            "-A",
            "shop",
            *self._quiet(),
            "worker",
            "-Q",
            WORKER_QUEUES,
            f"--pool={self.pool}",
            f"-c{self.concurrency}",
            f"--hostname={name}@%h",
            "-l",
            "info",
            "--without-gossip",
            "--without-mingle",
        ]
        self._spawn(name, command, ready=" ready.")
        return name

    def start_relay(self) -> None:
        command = [
            sys.executable,
            str(BASE / "manage.py"),
            "relay_outbox",
            "--poll=0.5",
        ]
        self._spawn("relay", command, ready="relay: listening")

    def start_web(self, port: int) -> str:
        """The WSGI server of `make run`, on ``port``; return its base URL."""
        command = [
            str(BIN / "gunicorn"),
            "shop.wsgi",
            f"--bind=127.0.0.1:{port}",
            "--workers=1",
            "--threads=4",
        ]
        self._spawn("web", command, ready="Booting worker")
        return f"http://127.0.0.1:{port}"

    def start_flower(self, port: int) -> str:
        """Flower as `make run` starts it, on ``port``; return its base URL. Its
        credentials are FLOWER_BASIC_AUTH in the cluster's environment; it hears of
        tasks only from workers that send events (CELERY_WORKER_SEND_TASK_EVENTS)."""
        command = [
            str(BIN / "celery"),
            "-A",
            "shop",
            "flower",
            "--address=127.0.0.1",
            f"--port={port}",
        ]
        self._spawn("flower", command, ready="Visit me at")
        url = f"http://127.0.0.1:{port}"
        wait_until(lambda: _answers(url), timeout=30, what="Flower to listen")
        return url

    def start_beat(self) -> None:
        command = [
            str(BIN / "celery"),
            "-A",
            "shop",
            *self._quiet(),
            "beat",
            "-l",
            "info",
            f"--pidfile={self.logs / 'beat.pid'}",
            f"--schedule={self.logs / 'beat-schedule'}",
            "--scheduler=celery.beat:PersistentScheduler",
        ]
        self._spawn("beat", command, ready="beat: Starting")

    def supervise(self) -> "Cluster":
        """Start again any process that dies on its own, as `make run` does.

        A worker can die of a broker outage: kombu's Redis transport raises an
        AttributeError (not a connection error) when a task finished after the broker
        connection was dropped is acknowledged, and the worker stops ("Unrecoverable
        error"). Whatever supervises a real deployment starts it again.
        """
        threading.Thread(target=self._restart_the_dead, daemon=True).start()
        return self

    def _restart_the_dead(self) -> None:
        while not self._stopping.wait(0.5):
            with self._lock:
                for name, proc in list(self.procs.items()):
                    if proc.poll() is not None and not self._stopping.is_set():
                        self.restarts.append(name)
                        self._spawn(name, self.commands[name], ready=None)

    def kill(self, name: str, sig: int = signal.SIGKILL) -> None:
        with self._lock:
            proc = self.procs.pop(name)  # killed on purpose: not to be restarted
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, sig)
        proc.wait(timeout=30)

    def stop(self) -> None:
        with self._lock:
            self._stopping.set()
        for name in list(self.procs):
            proc = self.procs[name]
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in list(self.procs.values()):
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        self.procs.clear()

    def log(self, name: str) -> str:
        return (self.logs / f"{name}.log").read_text(errors="replace")

    def received(self, task_name: str) -> int:
        """How many deliveries of ``task_name`` the workers have taken so far."""
        return sum(
            name == task_name for name, _ in _RECEIVED.findall(self._worker_logs())
        )

    def idle(self) -> bool:
        """Has every task a worker took finished (the workers' logs say so)?"""
        text = self._worker_logs()
        received = {task_id for _, task_id in _RECEIVED.findall(text)}
        finished = {task_id for _, task_id in _FINISHED.findall(text)}
        return received <= finished

    def _worker_logs(self) -> str:
        return "".join(
            p.read_text(errors="replace") for p in sorted(self.logs.glob("worker*.log"))
        )

    # internals ---------------------------------------------------------------------

    def _quiet(self) -> list[str]:
        """JSON lines only, as `make run` does: no banner printed beside them."""
        return ["--quiet"] if self.env.get("LOG_FORMAT") == "json" else []

    def _spawn(self, name: str, command: list[str], *, ready: str | None) -> None:
        """Start ``name``, appending to its log; wait for ``ready`` in it, if given."""
        path = self.logs / f"{name}.log"
        seen = (
            path.read_text(errors="replace").count(ready or "") if path.exists() else 0
        )
        log = open(path, "a")  # noqa: SIM115 (closed with the process)
        self.commands[name] = command
        self.procs[name] = subprocess.Popen(
            command,
            cwd=BASE,
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        if ready is not None:
            wait_until(
                lambda: self.log(name).count(ready) > seen,
                timeout=60,
                what=f"{name} to start",
                on_timeout=lambda: self.log(name)[-3000:],
            )


@contextlib.contextmanager
def web_server(cluster: Cluster, env: dict[str, str] | None = None) -> Iterator[str]:
    """A gunicorn of the caller's own, as `make run` serves the web, on ``cluster``'s
    database (``env`` added to its environment); yields its base URL. The cluster's
    worker and relay run what it starts."""
    web = Cluster(db_name=cluster.env["DATABASE_NAME"], env=env)
    try:
        yield web.start_web(free_port())
    finally:
        web.stop()


class LocalRedis:
    """A Redis server of a test's own, so the test may stop and restart its broker."""

    def __init__(self) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="sagashop-redis-"))
        self.socket = self.dir / "redis.sock"
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis+socket://{self.socket}"

    def start(self) -> "LocalRedis":
        # Nothing is kept on disk, like the broker of these machines: a restart loses
        # every queued and unacknowledged message.
        self.proc = subprocess.Popen(
            redis_command(self.socket),
            stdout=subprocess.DEVNULL,
            start_new_session=True,
        )
        wait_until(self.socket.exists, timeout=10, what="redis to start")
        return self

    def stop(self) -> None:
        if self.proc is not None:
            self.thaw()  # a stopped process would not handle SIGTERM
            self.proc.terminate()
            self.proc.wait(timeout=10)
            self.proc = None
        with contextlib.suppress(FileNotFoundError):
            self.socket.unlink()

    def freeze(self) -> None:
        """Stop answering, as a hung broker does: connections stay open, nothing
        is read or written (SIGSTOP of this test's own server only)."""
        self.proc.send_signal(signal.SIGSTOP)

    def thaw(self) -> None:
        if self.proc is not None:
            self.proc.send_signal(signal.SIGCONT)


# The plain server script: /usr/sbin/rabbitmq-server switches to the rabbitmq user,
# who may not write a test's own directory.
RABBITMQ_SERVER = "/usr/lib/rabbitmq/bin/rabbitmq-server"


class LocalRabbitMQ:
    """A RabbitMQ node of a test's own (its name, port and data under a temporary
    directory), so a test may stop and restart its broker and touch no other."""

    def __init__(self) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="sagashop-rabbitmq-"))
        self.port, self.dist_port = free_port(), free_port()
        self.node = f"sagashop-test-{self.port}@localhost"
        self.proc: subprocess.Popen | None = None

    @staticmethod
    def missing() -> str | None:
        """Why no node can be started here, or None."""
        if not Path(RABBITMQ_SERVER).exists() or not shutil.which("erl"):
            return f"RabbitMQ is not installed here ({RABBITMQ_SERVER} not found)"
        return None

    @property
    def url(self) -> str:
        return f"amqp://guest:guest@127.0.0.1:{self.port}//"

    def start(self) -> "LocalRabbitMQ":
        plugins = self.dir / "enabled_plugins"
        plugins.write_text("[].")
        env = {
            **os.environ,
            "HOME": str(self.dir),  # its own Erlang cookie
            "RABBITMQ_NODENAME": self.node,
            "RABBITMQ_NODE_IP_ADDRESS": "127.0.0.1",
            "RABBITMQ_NODE_PORT": str(self.port),
            "RABBITMQ_DIST_PORT": str(self.dist_port),
            "RABBITMQ_MNESIA_BASE": str(self.dir / "mnesia"),
            "RABBITMQ_LOG_BASE": str(self.dir / "log"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(plugins),
            "RABBITMQ_PID_FILE": str(self.dir / "pid"),
            "RABBITMQ_CONFIG_FILE": str(self.dir / "rabbitmq"),
        }
        log = open(self.dir / "server.log", "a")  # noqa: SIM115 (closed with it)
        self.proc = subprocess.Popen(
            [RABBITMQ_SERVER],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        wait_until(
            self._accepts,
            timeout=60,
            what="RabbitMQ to start",
            on_timeout=lambda: (self.dir / "server.log").read_text()[-3000:],
        )
        return self

    def _accepts(self) -> bool:
        from kombu import Connection

        if self.proc.poll() is not None:
            raise AssertionError("RabbitMQ exited: see " + str(self.dir))
        try:
            with Connection(self.url, connect_timeout=1) as connection:
                connection.ensure_connection(max_retries=1, timeout=2)
        except Exception:
            return False
        return True

    def ctl(self, *args: str) -> str:
        """Run rabbitmqctl against this node only (it shares the node's cookie)."""
        ctl = Path(RABBITMQ_SERVER).with_name("rabbitmqctl")
        done = subprocess.run(
            [str(ctl), "-n", self.node, *args],
            env={**os.environ, "HOME": str(self.dir)},
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        )
        return done.stdout

    def stop(self) -> None:
        """Stop the node (its durable queues and persistent messages stay on disk)."""
        if self.proc is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        self.proc = None

    def freeze(self) -> None:
        """Stop answering, connections left open (SIGSTOP of this node's processes)."""
        os.killpg(self.proc.pid, signal.SIGSTOP)

    def thaw(self) -> None:
        if self.proc is not None:
            os.killpg(self.proc.pid, signal.SIGCONT)

    def remove(self) -> None:
        self.thaw()
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_until(
    predicate: Callable[[], object],
    *,
    timeout: float,
    what: str,
    interval: float = 0.1,
    on_timeout: Callable[[], str] | None = None,
):
    """Poll until ``predicate`` is truthy; fail with ``what`` if it never is."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(FileNotFoundError):
            if value := predicate():
                return value
        time.sleep(interval)
    detail = on_timeout() if on_timeout else ""
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}\n{detail}")


def _answers(url: str) -> bool:
    """Does an HTTP server answer at ``url`` (with any status)?"""
    try:
        requests.get(url, timeout=2)
    except requests.RequestException:
        return False
    return True
