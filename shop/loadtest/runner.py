"""Run a load test: each stage's orders placed over HTTP by concurrent clients, every
saga waited out, the system's CPU measured around each stage, the books checked."""

import sys
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from datetime import UTC, datetime

import requests
from django.conf import settings
from tqdm import tqdm

from orders.reconcile import reconcile
from orders.selectors import order_outcomes
from sagas.faults import parse as parse_faults
from sagas.selectors import saga_ends
from shop.demo import REGULAR, Api, write_table
from shop.devenv import BASE, PIDS
from shop.loadtest.cpu import CpuMeter
from shop.loadtest.plan import MIXED, SCENARIOS, Options, scenario_sequence
from shop.loadtest.report import write_report
from shop.loadtest.rows import FAILED, UNFINISHED, Row
from shop.loadtest.stats import Run, summary_of
from shop.seeding import SCARCE_SKU, loadtest_data_seed

REQUEST_TIMEOUT = 30.0  # seconds for one order to be answered
POLL = 0.5  # seconds between two looks at the sagas still running
WAITED_OUT = ("COMPLETED", "COMPENSATED", "FAILED")  # FAILED waits for an operator


@dataclass
class Job:
    """One order to place, and the row it is recorded in."""

    row: Row
    token: str
    body: dict


def run_loadtest(options: Options, *, write) -> bool:
    """Run every stage in every mode, write the report; True if the system came out
    clean (every saga ended on its own, the books balance)."""
    Api(options.url).check_up()  # before anything is seeded or written
    started = datetime.now(UTC)
    out = options.out or BASE / "loadtest-results" / started.strftime("%Y%m%dT%H%M%SZ")
    faults = [str(f) for f in parse_faults(settings.SAGA_FAULTS)]
    if faults:
        write("loadtest: fault injection is ON: " + ", ".join(faults))
    meter = CpuMeter(options.pids or PIDS)
    roles = sorted(meter.processes())
    found = ", ".join(roles) or f"nothing (no system's pids in {meter.pid_dir})"
    write(f"loadtest: CPU measured for {found}")
    runs = [_run(options, stage, label, meter) for stage, label in options.runs()]
    books = reconcile()
    summary = summary_of(runs)
    table = summary_table(summary)
    ended = not any(
        row.outcome in (FAILED, UNFINISHED) for run in runs for row in run.rows
    )
    meta = {
        "started": started.isoformat(timespec="seconds"),
        "finished": datetime.now(UTC).isoformat(timespec="seconds"),
        "options": options.as_dict(),
        "faults": faults,
        "cpu_includes": roles,
        "every_saga_ended": ended,
    }
    write_report(
        out, runs=runs, summary=summary, reconciliation=books, meta=meta, table=table
    )
    write_table(write, table)
    write(f"reconciliation: {books.summary}")
    for violation in books.violations:
        write(f"  {violation}")
    if not ended:
        write("loadtest: some sagas did not end on their own (FAILED or UNFINISHED)")
    write(f"loadtest: report in {out}/index.html")
    return ended and not books.remaining


def summary_table(summary: list[dict]) -> list[tuple[str, ...]]:
    """The summary as printed: one row per mode and stage."""
    header = (
        "mode", "stage", "requests", "as expected", "confirmed", "4xx", "429", "5xx",
        "no answer", "e2e avg", "e2e p50", "e2e p95", "e2e p99", "e2e max",
        "http avg", "http p50", "http p95", "http p99", "sagas/s", "CPU s/saga",
    )  # fmt: skip
    table = [header]
    for s in summary:
        e2e, http = s["e2e_ms"], s["http_ms"]
        table.append(
            (
                s["mode"], s["stage"], str(s["requests"]), _percent(s["success_rate"]),
                _percent(s["confirmed_share"]), str(s["http_4xx"]), str(s["http_429"]),
                str(s["http_5xx"]), str(s["no_answer"]),
                *(_ms(e2e[k]) for k in ("avg", "p50", "p95", "p99", "max")),
                *(_ms(http[k]) for k in ("avg", "p50", "p95", "p99")),
                _number(s["throughput"], "{:.1f}"),
                _number(s["cpu_per_saga"], "{:.3f}"),
            )
        )  # fmt: skip
    return table


def _ms(value: float | None) -> str:
    return _number(value, "{:.0f} ms")


def _percent(value: float | None) -> str:
    return _number(None if value is None else value * 100, "{:.1f} %")


def _number(value: float | None, form: str) -> str:
    return "-" if value is None else form.format(value)


# ONE RUN -----------------------------------------------------------------------------


def _run(options: Options, stage: str, label: str, meter: CpuMeter) -> Run:
    """Place the stage's orders in ``label``'s mode and wait for every saga to end."""
    count = options.stages[stage]
    data = loadtest_data_seed(customers=options.customers, units=count)
    jobs = _jobs(options, stage, label, data)
    before = meter.sample()
    run = Run(stage=stage, label=label, rows=[j.row for j in jobs], started=time.time())
    with (
        _Clients(options.url, options.clients) as clients,
        tqdm(
            total=count, desc=f"{stage} {label}", unit="order", file=sys.stderr
        ) as bar,
    ):
        placing = {clients.submit(job) for job in jobs}
        _wait_out(placing, bar, timeout=options.timeout)
    run.cpu = meter.used(before, meter.sample()) or None
    _read_outcomes(run.rows)
    for row in run.rows:
        row.settle(run_started=run.started)
    return run


def _jobs(options: Options, stage: str, label: str, data: dict) -> list[Job]:
    payers, poor = data["customers"], data["poor"]
    # More than the scarce product has: its reservation is refused, whoever pays.
    scarce = next(p for p in data["products"] if p["sku"] == SCARCE_SKU)
    too_many = min(scarce["available"] + 1, 1000)
    modes = options.modes
    jobs = []
    sequence = scenario_sequence(
        stage, options.stages[stage], options.mix, options.seed
    )
    for i, scenario in enumerate(sequence):
        mode = modes[i % len(modes)] if label == MIXED else label
        customer = (
            poor[i % len(poor)] if scenario == "balance" else payers[i % len(payers)]
        )
        items = {REGULAR[i % len(REGULAR)]: 1}
        method, ship_to = "payment_method_id", "JP"
        if scenario == "stock":
            items = {SCARCE_SKU: too_many}
        elif scenario == "inactive":
            method = "retired_method_id"
        elif scenario == "unserved":
            ship_to = "AQ"
        body = {
            "items": [{"sku": sku, "quantity": n} for sku, n in items.items()],
            "payment_method_id": customer[method],
            "ship_to": ship_to,
            "mode": mode,
        }
        row = Row(
            stage=stage,
            run=label,
            mode=mode,
            scenario=scenario,
            expected=SCENARIOS[scenario].expected,
            customer=customer["username"],
            started_at=0.0,
        )
        jobs.append(Job(row=row, token=customer["token"], body=body))
    return jobs


def _wait_out(placing: set[Future], bar: tqdm, *, timeout: float) -> None:
    """Until every request is answered and every accepted saga has ended (or FAILED),
    or ``timeout`` seconds after the last answer; the bar counts orders done."""
    running: dict[int, Row] = {}
    deadline = None
    while placing or running:
        # One look at the sagas per POLL, however fast the answers come: each look is
        # a query that the measured PostgreSQL serves.
        if placing:
            answered, placing = wait(placing, timeout=POLL)
        else:
            answered = set()
            time.sleep(POLL)
        for future in answered:
            row = future.result()
            if row.saga_id is None:
                bar.update(1)
            else:
                running[row.saga_id] = row
        _look(running, bar)
        if not placing:
            deadline = deadline or time.monotonic() + timeout
            if time.monotonic() > deadline:
                return


def _look(running: dict[int, Row], bar: tqdm) -> None:
    """Take the sagas that have ended out of ``running``, with when they ended."""
    for saga_id, (status, finished_at) in saga_ends(saga_ids=running).items():
        if status in WAITED_OUT:
            row = running.pop(saga_id)
            row.saga_status = status
            if finished_at is not None:
                seconds = finished_at.timestamp() - row.started_at
                row.e2e_ms = round(seconds * 1000, 1)
            bar.update(1)


def _read_outcomes(rows: list[Row]) -> None:
    """Each order's status and cancel reason; its saga's status if still unknown."""
    orders = order_outcomes(order_ids=[r.order_id for r in rows if r.order_id])
    unknown = [r.saga_id for r in rows if r.saga_id and not r.saga_status]
    sagas = saga_ends(saga_ids=unknown)
    for row in rows:
        if row.order_id in orders:
            row.order_status, row.cancel_reason = orders[row.order_id]
        if row.saga_id in sagas:
            row.saga_status = sagas[row.saga_id][0]


# HTTP CLIENTS ------------------------------------------------------------------------


class _Clients:
    """A pool of client threads, each with its own keep-alive connection."""

    def __init__(self, url: str, clients: int) -> None:
        self.url = url.rstrip("/") + "/api/orders/"
        self.pool = ThreadPoolExecutor(max_workers=clients, thread_name_prefix="client")
        self.local = threading.local()
        self.sessions: list[requests.Session] = []
        self.lock = threading.Lock()

    def __enter__(self) -> "_Clients":
        return self

    def __exit__(self, *exc) -> None:
        self.pool.shutdown(wait=True, cancel_futures=True)
        for session in self.sessions:
            session.close()

    def submit(self, job: Job) -> Future:
        return self.pool.submit(self._place, job)

    def _session(self) -> requests.Session:
        if not hasattr(self.local, "session"):
            self.local.session = requests.Session()
            with self.lock:
                self.sessions.append(self.local.session)
        return self.local.session

    def _place(self, job: Job) -> Row:
        row, session = job.row, self._session()
        row.started_at = time.time()
        clock = time.perf_counter()
        try:
            response = session.post(
                self.url,
                json=job.body,
                headers={"Authorization": f"Token {job.token}"},
                timeout=REQUEST_TIMEOUT,
            )
        except requests.RequestException as exc:
            # No answer: no response time, the error says after how long.
            waited = time.perf_counter() - clock
            row.error = f"{type(exc).__name__} after {waited:.1f} s: {exc}"[:300]
            return row
        row.http_ms = round((time.perf_counter() - clock) * 1000, 1)
        row.http_status = response.status_code
        if response.status_code == 202:
            answer = response.json()
            row.order_id, row.saga_id = answer["order_id"], answer["saga_id"]
        return row
