"""Reconciliation of purchases: check the invariants across apps, repair the safe ones.

Invariants, each violation reported under a stable ``kind``:

- a cancelled order keeps no captured or held payment, no held stock, no sold stock
  and no shipment (a released booking is none);
- a confirmed order has exactly one captured payment, equal to its total, and every
  line's stock committed;
- a product's reserved and sold counters equal its held and committed reservations;
- an account's credited money equals its balance plus its payments held or captured.

Only orders whose purchase saga has ended are checked: a live saga is still moving the
very rows it would be checked against. Repairs go through the apps' own services and
only undo what a cancelled order should not keep; anything else needs a human.
"""

import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from decimal import Decimal
from enum import StrEnum

from django.db import connection, transaction

from inventory import selectors as inventory_selectors
from inventory import services as inventory_services
from orders import selectors
from orders.models import OrderStatus
from orders.sagas import purchase
from payments import selectors as payments_selectors
from payments import services as payments_services
from sagas import selectors as sagas_selectors
from sagas.models import ENDED_STATUSES, SagaStatus

logger = logging.getLogger(__name__)

# The statuses as the inventory and payments selectors report them; their models stay
# private to their apps.
HELD, COMMITTED, RELEASED = "HELD", "COMMITTED", "RELEASED"
CAPTURED, AUTHORIZED = "CAPTURED", "AUTHORIZED"
SHIPPED, BOOKED = "SHIPPED", "BOOKED"


class Kind(StrEnum):
    CANCELLED_ORDER_PAYMENT_CAPTURED = "cancelled_order_payment_captured"
    CANCELLED_ORDER_PAYMENT_HELD = "cancelled_order_payment_held"
    CANCELLED_ORDER_STOCK_HELD = "cancelled_order_stock_held"
    CANCELLED_ORDER_STOCK_COMMITTED = "cancelled_order_stock_committed"
    CANCELLED_ORDER_SHIPPED = "cancelled_order_shipped"
    CONFIRMED_ORDER_PAYMENT_MISSING = "confirmed_order_payment_missing"
    CONFIRMED_ORDER_PAYMENT_AMOUNT = "confirmed_order_payment_amount"
    CONFIRMED_ORDER_STOCK_NOT_COMMITTED = "confirmed_order_stock_not_committed"
    CONFIRMED_ORDER_NOT_SHIPPED = "confirmed_order_not_shipped"
    PRODUCT_COUNTERS = "product_counters"
    ACCOUNT_MONEY = "account_money"


def release_stock_if_held(*, order_ref: int) -> None:
    inventory_services.stock_release(order_ref=order_ref)  # a no-op once released


def refund_payment_if_captured(*, order_ref: int) -> None:
    payments_services.payment_refund(order_ref=order_ref)  # a no-op once refunded


def void_payment_if_held(*, order_ref: int) -> None:
    payments_services.payment_void(order_ref=order_ref)  # a no-op once voided


#: The only repairs: each undoes, per order, what a cancelled order must not keep,
#: exactly as the saga's own compensation would have. Money and counters are never
#: "fixed" by editing numbers: a wrong number hides a bug someone has to find.
REPAIRS: dict[Kind, Callable[..., None]] = {
    Kind.CANCELLED_ORDER_STOCK_HELD: release_stock_if_held,
    Kind.CANCELLED_ORDER_PAYMENT_CAPTURED: refund_payment_if_captured,
    Kind.CANCELLED_ORDER_PAYMENT_HELD: void_payment_if_held,
}
#: Saga statuses whose order may still change: FAILED is stuck, not ended, and an
#: operator may yet retry or compensate it.
UNSETTLED_STATUSES = frozenset(SagaStatus) - ENDED_STATUSES


@dataclass
class Violation:
    kind: Kind
    message: str
    order_id: int | None = None
    sku: str | None = None
    account_id: int | None = None
    payment_id: int | None = None
    repaired: bool = False
    repair_note: str = ""  # why a repairable violation was not repaired

    @property
    def repairable(self) -> bool:
        return self.kind in REPAIRS

    @property
    def ids(self) -> dict:
        names = ("order_id", "sku", "account_id", "payment_id")
        return {n: getattr(self, n) for n in names if getattr(self, n) is not None}

    @property
    def state(self) -> str:
        if self.repaired:
            return "repaired"
        if self.repair_note:
            return self.repair_note
        return "safe to repair" if self.repairable else "needs a human"

    def as_dict(self) -> dict:
        return {**asdict(self), "repairable": self.repairable, "state": self.state}

    def __str__(self) -> str:
        ids = " ".join(f"{name}={value}" for name, value in self.ids.items())
        return f"{self.kind} {ids}: {self.message} [{self.state}]"


@dataclass
class Report:
    violations: list[Violation] = field(default_factory=list)

    @property
    def repaired(self) -> int:
        return sum(v.repaired for v in self.violations)

    @property
    def remaining(self) -> list[Violation]:
        return [v for v in self.violations if not v.repaired]

    @property
    def summary(self) -> str:
        return f"{len(self.violations)} violations ({self.repaired} repaired)"

    def as_dict(self) -> dict:
        return {
            "violations": [v.as_dict() for v in self.violations],
            "count": len(self.violations),
            "repaired": self.repaired,
            "remaining": len(self.remaining),
        }


def reconcile(*, repair: bool = False) -> Report:
    """Check every invariant; with ``repair``, apply the safe repairs one by one."""
    with _snapshot():
        report = Report(
            [*_order_violations(), *_product_violations(), *_account_violations()]
        )
    if repair:
        _repair(report.violations)
    return report


@contextmanager
def _snapshot() -> Iterator[None]:
    """Run every read in one REPEATABLE READ snapshot.

    Each check compares rows that one transaction changes together (counters and
    reservations, a balance and its payment) but reads them in separate queries; under
    READ COMMITTED a purchase committing between two of them would look like drift.
    Inside a caller's transaction (tests) that transaction's snapshot rules instead.
    """
    if connection.in_atomic_block:
        yield
        return
    with transaction.atomic():
        with connection.cursor() as cursor:
            # Must be the first statement of the transaction to take effect.
            cursor.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        yield


# ORDERS ------------------------------------------------------------------------------


def _order_violations() -> Iterator[Violation]:
    orders = selectors.orders_ended_with_lines()
    # Read after the orders: a saga ended by now stays ended, so an order kept here is
    # past any change its saga could make. No saga (never committed) is nothing to race.
    unsettled = _unsettled_saga_ids()
    reservations = inventory_selectors.reservations_by_order()
    payments = payments_selectors.payments_by_order()
    for order in orders:
        if order["saga_id"] in unsettled:
            continue
        check = (
            _cancelled_order
            if order["status"] == OrderStatus.CANCELLED
            else _confirmed_order
        )
        yield from check(
            order,
            reservations.get(order["order_id"], {}),
            payments.get(order["order_id"]),
        )


def _unsettled_saga_ids() -> set[int]:
    # Few rows (only sagas in flight or stuck) through the engine's own selector.
    return {
        saga.pk
        for status in sorted(UNSETTLED_STATUSES)
        for saga in sagas_selectors.saga_list(status=status, name=purchase.name)
    }


def _cancelled_order(
    order: dict, reservations: dict[str, dict[str, int]], payment: dict | None
) -> Iterator[Violation]:
    order_id = order["order_id"]
    kinds = {
        CAPTURED: Kind.CANCELLED_ORDER_PAYMENT_CAPTURED,
        AUTHORIZED: Kind.CANCELLED_ORDER_PAYMENT_HELD,
    }
    if payment is not None and payment["status"] in kinds:
        yield Violation(
            kinds[payment["status"]],
            f"order {order_id} is cancelled but its payment of {payment['amount']} "
            f"is still {payment['status'].lower()}",
            order_id=order_id,
            account_id=payment["account_id"],
            payment_id=payment["payment_id"],
        )
    for sku, units in sorted(reservations.get(HELD, {}).items()):
        yield Violation(
            Kind.CANCELLED_ORDER_STOCK_HELD,
            f"order {order_id} is cancelled but still holds {units} x {sku}",
            order_id=order_id,
            sku=sku,
        )
    for sku, units in sorted(reservations.get(COMMITTED, {}).items()):
        yield Violation(
            Kind.CANCELLED_ORDER_STOCK_COMMITTED,
            f"order {order_id} is cancelled but {units} x {sku} are committed as sold",
            order_id=order_id,
            sku=sku,
        )
    # A released booking (a TCC cancel) is no shipment; a booking still held is.
    if order["shipment"] in (SHIPPED, BOOKED):
        yield Violation(
            Kind.CANCELLED_ORDER_SHIPPED,
            f"order {order_id} is cancelled but has a shipment "
            f"({order['shipment'].lower()})",
            order_id=order_id,
        )


def _confirmed_order(
    order: dict, reservations: dict[str, dict[str, int]], payment: dict | None
) -> Iterator[Violation]:
    order_id, total = order["order_id"], order["total"]
    if payment is None or payment["status"] != CAPTURED:
        found = "none" if payment is None else f"it was {payment['status'].lower()}"
        yield Violation(
            Kind.CONFIRMED_ORDER_PAYMENT_MISSING,
            f"order {order_id} is confirmed for {total} but has no captured payment "
            f"({found})",
            order_id=order_id,
            account_id=None if payment is None else payment["account_id"],
            payment_id=None if payment is None else payment["payment_id"],
        )
    elif payment["amount"] != total:
        yield Violation(
            Kind.CONFIRMED_ORDER_PAYMENT_AMOUNT,
            f"order {order_id} is confirmed for {total} but its payment captured "
            f"{payment['amount']}",
            order_id=order_id,
            account_id=payment["account_id"],
            payment_id=payment["payment_id"],
        )
    if order["shipment"] != SHIPPED:
        found = (order["shipment"] or "none").lower()
        yield Violation(
            Kind.CONFIRMED_ORDER_NOT_SHIPPED,
            f"order {order_id} is confirmed but not shipped (shipment: {found})",
            order_id=order_id,
        )
    lines, committed = order["lines"], reservations.get(COMMITTED, {})
    for sku in sorted(lines.keys() | committed.keys()):
        ordered, sold = lines.get(sku, 0), committed.get(sku, 0)
        if ordered == sold:
            continue
        elsewhere = ", ".join(
            f"{reservations[status][sku]} {status.lower()}"
            for status in (HELD, RELEASED)
            if sku in reservations.get(status, {})
        )
        yield Violation(
            Kind.CONFIRMED_ORDER_STOCK_NOT_COMMITTED,
            f"order {order_id} is confirmed with {ordered} x {sku} but {sold} "
            f"committed" + (f" ({elsewhere})" if elsewhere else ""),
            order_id=order_id,
            sku=sku,
        )


# PRODUCTS AND ACCOUNTS ---------------------------------------------------------------


def _product_violations() -> Iterator[Violation]:
    # received = available + reserved + sold needs no check here: the CHECK constraint
    # product_stock_adds_up makes the database refuse any row that breaks it. What can
    # drift is whether reserved and sold agree with the reservations behind them.
    for row in inventory_selectors.product_counter_mismatches():
        yield Violation(
            Kind.PRODUCT_COUNTERS,
            f"product {row['sku']}: reserved {row['reserved']} but {row['held']} "
            f"held, sold {row['sold']} but {row['committed']} committed",
            sku=row["sku"],
        )


def _account_violations() -> Iterator[Violation]:
    for row in payments_selectors.account_money_mismatches():
        held = Decimal(row["balance"]) + Decimal(row["captured"])
        drift = held - Decimal(row["credited"])
        yield Violation(
            Kind.ACCOUNT_MONEY,
            f"account {row['account_id']}: balance {row['balance']} + held or captured "
            f"{row['captured']} = {held}, but {row['credited']} was credited "
            f"({abs(drift)} {'created' if drift > 0 else 'destroyed'})",
            account_id=row["account_id"],
        )


# REPAIRS -----------------------------------------------------------------------------


def _repair(violations: list[Violation]) -> None:
    """Apply each order's safe repairs, each in its own transaction.

    An order that also shows a violation no service may repair (it shipped, or its
    stock was sold) is left whole for a human: it may have been fulfilled after all,
    and refunding it would give its money away.
    """
    withheld = {
        v.order_id for v in violations if v.order_id is not None and not v.repairable
    }
    outcomes: dict[tuple[Kind, int], str] = {}
    for violation in violations:
        if not violation.repairable:
            continue
        if violation.order_id in withheld:
            violation.repair_note = "withheld: the order needs a human"
            continue
        key = (violation.kind, violation.order_id)
        if key not in outcomes:  # one service call per order, for all its skus
            outcomes[key] = _apply(REPAIRS[violation.kind], violation)
        violation.repaired = outcomes[key] == ""
        violation.repair_note = outcomes[key]


def _apply(action: Callable[..., None], violation: Violation) -> str:
    """Run one repair in its own transaction; '' if it committed, else why not."""
    try:
        with transaction.atomic(durable=True):
            action(order_ref=violation.order_id)
    except Exception as error:
        # One failing repair must not stop the others; it stays in the report.
        logger.exception(
            "reconcile: repairing %s of order %s failed",
            violation.kind,
            violation.order_id,
        )
        return f"repair failed: {type(error).__name__}: {error}"
    return ""
