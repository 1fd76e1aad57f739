"""The unattended demo: a batch of orders covering every scenario, placed over REST.

It seeds the demo data, places the orders against a running system, waits for every
saga to end, prints what happened and how long it took, and checks the invariants.
"""

import json
import statistics
import time
import urllib.error
import urllib.request
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime

from orders.reconcile import reconcile
from sagas.faults import parse as parse_faults
from shop.celery import app as celery_app
from shop.chaos import Kill, WorkerKiller, supervised_worker
from shop.seeding import SCARCE_SKU, SCARCE_UNITS, demo_data_seed

CONTENDERS = 30
# How often a request a rate limit refused (429) is sent again before giving up.
THROTTLED_TRIES = 20
ENDED = ("COMPLETED", "COMPENSATED")
REGULAR = ("SENCHA", "MATCHA", "HOJICHA")


class SystemUnavailable(Exception):
    pass


@dataclass
class Placed:
    scenario: str
    customer: dict
    submitted: float  # client clock, seconds since the epoch
    status_code: int
    body: dict
    order: dict = field(default_factory=dict)
    saga: dict = field(default_factory=dict)


@dataclass
class Scenario:
    name: str
    expected: str  # as _describe() puts it, e.g. "10 CANCELLED + 20 CONFIRMED"
    requests: list = field(default_factory=list)  # (customer, body, headers)

    def check(self, placed: list[Placed]) -> bool:
        return _describe(placed) == self.expected


class Api:
    def __init__(self, url: str) -> None:
        self.url = url.rstrip("/")

    def check_up(self) -> None:
        """Fail clearly when there is no healthy sagashop at the URL."""
        try:
            with urllib.request.urlopen(f"{self.url}/api/health/", timeout=5) as answer:
                health = json.load(answer)
        except (OSError, ValueError) as exc:
            raise SystemUnavailable(
                f"no sagashop answers at {self.url} ({exc})"
            ) from exc
        if health.get("status") != "ok":
            raise SystemUnavailable(f"sagashop at {self.url} is not healthy: {health}")

    def call(self, method: str, path: str, token: str, body=None, headers=None):
        """``(status, body)`` of the request, sent again after a 429 (call_timed)."""
        status, answer, _ = self.call_timed(method, path, token, body, headers)
        return status, answer

    def call_timed(self, method: str, path: str, token: str, body=None, headers=None):
        """``(status, body, when the answered attempt was sent)``.

        A well-behaved client: a 429 (a rate limit) is waited out for as long as its
        Retry-After says, then the same request is sent again, up to THROTTLED_TRIES
        times in all.
        """
        for _ in range(THROTTLED_TRIES):
            sent_at = time.time()
            status, answer, retry_after = self._send(method, path, token, body, headers)
            if status != 429:
                break
            time.sleep(retry_after)
        return status, answer, sent_at

    def _send(self, method, path, token, body, headers) -> tuple[int, dict, float]:
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(
            self.url + path,
            data=data,
            method=method,
            headers={
                "Authorization": f"Token {token}",
                "Content-Type": "application/json",
            }
            | (headers or {}),
        )
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                return response.status, json.load(response), 0.0
        except urllib.error.HTTPError as error:
            answer = json.loads(error.read() or b"{}")
            return error.code, answer, _seconds(error.headers.get("Retry-After"))


def _seconds(retry_after: str | None) -> float:
    """Retry-After in seconds (the API sends whole seconds); 1 if absent or odd."""
    try:
        return max(0.0, float(retry_after))
    except (TypeError, ValueError):
        return 1.0


def run_demo(*, url: str, write, batch: int = 0, kill_worker: int = 0) -> int:
    if kill_worker:
        supervised_worker()  # nothing is placed when there is nothing to kill
    api = Api(url)
    api.check_up()
    data = demo_data_seed(refill=True)
    faults = parse_faults(_faults_setting())
    write(
        f"demo: {len(data['customers'])} customers, products "
        + ", ".join(f"{p['sku']}" for p in data["products"])
    )
    if faults:
        write("demo: fault injection is ON: " + ", ".join(map(str, faults)))

    scenarios = _scenarios(data, batch=batch)
    started = time.time()
    placed = _place_all(api, [s for s in scenarios if s.name != "method deactivated"])
    killer = WorkerKiller(saga_ids=_saga_ids(placed), times=kill_worker)
    if kill_worker:
        killer.start()
    _wait_for_sagas(api, placed)
    killer.done.set()
    late = _place_with_method_deactivated(
        api, _by_name(scenarios, "method deactivated")
    )
    _wait_for_sagas(api, late)
    placed += late
    elapsed = time.time() - started

    ok = _report(write, scenarios, placed, elapsed, faults_on=bool(faults))
    _recoveries(write, placed, killer.kills, started)
    if killer.error:
        write(f"kill {len(killer.kills) + 1}: not done: {killer.error}")
    report = reconcile()
    write(f"reconciliation: {len(report.violations)} violations")
    for violation in report.violations:
        write(f"  {violation}")
    return 0 if ok and not killer.error and not report.violations else 1


def _faults_setting() -> str:
    from django.conf import settings

    return settings.SAGA_FAULTS


def _scenarios(data: dict, *, batch: int) -> list[Scenario]:
    customers = {c["username"]: c for c in data["customers"]}
    rich = [customers[n] for n in ("alice", "bob", "carol", "dave", "erin")]

    def order(customer, items, ship_to="JP", headers=None):
        body = {
            "items": [{"sku": sku, "quantity": qty} for sku, qty in items.items()],
            "payment_method_id": customer["payment_method_id"],
            "ship_to": ship_to,
        }
        return (customer, body, headers or {})

    replay_key = {"Idempotency-Key": f"demo-{time.time_ns()}"}
    scenarios = [
        Scenario(
            "confirmed",
            "10 CONFIRMED",
            [order(c, {"SENCHA": 2, "MATCHA": 1}) for c in rich for _ in range(2)],
        ),
        Scenario(
            f"{CONTENDERS} orders for {SCARCE_UNITS} {SCARCE_SKU}",
            f"{CONTENDERS - SCARCE_UNITS} CANCELLED + {SCARCE_UNITS} CONFIRMED",
            [order(rich[i % len(rich)], {SCARCE_SKU: 1}) for i in range(CONTENDERS)],
        ),
        Scenario(
            "insufficient balance",
            "1 CANCELLED",
            [order(customers["pat"], {"SENCHA": 1})],
        ),
        Scenario(
            "shipment refused (AQ)",
            "1 CANCELLED",
            [order(customers["bob"], {"HOJICHA": 1}, ship_to="AQ")],
        ),
        Scenario(
            "idempotency key replayed",
            "2 CONFIRMED (1 order)",
            [order(customers["carol"], {"HOJICHA": 3}, headers=replay_key)] * 2,
        ),
        Scenario(
            "bad input",
            "1 rejected 400",
            [(customers["erin"], {"items": [], "payment_method_id": 0}, {})],
        ),
        Scenario(
            "method deactivated",
            "1 CANCELLED",
            [order(customers["frank"], {"MATCHA": 1})],
        ),
    ]
    if batch:
        orders = [order(rich[i % len(rich)], {REGULAR[i % 3]: 1}) for i in range(batch)]
        scenarios.insert(0, Scenario(f"batch of {batch}", f"{batch} CONFIRMED", orders))
    return scenarios


def _place_all(api: Api, scenarios: list[Scenario]) -> list[Placed]:
    jobs = [(s.name, *request) for s in scenarios for request in s.requests]
    with ThreadPoolExecutor(max_workers=8) as pool:
        return list(pool.map(lambda job: _place(api, *job), jobs))


def _place(
    api: Api, scenario: str, customer: dict, body: dict, headers: dict
) -> Placed:
    # Timed from the attempt that was answered: waiting out a rate limit is not the
    # saga's time.
    status, answer, submitted = api.call_timed(
        "POST", "/api/orders/", customer["token"], body, headers
    )
    return Placed(scenario, customer, submitted, status, answer)


def _place_with_method_deactivated(api: Api, scenario: Scenario) -> list[Placed]:
    """Deactivate the method after the order is accepted but before it is charged.

    The workers stop taking saga steps meanwhile (what an operator does from Flower),
    so the deactivation lands first, every time.
    """
    [(customer, body, headers)] = scenario.requests
    # One reply per worker ends each broadcast at once (else it waits out the timeout).
    control = {
        "reply": True,
        "limit": len(celery_app.control.ping(timeout=2)),
        "timeout": 5,
    }
    celery_app.control.cancel_consumer("sagas", **control)
    try:
        placed = _place(api, scenario.name, customer, body, headers)
        method = body["payment_method_id"]
        api.call(
            "POST", f"/api/payment-methods/{method}/deactivate/", customer["token"]
        )
    finally:
        celery_app.control.add_consumer("sagas", **control)
    return [placed]


def _wait_for_sagas(api: Api, placed: list[Placed], timeout: float = 600) -> None:
    """Wait for every accepted order's saga to end, then read its saga and order.

    Sagas are polled oldest first, and a round stops at the first one still running,
    so a large batch is not slowed down by the demo's own requests.
    """
    deadline = time.time() + timeout
    waiting = [p for p in placed if p.status_code == 202]
    while waiting and time.time() < deadline:
        while waiting:
            p = waiting[0]
            _, p.saga = api.call(
                "GET", f"/api/sagas/{p.body['saga_id']}/", p.customer["token"]
            )
            if p.saga.get("status") not in (*ENDED, "FAILED"):
                break
            _, p.order = api.call(
                "GET", f"/api/orders/{p.body['order_id']}/", p.customer["token"]
            )
            waiting.pop(0)
        time.sleep(0.5 if waiting else 0)


def _report(write, scenarios, placed, elapsed, *, faults_on: bool) -> bool:
    ok = _outcomes(write, scenarios, placed, faults_on=faults_on)
    _timings(write, placed, elapsed)
    _troubles(write, placed)
    return ok


def _outcomes(write, scenarios, placed, *, faults_on: bool) -> bool:
    """One row per scenario: what happened, what should have. With faults on, only
    that every saga ended is expected."""
    rows, ok = [("scenario", "outcome", "expected", "")], True
    for scenario in scenarios:
        group = [p for p in placed if p.scenario == scenario.name]
        ended = all(
            p.status_code != 202 or p.saga.get("status") in ENDED for p in group
        )
        passed = ended if faults_on else scenario.check(group)
        ok &= passed
        expected = "every saga ended" if faults_on else scenario.expected
        rows.append(
            (scenario.name, _describe(group), expected, "ok" if passed else "NO")
        )
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    for row in rows:
        write("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)))
    return ok


def _timings(write, placed, elapsed) -> None:
    """From the client sending the order to the commit that ended its saga."""
    latencies = sorted(
        (_when(p.saga["finished_at"]) - p.submitted) * 1000
        for p in placed
        if p.saga.get("finished_at") and p.scenario != "method deactivated"
    )
    if latencies:
        p95 = latencies[min(len(latencies) - 1, round(0.95 * len(latencies)) - 1)]
        write(
            f"sagas: {len(latencies)} timed, order placed to saga ended: "
            f"p50 {statistics.median(latencies):.0f} ms, p95 {p95:.0f} ms, "
            f"max {latencies[-1]:.0f} ms; whole run {elapsed:.1f} s"
        )


def _failed_step(saga: dict) -> str:
    failed = [s["name"] for s in saga.get("steps", ()) if s["status"] == "FAILED"]
    return failed[0] if failed else "no step (cancelled before it ran)"


def _troubles(write, placed) -> None:
    """Why orders were cancelled, and what the engine had to retry or recover."""
    reasons = Counter(
        (_failed_step(p.saga), p.order["cancel_reason"].split(":")[0])
        for p in placed
        if p.order.get("cancel_reason")
    )
    for (step, reason), count in sorted(reasons.items()):
        write(f"cancelled at {step} ({reason}): {count}")
    sagas = [p.saga for p in placed if p.saga]
    retried = [s for s in sagas if any(step["attempts"] > 1 for step in s["steps"])]
    recovered = [s for s in sagas if any(e["kind"] == "RECOVERED" for e in s["events"])]
    extra = sum(max(0, step["attempts"] - 1) for s in sagas for step in s["steps"])
    write(
        f"retries: {len(retried)} sagas retried a step ({extra} extra attempts); "
        f"{len(recovered)} sagas had lost work sent again by the recovery sweep"
    )


def _recoveries(write, placed: list[Placed], kills: list[Kill], started: float) -> None:
    """For each kill: the sagas it caught in flight, and when the last of them ended."""
    for n, kill in enumerate(kills, 1):
        caught = [
            p
            for p in placed
            if p.saga.get("finished_at")
            and _when(p.saga["finished_at"]) > kill.at
            and p.submitted < kill.at
        ]
        recovered = [
            p for p in caught if any(e["kind"] == "RECOVERED" for e in p.saga["events"])
        ]
        last = max((_when(p.saga["finished_at"]) for p in caught), default=kill.at)
        write(
            f"kill {n}: {kill.processes} worker processes killed "
            f"{kill.at - started:.1f} s into the run, {len(caught)} sagas in flight "
            f"({len(recovered)} had lost work sent again by the recovery sweep); "
            f"the last of them ended {last - kill.at:.1f} s after the kill"
        )


def _saga_ids(placed: list[Placed]) -> list[int]:
    return [p.body["saga_id"] for p in placed if p.status_code == 202]


def _describe(group: list[Placed]) -> str:
    rejected = [p for p in group if p.status_code != 202]
    if rejected:
        return f"{len(rejected)} rejected " + ",".join(
            sorted({str(p.status_code) for p in rejected})
        )
    statuses = Counter(p.order.get("status", "?") for p in group)
    text = " + ".join(f"{n} {s}" for s, n in sorted(statuses.items()))
    orders = {p.body["order_id"] for p in group}
    if len(orders) != len(group):
        text += (
            f" ({len(orders)} order)"
            if len(orders) == 1
            else f" ({len(orders)} orders)"
        )
    return text


def _by_name(scenarios: list[Scenario], name: str) -> Scenario:
    return next(s for s in scenarios if s.name == name)


def _when(timestamp: str) -> float:
    return datetime.fromisoformat(timestamp.replace("Z", "+00:00")).timestamp()
