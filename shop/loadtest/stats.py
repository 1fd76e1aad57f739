"""The numbers of a load test: percentiles, and one summary per mode and stage."""

import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

from shop.loadtest.plan import CONFIRMED, MIXED, REJECTED
from shop.loadtest.rows import (
    NO_ANSWER,
    OUTCOMES,
    SAGA_OUTCOMES,
    SERVER_ERROR,
    THROTTLED,
    Row,
)

ALL_MODES = "all"  # the summary of a mixed run's every mode together
# A saga that ended on its own: confirmed or cancelled (FAILED waits for an operator).
ENDED_OUTCOMES = {SAGA_OUTCOMES["COMPLETED"], SAGA_OUTCOMES["COMPENSATED"]}


@dataclass
class Run:
    """One stage in one mode (or mixed): its requests and what the system spent."""

    stage: str
    label: str  # a mode, or MIXED
    rows: list[Row]
    started: float  # the first request was sent (seconds since the epoch)
    cpu: dict[str, float] | None = field(default=None)  # seconds, by process

    @property
    def wall(self) -> float:
        """From the first request sent to the last saga ended or answer received."""
        ends = [self.started]
        for row in self.rows:
            if row.e2e_ms is not None:
                ends.append(row.started_at + row.e2e_ms / 1000)
            elif row.http_ms is not None:
                ends.append(row.started_at + row.http_ms / 1000)
        return max(ends) - self.started


def percentile(values: Sequence[float], q: float) -> float | None:
    """The ``q``-th percentile, linear between the closest ranks (as numpy's default
    and spreadsheets do); None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100
    low = math.floor(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def distribution(values: Sequence[float]) -> dict:
    return {
        "n": len(values),
        "avg": sum(values) / len(values) if values else None,
        "p50": percentile(values, 50),
        "p95": percentile(values, 95),
        "p99": percentile(values, 99),
        "max": max(values, default=None),
    }


def summarise(
    rows: list[Row], *, mode: str, stage: str, wall: float, cpu: dict | None
) -> dict:
    """What the requests came to. ``cpu`` (seconds by process) is what the system
    spent on them, None when it cannot be told apart (one mode of a mixed run)."""
    outcomes = Counter(row.outcome for row in rows)
    requests = len(rows)
    sagas = sum(row.saga_id is not None for row in rows)
    ended = sum(outcomes[o] for o in ENDED_OUTCOMES)
    cpu_seconds = sum(cpu.values()) if cpu else None
    return {
        "mode": mode,
        "stage": stage,
        "requests": requests,
        "sagas": sagas,
        "as_expected": sum(row.as_expected for row in rows),
        "success_rate": _share(sum(row.as_expected for row in rows), requests),
        "confirmed_share": _share(outcomes[CONFIRMED], requests),
        "outcomes": {o: outcomes[o] for o in OUTCOMES if outcomes[o]},
        "http_4xx": outcomes[REJECTED],  # a 429 is counted on its own
        "http_429": outcomes[THROTTLED],
        "http_5xx": outcomes[SERVER_ERROR],
        "no_answer": outcomes[NO_ANSWER],
        "e2e_ms": distribution([r.e2e_ms for r in rows if r.e2e_ms is not None]),
        "http_ms": distribution([r.http_ms for r in rows if r.http_ms is not None]),
        "wall_s": wall,
        "sagas_ended": ended,
        "throughput": ended / wall if wall > 0 else None,
        "cpu_seconds": cpu_seconds,
        "cpu_per_saga": cpu_seconds / sagas
        if cpu_seconds is not None and sagas
        else None,
        "cpu_by_process": cpu,
    }


def summary_of(runs: list[Run]) -> list[dict]:
    """One summary per mode and stage. A mixed run gives one per mode (its CPU cannot
    be told apart by mode) and one for all modes together, with the CPU."""
    summaries = []
    for run in runs:
        wall = run.wall
        if run.label != MIXED:
            summaries.append(
                summarise(
                    run.rows, mode=run.label, stage=run.stage, wall=wall, cpu=run.cpu
                )
            )
            continue
        for mode in dict.fromkeys(row.mode for row in run.rows):
            rows = [row for row in run.rows if row.mode == mode]
            summaries.append(
                summarise(rows, mode=mode, stage=run.stage, wall=wall, cpu=None)
            )
        summaries.append(
            summarise(run.rows, mode=ALL_MODES, stage=run.stage, wall=wall, cpu=run.cpu)
        )
    return summaries


def _share(part: int, whole: int) -> float | None:
    return part / whole if whole else None
