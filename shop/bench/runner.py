"""Run the workload: a burst of N sagas, then N one at a time, per mode; measure."""

import contextlib
import threading
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from django.db import connection
from tqdm import tqdm

from orders.reconcile import reconcile
from sagas.models import ENDED_STATUSES, Saga, SagaEvent, SagaEventKind, SagaStatus
from shop.bench import counters
from shop.bench.fleet import Fleet
from shop.bench.workload import Shop, place

DONE = (*ENDED_STATUSES, SagaStatus.FAILED)
TRAILING_WORK_SECONDS = 2.0
RSS_EVERY = 1.0  # seconds between readings of the worker's memory during a run


@dataclass
class Run:
    """One measured run: a burst or the one-at-a-time sagas of one mode."""

    mode: str
    kind: str  # "burst" or "one at a time"
    n: int
    wall_seconds: float = 0.0
    place_seconds: float = 0.0
    latencies_ms: list[float] = field(default_factory=list, repr=False)
    outcomes: dict[str, int] = field(default_factory=dict)
    recovered: int = 0  # sagas whose lost work the recovery sweep sent again
    costs: dict = field(default_factory=dict)
    worker_rss_start: int = 0
    worker_rss_end: int = 0
    # The worker's memory every RSS_EVERY seconds of the run: (seconds in, bytes).
    worker_rss_samples: list[tuple[float, int]] = field(default_factory=list)

    @property
    def worker_rss_mid(self) -> int:
        """The worker's memory halfway through the run: from there to its end, what
        grows grows with the sagas served, not with the worker warming up."""
        if not self.worker_rss_samples:
            return 0
        half = self.worker_rss_samples[-1][0] / 2
        return min(self.worker_rss_samples, key=lambda s: abs(s[0] - half))[1]

    @property
    def sagas_per_second(self) -> float:
        return len(self.latencies_ms) / self.wall_seconds if self.wall_seconds else 0.0

    def percentile(self, q: float) -> float:
        """Nearest-rank percentile, as the peers compute it (shared/peers/common.py)."""
        ordered = sorted(self.latencies_ms)
        if not ordered:
            return float("nan")
        rank = max(1, -(-q * len(ordered) // 100))
        return ordered[min(int(rank), len(ordered)) - 1]

    def as_dict(self) -> dict:
        return {
            "mode": self.mode,
            "kind": self.kind,
            "n": self.n,
            "wall_seconds": round(self.wall_seconds, 3),
            "place_seconds": round(self.place_seconds, 3),
            "sagas_per_second": round(self.sagas_per_second, 2),
            **{f"p{q}_ms": round(self.percentile(q), 1) for q in (50, 95, 99)},
            "max_ms": round(max(self.latencies_ms, default=float("nan")), 1),
            "outcomes": self.outcomes,
            "recovered": self.recovered,
            "costs": self.costs,
            "worker_rss_start_mb": round(self.worker_rss_start / 2**20, 1),
            "worker_rss_mid_mb": round(self.worker_rss_mid / 2**20, 1),
            "worker_rss_end_mb": round(self.worker_rss_end / 2**20, 1),
            "worker_rss_samples_mb": [
                (round(at, 1), round(rss / 2**20, 1))
                for at, rss in self.worker_rss_samples
            ],
        }


class Bench:
    def __init__(
        self,
        shop: Shop,
        fleet: Fleet,
        *,
        clients: int,
        count_statements: bool,
        happy: bool = False,
    ) -> None:
        self.shop = shop
        self.fleet = fleet
        self.clients = clients
        self.happy = happy  # every customer can pay: no saga fails
        self.count_statements = count_statements
        self.placed = 0  # orders placed so far: order i of the workload comes next
        self.polls = 0  # the bench's own queries while it waits: not the system's cost

    def burst(self, mode: str, n: int) -> Run:
        """Place n orders as fast as ``clients`` threads can; wait for every saga."""
        run = Run(mode, "burst", n, worker_rss_start=self.fleet.worker_rss())
        before, polls = self._snapshot(), self.polls
        indexes = range(self.placed, self.placed + n)
        self.placed += n
        submitted: dict[int, float] = {}
        lock = threading.Lock()

        def place_one(i: int) -> None:
            started = time.time()
            saga_id = place(self.shop, i, mode, happy=self.happy)
            with lock:
                submitted[saga_id] = started

        began = time.time()
        with self._rss_sampled(run):
            with tqdm(
                total=n, desc=f"{mode}: placing", unit="order", leave=False
            ) as bar:
                _in_threads(place_one, indexes, self.clients, on_done=bar.update)
            run.place_seconds = time.time() - began
            self._wait_ended(list(submitted), desc=f"{mode}: sagas ended")
        self._finish(run, submitted, before, self.polls - polls)
        return run

    def one_at_a_time(self, mode: str, n: int) -> Run:
        """Place each order once the previous saga ended (no queueing: service time)."""
        run = Run(mode, "one at a time", n, worker_rss_start=self.fleet.worker_rss())
        before, polls = self._snapshot(), self.polls
        submitted: dict[int, float] = {}
        with self._rss_sampled(run):
            for i in tqdm(range(n), desc=f"{mode}: one at a time", leave=False):
                started = time.time()
                saga_id = place(self.shop, self.placed + i, mode, happy=self.happy)
                submitted[saga_id] = started
                self._poll_until_ended(saga_id)
        self.placed += n
        self._finish(run, submitted, before, self.polls - polls)
        return run

    def _snapshot(self) -> counters.Snapshot:
        return counters.snapshot(
            count_statements=self.count_statements, fleet_cpu=self.fleet.cpu_seconds()
        )

    def _finish(self, run: Run, submitted: dict, before, polls: int) -> None:
        # What a saga's end sets off still counts (a choreographed step's fence on
        # the failure that ended it, the relay's mark of the last events).
        time.sleep(TRAILING_WORK_SECONDS)
        self.fleet.check_alive()
        after = counters.settled(self._snapshot())
        self._measure(run, submitted)
        costs = counters.costs(before, after, sagas=run.n, own_transactions=polls)
        run.costs = costs.as_dict()
        run.worker_rss_end = self.fleet.worker_rss()

    def _wait_ended(self, saga_ids: list[int], *, desc: str, timeout=1800.0) -> None:
        first, deadline = min(saga_ids), time.monotonic() + timeout
        with tqdm(total=len(saga_ids), desc=desc, unit="saga", leave=False) as bar:
            while (done := self._ended_since(first)) < len(saga_ids):
                bar.update(done - bar.n)
                self.fleet.check_alive()
                if time.monotonic() > deadline:
                    raise RuntimeError(f"only {done} of {len(saga_ids)} sagas ended")
                time.sleep(0.05)
            bar.update(done - bar.n)

    @contextlib.contextmanager
    def _rss_sampled(self, run: Run):
        """Read the worker's memory every RSS_EVERY seconds while the run goes on, in
        a thread of its own (a reading is a few /proc reads, no query)."""
        stop, began = threading.Event(), time.monotonic()

        def sample() -> None:
            while True:
                at = time.monotonic() - began
                run.worker_rss_samples.append((at, self.fleet.worker_rss()))
                if stop.wait(RSS_EVERY):
                    return

        sampler = threading.Thread(target=sample, name="rss", daemon=True)
        sampler.start()
        try:
            yield
        finally:
            stop.set()
            sampler.join()

    def _ended_since(self, first: int) -> int:
        self.polls += 1
        with connection.cursor() as cursor:
            cursor.execute(
                f"SELECT count(*) FROM sagas_saga {counters.OWN} "
                "WHERE id >= %s AND status = ANY(%s)",
                [first, list(DONE)],
            )
            return cursor.fetchone()[0]

    def _poll_until_ended(self, saga_id: int, *, timeout: float = 60.0) -> None:
        """Poll every millisecond, as the peers' one-at-a-time client does."""
        deadline = time.monotonic() + timeout
        with connection.cursor() as cursor:
            while time.monotonic() < deadline:
                self.polls += 1
                cursor.execute(
                    f"SELECT status FROM sagas_saga {counters.OWN} WHERE id = %s",
                    [saga_id],
                )
                if cursor.fetchone()[0] in DONE:
                    return
                time.sleep(0.001)
        raise RuntimeError(f"saga {saga_id} did not end within {timeout:.0f}s")

    def _measure(self, run: Run, submitted: dict[int, float]) -> None:
        rows = Saga.objects.filter(pk__in=list(submitted)).values_list(
            "pk", "status", "finished_at"
        )
        ends = {pk: finished.timestamp() for pk, _, finished in rows if finished}
        run.outcomes = dict(Counter(status for _, status, _ in rows))
        # Work the recovery sweep had to send again: it was lost on its way.
        run.recovered = (
            SagaEvent.objects.filter(
                saga_id__in=list(submitted), kind=SagaEventKind.RECOVERED
            )
            .values("saga_id")
            .distinct()
            .count()
        )
        # A FAILED saga has no end (an operator may still take it up): it counts in
        # the outcomes, not in the latencies or the wall time.
        run.latencies_ms = [
            (ends[pk] - t) * 1000 for pk, t in submitted.items() if pk in ends
        ]
        if ends:
            run.wall_seconds = max(ends.values()) - min(submitted.values())


def _in_threads(function: Callable, items, workers: int, *, on_done) -> None:
    """Call ``function`` on each item from ``workers`` threads, each with its own
    database connection, closed when the thread is done."""

    def call(item) -> None:
        try:
            function(item)
        finally:
            on_done(1)

    everyone = threading.Barrier(workers)

    def close(_) -> None:
        everyone.wait()  # one close per thread: none of them may take two
        connection.close()

    with ThreadPoolExecutor(max_workers=workers) as pool:
        list(pool.map(call, items))
        list(pool.map(close, range(workers)))


def books_checked() -> dict:
    report = reconcile()
    return {"violations": len(report.violations), "summary": report.summary}
