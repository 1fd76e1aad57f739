"""The load test's numbers: percentiles, outcomes, summaries, CPU seconds."""

import subprocess
import sys
import time

import psutil
import pytest

from shop.loadtest.cpu import CpuMeter, tree_cpu_seconds
from shop.loadtest.plan import CANCELLED, CONFIRMED, MIXED, REJECTED
from shop.loadtest.rows import NO_ANSWER, THROTTLED, UNFINISHED, Row
from shop.loadtest.stats import ALL_MODES, Run, percentile, summarise, summary_of


def test_percentiles_are_linear_between_the_closest_ranks():
    values = list(range(100, 0, -1))  # 1..100, in any order

    assert percentile(values, 50) == pytest.approx(50.5)
    assert percentile(values, 95) == pytest.approx(95.05)
    assert percentile(values, 99) == pytest.approx(99.01)
    assert percentile(values, 100) == 100
    assert percentile([7.0], 99) == 7.0
    assert percentile([], 50) is None


def row(expected, status, *, saga_status="", e2e=None, mode="tcc", http=10.0) -> Row:
    made = Row(
        stage="light",
        run=mode,
        mode=mode,
        scenario="x",
        expected=expected,
        customer="c",
        started_at=1000.0,
        http_status=status,
        http_ms=http if status else None,
        saga_id=1 if status == 202 else None,
        saga_status=saga_status,
        e2e_ms=e2e,
    )
    made.settle(run_started=1000.0)
    return made


def test_each_answer_reads_as_one_outcome_checked_against_its_scenario():
    assert row(CONFIRMED, 202, saga_status="COMPLETED").outcome == CONFIRMED
    assert row(CANCELLED, 202, saga_status="COMPENSATED").as_expected
    assert not row(CONFIRMED, 202, saga_status="COMPENSATED").as_expected
    assert row(CONFIRMED, 202, saga_status="RUNNING").outcome == UNFINISHED
    assert row(REJECTED, 400).as_expected
    assert not row(REJECTED, 404).as_expected  # rejected, but not for the reason
    throttled = row(CONFIRMED, 429)
    assert (throttled.outcome, throttled.as_expected) == (THROTTLED, False)
    assert row(CONFIRMED, None).outcome == NO_ANSWER


def test_a_summary_counts_outcomes_apart_and_divides_cpu_by_the_sagas():
    rows = [
        row(CONFIRMED, 202, saga_status="COMPLETED", e2e=100.0),
        row(CONFIRMED, 202, saga_status="COMPLETED", e2e=300.0),
        row(CANCELLED, 202, saga_status="COMPENSATED", e2e=200.0),
        row(CONFIRMED, 202, saga_status="FAILED", e2e=900.0),
        row(REJECTED, 400),
        row(CONFIRMED, 429),
        row(CONFIRMED, 503),
        row(CONFIRMED, None),
    ]

    summary = summarise(
        rows, mode="tcc", stage="light", wall=2.0, cpu={"web": 1.0, "worker": 3.0}
    )

    assert summary["requests"] == 8
    assert summary["sagas"] == 4
    assert summary["success_rate"] == 4 / 8
    assert summary["confirmed_share"] == 2 / 8
    assert (summary["http_4xx"], summary["http_429"]) == (1, 1)
    assert (summary["http_5xx"], summary["no_answer"]) == (1, 1)
    assert summary["e2e_ms"]["avg"] == 375.0
    assert summary["e2e_ms"]["p50"] == 250.0
    assert summary["e2e_ms"]["max"] == 900.0
    assert summary["http_ms"]["n"] == 7  # no answer, no response time
    assert summary["throughput"] == 3 / 2.0  # a FAILED saga has not ended
    assert summary["cpu_per_saga"] == 4.0 / 4


def test_a_run_lasts_from_its_first_request_to_its_last_saga_or_answer():
    rows = [
        row(CONFIRMED, 202, saga_status="COMPLETED", e2e=1500.0),
        row(REJECTED, 400, http=2500.0),
    ]

    assert Run("light", "tcc", rows, started=1000.0).wall == 2.5


def test_a_mixed_run_is_summed_up_per_mode_and_its_cpu_for_all_modes_together():
    rows = [
        row(CONFIRMED, 202, saga_status="COMPLETED", e2e=100.0, mode=mode)
        for mode in ("tcc", "choreography", "tcc")
    ]
    run = Run("light", MIXED, rows, started=1000.0, cpu={"worker": 3.0})

    summaries = {s["mode"]: s for s in summary_of([run])}

    assert set(summaries) == {"tcc", "choreography", ALL_MODES}
    assert summaries["tcc"]["requests"] == 2
    assert summaries["tcc"]["cpu_per_saga"] is None
    assert summaries[ALL_MODES]["cpu_per_saga"] == 1.0


def test_cpu_counts_a_process_and_its_children_the_ended_ones_too():
    burn = (
        "import time; t = time.process_time(); "
        "exec('while time.process_time() - t < 0.3: pass')"
    )
    parent = subprocess.Popen(
        ["/bin/sh", "-c", f'"{sys.executable}" -c "{burn}"; exec sleep 30']
    )
    try:
        process = psutil.Process(parent.pid)
        before = {("sh", process.pid, process.create_time()): 0.0}
        deadline = time.monotonic() + 20
        # The child burns its CPU and ends; sh reaps it and becomes a sleep.
        while time.monotonic() < deadline and (
            process.children() or tree_cpu_seconds(process) < 0.3
        ):
            time.sleep(0.05)

        spent = tree_cpu_seconds(process)

        assert not process.children()
        assert spent >= 0.3
        after = {("sh", process.pid, process.create_time()): spent}
        assert CpuMeter.used(before, after) == {"sh": spent}
    finally:
        parent.kill()
        parent.wait()
