"""Benchmark the engine on the peers' workload (`make bench` prepares a fresh
database first)."""

import json
import logging
import os
import platform
import signal
import time
from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from django.db import connection

from sagas.definitions import Mode
from sagas.management.commands.relay_outbox import positive
from shop.bench import counters
from shop.bench.fleet import Fleet, FleetOptions
from shop.bench.peers import DEFAULT_PEERS, peers_run, ratio_table
from shop.bench.runner import Bench, books_checked
from shop.bench.workload import shop_seed
from shop.celery import app as celery_app
from shop.devenv import bench_lock

POOLS = ("prefork", "threads", "solo")


class Command(BaseCommand):
    help = (
        "Run N purchases in a burst, then one at a time, per mode, through real "
        "workers; print and save throughput, latency and what each saga cost."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument(
            "--mode",
            action="append",
            choices=Mode.values,
            dest="modes",
            help="run this mode (repeat for more; default: all three in turn)",
        )
        parser.add_argument("--n", type=positive(int), default=1000, help="burst size")
        parser.add_argument(
            "--serial",
            type=int,
            default=50,
            help="sagas run one at a time after each burst (0: none)",
        )
        # One solo worker per core: the fastest layout (README, *Scale*).
        parser.add_argument(
            "--workers",
            type=positive(int),
            default=os.cpu_count() or 1,
            help="worker processes (default: one per core)",
        )
        parser.add_argument("--pool", choices=POOLS, default="solo")
        parser.add_argument(
            "--concurrency", type=positive(int), default=1, help="pool size per worker"
        )
        parser.add_argument(
            "--events",
            action="store_true",
            help="workers send task events (what Flower shows); off by default",
        )
        parser.add_argument(
            "--happy",
            action="store_true",
            help="every customer can pay, so no saga fails: what a happy saga costs "
            "(the peers' workload has a tenth fail; ratios to them need it so)",
        )
        parser.add_argument(
            "--clients",
            type=positive(int),
            default=8,
            help="threads placing the burst's orders",
        )
        parser.add_argument(
            "--out", default="bench-results", help="folder for the JSON results"
        )
        parser.add_argument(
            "--peers",
            metavar="DIR",
            help="first run the peers' run_all.sh in DIR (../shared/peers) on the "
            "same N, then print sagashop's ratios to them",
        )
        parser.add_argument(
            "--peer-list",
            default=DEFAULT_PEERS,
            help=f"which peers run_all.sh runs (default {DEFAULT_PEERS!r})",
        )

    def handle(self, *args, **options) -> None:
        # A bench stopped by a signal stops its workers, relay and beat too (the
        # finally below): left running, they would take the next bench's messages.
        for signum in (signal.SIGTERM, signal.SIGHUP):
            signal.signal(signum, _interrupted)
        if os.environ.get("BENCH_LOCKED"):  # `make bench` holds it already
            return self._handle(**options)
        with bench_lock(connection.settings_dict["NAME"]):
            return self._handle(**options)

    def _handle(self, **options) -> None:
        # This process places the orders: a line per saga started would bury the
        # progress bar and the table (the fleet logs apart, at warning too); -v 2
        # keeps them.
        if options["verbosity"] < 2:
            logging.getLogger().setLevel(logging.WARNING)
        if options["serial"] < 0:
            raise CommandError("--serial must be 0 or more")
        out = Path(options["out"])
        out.mkdir(parents=True, exist_ok=True)
        stamp = time.strftime("%Y%m%d-%H%M%S")
        peer_rows = self._peers(options, out / f"peers-{stamp}.jsonl")
        fleet_options = FleetOptions(
            workers=options["workers"],
            pool=options["pool"],
            concurrency=options["concurrency"],
            events=options["events"],
        )
        result = self._bench(options, fleet_options, out / f"logs-{stamp}")
        result["peers"] = peer_rows
        path = out / f"bench-{stamp}.json"
        path.write_text(json.dumps(result, indent=2, default=str))
        if peer_rows:
            self.stdout.write("\nAgainst the peers, in this run:")
            for line in ratio_table(peer_rows, result["runs"]):
                self.stdout.write(line)
        self.stdout.write(f"\nresults: {path}")
        if result["reconciliation"]["violations"]:
            raise CommandError(f"the books do not balance: {result['reconciliation']}")

    def _peers(self, options, results: Path) -> list[dict]:
        if not options["peers"]:
            return []
        self.stdout.write(f"peers: {options['peer_list']} (N={options['n']})")
        try:
            return peers_run(
                Path(options["peers"]),
                n=options["n"],
                serial=options["serial"],
                peers=options["peer_list"],
                out=results,
            )
        except FileNotFoundError as exc:
            raise CommandError(str(exc)) from exc

    def _bench(self, options, fleet_options: FleetOptions, logs: Path) -> dict:
        why_not = counters.statements_enable()
        if why_not:
            self.stdout.write(f"SQL statements are not counted: {why_not}")
        shop = shop_seed()
        modes = options["modes"] or Mode.values
        fleet = Fleet(fleet_options, log_dir=logs).start()
        runs = []
        try:
            bench = Bench(
                shop,
                fleet,
                clients=options["clients"],
                count_statements=why_not is None,
                happy=options["happy"],
            )
            self.stdout.write(f"workers: {fleet_options.describe()}; logs in {logs}")
            time.sleep(counters.SETTLE_SECONDS)  # the start's commits, flushed
            self._header()
            for mode in modes:
                runs.append(bench.burst(mode, options["n"]).as_dict())
                self._line(runs[-1])
                if options["serial"]:
                    runs.append(bench.one_at_a_time(mode, options["serial"]).as_dict())
                    self._line(runs[-1])
        finally:
            fleet.stop()
            _queues_purge()
        books = books_checked()
        self.stdout.write(f"reconciliation: {books['summary']}")
        return {
            "options": {k: v for k, v in options.items() if k != "stdout"},
            "fleet": fleet_options.describe(),
            "machine": _machine(),
            "runs": runs,
            "reconciliation": books,
        }

    def _header(self) -> None:
        self.stdout.write(
            f"{'mode':<14} {'run':<13} {'n':>5} {'sagas/s':>8} {'p50 ms':>8} "
            f"{'p95 ms':>8} {'p99 ms':>8} {'max ms':>8} {'stmts':>6} {'commits':>7} "
            f"{'msgs':>5} {'rss MB':<15}  outcomes"
        )

    def _line(self, run: dict) -> None:
        costs = run["costs"]
        self.stdout.write(
            f"{run['mode']:<14} {run['kind']:<13} {run['n']:>5} "
            f"{run['sagas_per_second']:>8.1f} {run['p50_ms']:>8.1f} "
            f"{run['p95_ms']:>8.1f} {run['p99_ms']:>8.1f} {run['max_ms']:>8.1f} "
            f"{_num(costs['statements']):>6} {_num(costs['commits']):>7} "
            f"{_num(costs['task_messages']):>5} "
            f"{_rss(run):<15}  "
            f"{run['outcomes']}"
            + (f", {run['recovered']} recovered" if run["recovered"] else "")
        )


def _rss(run: dict) -> str:
    """The worker's memory at the run's start, halfway through it (warm by then),
    and at its end."""
    marks = ("worker_rss_start_mb", "worker_rss_mid_mb", "worker_rss_end_mb")
    return ">".join(f"{run[mark]:.0f}" for mark in marks)


def _queues_purge() -> None:
    """Delete what this run left on the broker (its key prefix is its own)."""
    prefix = settings.CELERY_BROKER_TRANSPORT_OPTIONS.get("global_keyprefix")
    if not prefix:
        return
    with celery_app.connection_for_write() as conn:
        client = getattr(conn.default_channel, "client", None)
        if client is None or not hasattr(client, "scan_iter"):
            return
        # kombu's client puts the prefix on DEL but not on SCAN or UNLINK: the keys
        # are matched, and unlinked, by their full names.
        keys = list(client.scan_iter(match=f"{prefix}*", count=1000))
        for start in range(0, len(keys), 500):
            client.execute_command("UNLINK", *keys[start : start + 500])


def _interrupted(signum, frame):
    raise KeyboardInterrupt(f"stopped by signal {signum}")


def _num(value) -> str:
    return "n/a" if value is None else f"{value:.1f}"


def _machine() -> dict:
    with connection.cursor() as cursor:
        cursor.execute("SHOW server_version")
        server = cursor.fetchone()[0]
    return {
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "postgresql": server,
    }
