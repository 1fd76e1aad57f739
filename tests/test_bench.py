"""A small `make bench` end to end: its own database, workers, relay and beat, the
peers' workload in every mode, and the results it writes (not its speed)."""

import contextlib
import json
import os
import subprocess
import sys
from pathlib import Path

import psycopg2
from django.db import connection

from shop.devenv import BASE


def test_a_small_bench_writes_its_results_and_leaves_the_books_clean(tmp_path):
    database = f"sagashop_bench_test_{os.getpid()}"
    env = {
        **os.environ,
        "BENCH_DATABASE": database,
        # Queues of its own: the test session's workers must not take its work.
        "CELERY_BROKER_KEYPREFIX": f"benchtest{os.getpid()}:",
    }
    command = [sys.executable, "-m", "shop.devenv", "bench", "--n=10", "--serial=2"]
    try:
        done = subprocess.run(
            [*command, f"--out={tmp_path}"],
            cwd=BASE,
            env=env,
            capture_output=True,
            text=True,
            timeout=600,
        )
    finally:
        _drop(database)

    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "reconciliation: 0 violations" in done.stdout
    [results] = tmp_path.glob("bench-*.json")
    report = json.loads(results.read_text())
    runs = {(run["mode"], run["kind"]): run for run in report["runs"]}
    assert set(runs) == {
        (mode, kind)
        for mode in ("orchestration", "choreography", "tcc")
        for kind in ("burst", "one at a time")
    }
    for (_, kind), run in runs.items():
        # Order 9 of the workload is from a customer with no money: undone.
        expected = {"COMPLETED": 9, "COMPENSATED": 1} if kind == "burst" else None
        assert run["outcomes"] == (expected or {"COMPLETED": 2})
        assert run["sagas_per_second"] > 0 and run["p50_ms"] > 0
        costs = run["costs"]
        # The project-local PostgreSQL loads pg_stat_statements: counted, per saga.
        assert costs["statements"] > 0 and costs["commits"] > 0
        assert costs["cpu_seconds"] > 0 and costs["wal_kb"] > 0
        assert costs["task_messages"] > 0  # a Redis broker: its messages counted
        assert run["worker_rss_end_mb"] > 0
        # Read from the run's start on, every second: the first reading is its start.
        [(first_at, first_mb), *_] = run["worker_rss_samples_mb"]
        assert first_at < 1 and first_mb > 0
        assert run["worker_rss_mid_mb"] in [
            mb for _, mb in run["worker_rss_samples_mb"]
        ]
    assert report["reconciliation"]["violations"] == 0
    assert Path(report["options"]["out"]) == tmp_path


def _drop(database: str) -> None:
    """The bench's database goes with the test (it made it on the test's server)."""
    params = connection.get_connection_params()
    admin = psycopg2.connect(**{**params, "dbname": "postgres"})
    admin.autocommit = True
    with contextlib.closing(admin), admin.cursor() as cursor:
        cursor.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
