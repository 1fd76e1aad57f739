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
from sagas.definitions import Mode
from sagas.faults import parse as parse_faults
from sagas.selectors import outbox_rows_of
from shop.celery import app as celery_app
from shop.chaos import Kill, WorkerKiller, supervised_worker
from shop.seeding import SCARCE_SKU, SCARCE_UNITS, demo_data_seed

CONTENDERS = 30
# How often a request a rate limit refused (429) is sent again before giving up.
THROTTLED_TRIES = 20
ENDED = ("COMPLETED", "COMPENSATED")
REGULAR = ("SENCHA", "MATCHA", "HOJICHA")
MODES = tuple(Mode.values)
# Where saga work waits: held back while the demo deactivates a payment method.
STEP_QUEUES = ("sagas", "orders", "payments", "inventory")


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


@dataclass
class Round:
    """Every scenario, run in one mode; the rounds run one after the other, so each
    mode's timings are its own."""

    mode: str
    scenarios: list[Scenario]
    placed: list[Placed]
    elapsed: float
    kills: list[Kill]
    started: float
    outbox_rows: int  # written by its sagas, in every app's outbox
    broker_messages: int | None  # put on the broker's queues meanwhile (Redis only)


def run_demo(
    *, url: str, write, batch: int = 0, kill_worker: int = 0, modes=MODES
) -> int:
    if kill_worker:
        supervised_worker()  # nothing is placed when there is nothing to kill
    api = Api(url)
    api.check_up()
    faults = parse_faults(_faults_setting())
    if faults:
        write("demo: fault injection is ON: " + ", ".join(map(str, faults)))
    rounds, error = [], None
    for mode in modes:
        # Stock and balances back to their demo levels: every round starts alike.
        data = demo_data_seed(refill=True)
        if not rounds:
            write(
                f"demo: {len(data['customers'])} customers, products "
                + ", ".join(f"{p['sku']}" for p in data["products"])
            )
        played, killer_error = _play(api, data, mode, batch=batch, kills=kill_worker)
        rounds.append(played)
        error = error or killer_error
        write(f"demo: {mode}: {len(played.placed)} orders in {played.elapsed:.1f} s")
    ok = _outcomes(write, rounds, faults_on=bool(faults))
    _timings(write, rounds)
    _costs(write, rounds)
    for played in rounds:
        _troubles(write, played)
        _recoveries(write, played)
    if error:
        write(f"a kill was not done: {error}")
    report = reconcile()
    write(f"reconciliation: {len(report.violations)} violations")
    for violation in report.violations:
        write(f"  {violation}")
    return 0 if ok and not error and not report.violations else 1


def _play(api: Api, data: dict, mode: str, *, batch: int, kills: int):
    """One round: every scenario's orders placed in ``mode``, each saga waited out."""
    scenarios = _scenarios(data, batch=batch, mode=mode)
    messages_before = _broker_messages()
    started = time.time()
    placed = _place_all(api, [s for s in scenarios if s.name != "method deactivated"])
    killer = WorkerKiller(saga_ids=_saga_ids(placed), times=kills)
    if kills:
        killer.start()
    _wait_for_sagas(api, placed)
    killer.done.set()
    late = _place_with_method_deactivated(
        api, _by_name(scenarios, "method deactivated")
    )
    _wait_for_sagas(api, late)
    placed += late
    elapsed = time.time() - started
    after = _broker_messages()
    played = Round(
        mode=mode,
        scenarios=scenarios,
        placed=placed,
        elapsed=elapsed,
        kills=killer.kills,
        started=started,
        outbox_rows=sum(outbox_rows_of(saga_ids=_saga_ids(placed)).values()),
        broker_messages=None if after is None else after - messages_before,
    )
    return played, killer.error


def _faults_setting() -> str:
    from django.conf import settings

    return settings.SAGA_FAULTS


def _scenarios(data: dict, *, batch: int, mode: str) -> list[Scenario]:
    customers = {c["username"]: c for c in data["customers"]}
    rich = [customers[n] for n in ("alice", "bob", "carol", "dave", "erin")]

    def order(customer, items, ship_to="JP", headers=None):
        body = {
            "items": [{"sku": sku, "quantity": qty} for sku, qty in items.items()],
            "payment_method_id": customer["payment_method_id"],
            "ship_to": ship_to,
            "mode": mode,
        }
        return (customer, body, headers or {})

    replay_key = {"Idempotency-Key": f"demo-{mode}-{time.time_ns()}"}
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
            [
                (
                    customers["erin"],
                    {"items": [], "payment_method_id": 0, "mode": mode},
                    {},
                )
            ],
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
    for queue in STEP_QUEUES:
        celery_app.control.cancel_consumer(queue, **control)
    try:
        placed = _place(api, scenario.name, customer, body, headers)
        method = body["payment_method_id"]
        api.call(
            "POST", f"/api/payment-methods/{method}/deactivate/", customer["token"]
        )
    finally:
        for queue in STEP_QUEUES:
            celery_app.control.add_consumer(queue, **control)
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


def _outcomes(write, rounds: list[Round], *, faults_on: bool) -> bool:
    """One row per scenario, one column per mode: what happened, what should have.
    With faults on, only that every saga ended is expected."""
    header = ("scenario", "expected", *(Mode(r.mode).label for r in rounds), "")
    table, ok = [header], True
    for scenario in rounds[0].scenarios:
        cells, passed = [], True
        for played in rounds:
            group = [p for p in played.placed if p.scenario == scenario.name]
            ended = all(
                p.status_code != 202 or p.saga.get("status") in ENDED for p in group
            )
            passed &= ended if faults_on else scenario.check(group)
            cells.append(_describe(group))
        ok &= passed
        expected = "every saga ended" if faults_on else scenario.expected
        table.append((scenario.name, expected, *cells, "ok" if passed else "NO"))
    write_table(write, table)
    return ok


def _timings(write, rounds: list[Round]) -> None:
    """From the client sending the order to the commit that ended its saga."""
    table = [("order placed to saga ended", "sagas", "p50", "p95", "max", "round")]
    for played in rounds:
        latencies = sorted(
            (_when(p.saga["finished_at"]) - p.submitted) * 1000
            for p in played.placed
            if p.saga.get("finished_at") and p.scenario != "method deactivated"
        )
        if not latencies:
            continue
        p95 = latencies[min(len(latencies) - 1, round(0.95 * len(latencies)) - 1)]
        table.append(
            (
                Mode(played.mode).label,
                str(len(latencies)),
                f"{statistics.median(latencies):.0f} ms",
                f"{p95:.0f} ms",
                f"{latencies[-1]:.0f} ms",
                f"{played.elapsed:.1f} s",
            )
        )
    write_table(write, table)


def _costs(write, rounds: list[Round]) -> None:
    """What a purchase costs the outboxes and the broker, on average in the round."""
    for played in rounds:
        sagas = len(_saga_ids(played.placed)) or 1
        messages = (
            "n/a (not Redis)"
            if played.broker_messages is None
            else f"{played.broker_messages / sagas:.1f}"
        )
        write(
            f"{Mode(played.mode).label}: per saga {played.outbox_rows / sagas:.1f} "
            f"outbox rows, {messages} broker messages (every queue, retries and "
            "maintenance included)"
        )


def write_table(write, table: list[tuple]) -> None:
    widths = [max(len(row[i]) for row in table) for i in range(len(table[0]))]
    for row in table:
        write("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())


def _failed_step(saga: dict) -> str:
    failed = [s["name"] for s in saga.get("steps", ()) if s["status"] == "FAILED"]
    return failed[0] if failed else "no step (cancelled before it ran)"


def _troubles(write, played: Round) -> None:
    """Why orders were cancelled, and what the engine had to retry or recover."""
    placed, mode = played.placed, Mode(played.mode).label
    reasons = Counter(
        (_failed_step(p.saga), p.order["cancel_reason"].split(":")[0])
        for p in placed
        if p.order.get("cancel_reason")
    )
    for (step, reason), count in sorted(reasons.items()):
        write(f"{mode}: cancelled at {step} ({reason}): {count}")
    sagas = [p.saga for p in placed if p.saga]
    retried = [s for s in sagas if any(step["attempts"] > 1 for step in s["steps"])]
    recovered = [s for s in sagas if any(e["kind"] == "RECOVERED" for e in s["events"])]
    extra = sum(max(0, step["attempts"] - 1) for s in sagas for step in s["steps"])
    write(
        f"{mode}: {len(retried)} sagas retried a step ({extra} extra attempts); "
        f"{len(recovered)} sagas had lost work sent again by the recovery sweep"
    )


def _recoveries(write, played: Round) -> None:
    """For each kill: the sagas it caught in flight, and when the last of them ended."""
    placed, started = played.placed, played.started
    for n, kill in enumerate(played.kills, 1):
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
            f"{Mode(played.mode).label}: kill {n}: {kill.processes} worker processes "
            f"killed {kill.at - started:.1f} s into the round, "
            f"{len(caught)} sagas in flight "
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


def _broker_messages() -> int | None:
    """Messages put on the broker's queues so far (a Redis LPUSH each); None if the
    broker is not Redis."""
    with celery_app.connection_for_write() as conn:
        client = getattr(conn.default_channel, "client", None)
        if client is None or not hasattr(client, "info"):
            return None
        stats = client.info("commandstats")
    return sum(
        stats.get(f"cmdstat_{c}", {}).get("calls", 0) for c in ("lpush", "rpush")
    )


def _by_name(scenarios: list[Scenario], name: str) -> Scenario:
    return next(s for s in scenarios if s.name == name)


def _when(timestamp: str) -> float:
    return datetime.fromisoformat(timestamp.replace("Z", "+00:00")).timestamp()
