"""Tests of the purchase reconciliation: its checks, its repairs, command and task."""

import json
import logging
import threading
from decimal import Decimal
from io import StringIO

import pytest
from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.db import IntegrityError, connection, transaction
from django.db.models import F
from django.test.utils import CaptureQueriesContext

from inventory.models import Product, ReservationStatus, StockReservation
from inventory.selectors import product_counter_mismatches
from inventory.services import (
    product_create,
    stock_commit,
    stock_release,
    stock_reserve,
)
from orders import reconcile as reconcile_module
from orders.models import Order, OrderLine, OrderStatus, Shipment
from orders.reconcile import Kind, reconcile
from orders.services import order_cancel, order_confirm, order_place, shipment_create
from orders.tasks import reconcile_purchases
from payments.models import Account, Payment, PaymentStatus
from payments.selectors import account_money_mismatches
from payments.services import (
    account_create,
    payment_charge,
    payment_method_create,
    payment_refund,
)
from sagas.models import Saga, SagaStatus

pytestmark = pytest.mark.django_db

BALANCE = Decimal("500.00")


# WORLD -------------------------------------------------------------------------------


class Shop:
    """One customer and two products; orders reach their states through services."""

    def __init__(self, name: str = "ann") -> None:
        self.user = get_user_model().objects.create_user(username=name)
        self.account = account_create(customer=self.user, balance=BALANCE)
        self.method = payment_method_create(customer_id=self.user.pk, label="card")
        for sku, price in (("TEA", "4.50"), ("MUG", "12.00")):
            if not Product.objects.filter(sku=sku).exists():
                product_create(sku=sku, name=sku, price=Decimal(price), units=50)

    def place(self, items: dict[str, int] | None = None) -> Order:
        items = items or {"TEA": 2, "MUG": 1}
        order, _ = order_place(
            customer=self.user,
            items=[{"sku": sku, "quantity": n} for sku, n in items.items()],
            payment_method_id=self.method.pk,
        )
        return order

    def reserve_and_charge(self, order: Order) -> None:
        """The saga's first two steps, as its workers would run them."""
        stock_reserve(
            order_ref=order.pk,
            lines=[(line.sku, line.quantity) for line in order.lines.all()],
        )
        payment_charge(
            order_ref=order.pk,
            customer_id=self.user.pk,
            method_id=self.method.pk,
            amount=order.total,
        )

    def confirmed(self, items: dict[str, int] | None = None) -> Order:
        order = self.place(items)
        self.reserve_and_charge(order)
        shipment_create(order_id=order.pk)
        stock_commit(order_ref=order.pk)
        order_confirm(order_id=order.pk)
        return saga_ends(order, SagaStatus.COMPLETED)

    def cancelled(self) -> Order:
        """Cancelled the way the saga does it: compensations first, newest first."""
        order = self.place()
        self.reserve_and_charge(order)
        payment_refund(order_ref=order.pk)
        stock_release(order_ref=order.pk)
        order_cancel(order_id=order.pk, reason="shipment failed")
        return saga_ends(order, SagaStatus.COMPENSATED)

    def cancelled_leaky(self, saga_status: str = SagaStatus.COMPENSATED) -> Order:
        """Planted: cancelled in the database while it still holds stock and money."""
        order = self.place()
        self.reserve_and_charge(order)
        Order.objects.filter(pk=order.pk).update(status=OrderStatus.CANCELLED)
        return saga_ends(order, saga_status)


def saga_ends(order: Order, status: str) -> Order:
    Saga.objects.filter(pk=order.saga_id).update(status=status)
    order.refresh_from_db()
    return order


def found(report) -> set[tuple]:
    """Each violation as (kind, ids) for exact comparison."""
    return {(v.kind, tuple(sorted(v.ids.items()))) for v in report.violations}


def ids(**kwargs) -> tuple:
    return tuple(sorted(kwargs.items()))


def payment_of(order: Order) -> Payment:
    return Payment.objects.get(order_ref=order.pk)


@pytest.fixture
def shop() -> Shop:
    return Shop()


# A CONSISTENT WORLD ------------------------------------------------------------------


def test_a_consistent_world_has_no_violations(shop):
    shop.confirmed()
    shop.confirmed({"MUG": 3})
    shop.cancelled()
    # Cancelled before anything was reserved or charged.
    early = shop.place()
    order_cancel(order_id=early.pk, reason="out of stock")
    saga_ends(early, SagaStatus.COMPENSATED)
    # A purchase in flight: its saga holds stock and money and is not checked yet.
    shop.reserve_and_charge(shop.place())

    report = reconcile()

    assert report.violations == []
    assert report.summary == "0 violations (0 repaired)"


@pytest.mark.parametrize(
    "saga_status",
    [SagaStatus.RUNNING, SagaStatus.COMPENSATING, SagaStatus.FAILED],
)
def test_an_order_whose_saga_has_not_ended_is_left_alone(shop, saga_status):
    order = shop.cancelled_leaky(saga_status=saga_status)

    report = reconcile(repair=True)

    assert report.violations == []
    assert payment_of(order).status == PaymentStatus.CAPTURED
    assert set(
        StockReservation.objects.filter(order_ref=order.pk).values_list(
            "status", flat=True
        )
    ) == {ReservationStatus.HELD}


def test_the_checks_take_the_same_queries_however_many_orders(shop):
    shop.confirmed()
    shop.cancelled()
    with CaptureQueriesContext(connection) as few:
        reconcile()
    for _ in range(4):
        shop.confirmed()
        shop.cancelled()
        shop.cancelled_leaky()
    with CaptureQueriesContext(connection) as many:
        reconcile()

    assert len(many) == len(few)


# EACH INVARIANT, BROKEN --------------------------------------------------------------


def test_a_cancelled_order_keeping_stock_and_money_is_reported(shop):
    order = shop.cancelled_leaky()
    payment = payment_of(order)

    report = reconcile()

    assert found(report) == {
        (
            Kind.CANCELLED_ORDER_PAYMENT_CAPTURED,
            ids(order_id=order.pk, payment_id=payment.pk, account_id=shop.account.pk),
        ),
        (Kind.CANCELLED_ORDER_STOCK_HELD, ids(order_id=order.pk, sku="MUG")),
        (Kind.CANCELLED_ORDER_STOCK_HELD, ids(order_id=order.pk, sku="TEA")),
    }
    assert all(not v.repaired and v.repairable for v in report.violations)


def test_a_cancelled_order_with_sold_stock_is_reported_and_not_repaired(shop):
    order = shop.place()
    shop.reserve_and_charge(order)
    stock_commit(order_ref=order.pk)
    Order.objects.filter(pk=order.pk).update(status=OrderStatus.CANCELLED)
    saga_ends(order, SagaStatus.COMPENSATED)

    report = reconcile(repair=True)

    assert {(v.kind, v.sku) for v in report.violations} == {
        (Kind.CANCELLED_ORDER_PAYMENT_CAPTURED, None),
        (Kind.CANCELLED_ORDER_STOCK_COMMITTED, "MUG"),
        (Kind.CANCELLED_ORDER_STOCK_COMMITTED, "TEA"),
    }
    # Sold goods may mean the order was fulfilled after all: its money stays put.
    assert report.repaired == 0
    assert payment_of(order).status == PaymentStatus.CAPTURED
    [refund] = [v for v in report.violations if v.repairable]
    assert refund.state.startswith("withheld")


def test_a_cancelled_order_with_a_shipment_is_reported(shop):
    order = shop.cancelled()
    Shipment.objects.create(order=order, destination="JP", tracking_code="PLANTED")

    report = reconcile()

    assert found(report) == {(Kind.CANCELLED_ORDER_SHIPPED, ids(order_id=order.pk))}


def test_a_cancelled_order_whose_booking_was_released_is_clean(shop):
    order = shop.cancelled()
    Shipment.objects.create(
        order=order, destination="JP", tracking_code="TCC", status="RELEASED"
    )
    assert found(reconcile()) == set()

    Shipment.objects.filter(order=order).update(status="BOOKED")  # still held
    assert found(reconcile()) == {
        (Kind.CANCELLED_ORDER_SHIPPED, ids(order_id=order.pk))
    }


def test_a_confirmed_order_that_was_never_shipped_is_reported(shop):
    order = shop.confirmed()
    Shipment.objects.filter(order=order).update(status="BOOKED")

    report = reconcile()

    assert found(report) == {(Kind.CONFIRMED_ORDER_NOT_SHIPPED, ids(order_id=order.pk))}


def test_a_confirmed_order_whose_payment_was_refunded_is_reported(shop):
    order = shop.confirmed()
    payment = payment_of(order)
    Payment.objects.filter(pk=payment.pk).update(status=PaymentStatus.REFUNDED)

    report = reconcile(repair=True)

    assert found(report) == {
        (
            Kind.CONFIRMED_ORDER_PAYMENT_MISSING,
            ids(order_id=order.pk, payment_id=payment.pk, account_id=shop.account.pk),
        ),
        # The refund never reached the balance: money vanished from the account.
        (Kind.ACCOUNT_MONEY, ids(account_id=shop.account.pk)),
    }
    assert report.repaired == 0
    assert payment_of(order).status == PaymentStatus.REFUNDED


def test_a_confirmed_order_without_any_payment_is_reported(shop):
    order = shop.place()
    stock_reserve(order_ref=order.pk, lines=[("TEA", 2), ("MUG", 1)])
    shipment_create(order_id=order.pk)
    stock_commit(order_ref=order.pk)
    order_confirm(order_id=order.pk)
    saga_ends(order, SagaStatus.COMPLETED)

    report = reconcile()

    assert found(report) == {
        (Kind.CONFIRMED_ORDER_PAYMENT_MISSING, ids(order_id=order.pk))
    }


def test_a_confirmed_order_paid_a_different_amount_is_reported(shop):
    order = shop.confirmed()
    Order.objects.filter(pk=order.pk).update(total=F("total") + 1)

    report = reconcile()

    assert found(report) == {
        (
            Kind.CONFIRMED_ORDER_PAYMENT_AMOUNT,
            ids(
                order_id=order.pk,
                payment_id=payment_of(order).pk,
                account_id=shop.account.pk,
            ),
        )
    }


def test_a_confirmed_order_line_without_committed_stock_is_reported(shop):
    order = shop.confirmed({"TEA": 2})
    OrderLine.objects.create(order=order, sku="MUG", quantity=1, unit_price=12)

    report = reconcile()

    assert found(report) == {
        (Kind.CONFIRMED_ORDER_STOCK_NOT_COMMITTED, ids(order_id=order.pk, sku="MUG"))
    }


def test_a_confirmed_order_with_stock_still_held_is_reported(shop):
    order = shop.confirmed()
    StockReservation.objects.filter(order_ref=order.pk, product__sku="TEA").update(
        status=ReservationStatus.HELD
    )

    report = reconcile()

    assert found(report) == {
        (Kind.CONFIRMED_ORDER_STOCK_NOT_COMMITTED, ids(order_id=order.pk, sku="TEA")),
        # The counters still say sold; the reservation says held.
        (Kind.PRODUCT_COUNTERS, ids(sku="TEA")),
    }
    [line] = [v for v in report.violations if v.order_id]
    assert "0 committed (2 held)" in line.message


def test_product_counters_drifting_from_reservations_are_reported(shop):
    shop.confirmed()
    # Keeps received = available + reserved + sold, so the CHECK constraint lets it in.
    Product.objects.filter(sku="MUG").update(
        available=F("available") - 1, reserved=F("reserved") + 1
    )

    report = reconcile(repair=True)

    assert found(report) == {(Kind.PRODUCT_COUNTERS, ids(sku="MUG"))}
    assert report.repaired == 0
    assert Product.objects.get(sku="MUG").reserved == 1


def test_the_database_refuses_stock_that_does_not_add_up(shop):
    """Why reconcile never checks received = available + reserved + sold itself."""
    with pytest.raises(IntegrityError), transaction.atomic():
        Product.objects.filter(sku="TEA").update(sold=F("sold") + 1)


def test_money_made_in_an_account_is_reported_and_not_repaired(shop):
    shop.confirmed()
    Account.objects.filter(pk=shop.account.pk).update(balance=F("balance") + 10)

    report = reconcile(repair=True)

    assert found(report) == {(Kind.ACCOUNT_MONEY, ids(account_id=shop.account.pk))}
    [violation] = report.violations
    assert "10.00 created" in violation.message
    assert not violation.repaired
    assert violation.state == "needs a human"
    assert report.remaining == [violation]
    shop.account.refresh_from_db()
    assert shop.account.balance == BALANCE - Decimal("21.00") + 10


# REPAIRS -----------------------------------------------------------------------------


def test_repair_releases_the_stock_and_refunds_the_money_of_a_cancelled_order(shop):
    order = shop.cancelled_leaky()
    payment = payment_of(order)

    report = reconcile(repair=True)

    assert len(report.violations) == 3
    assert report.repaired == 3
    assert report.remaining == []
    assert report.summary == "3 violations (3 repaired)"
    assert payment_of(order).status == PaymentStatus.REFUNDED
    assert set(
        StockReservation.objects.filter(order_ref=order.pk).values_list(
            "status", flat=True
        )
    ) == {ReservationStatus.RELEASED}
    shop.account.refresh_from_db()
    assert shop.account.balance == BALANCE
    assert Product.objects.get(sku="TEA").available == 50
    assert Product.objects.get(sku="MUG").available == 50
    # The repairs went through the services, so every invariant holds after them.
    assert reconcile().violations == []
    assert product_counter_mismatches() == []
    assert account_money_mismatches() == []
    assert payment.pk == payment_of(order).pk


def test_a_failing_repair_is_reported_and_the_others_still_run(shop, monkeypatch):
    order = shop.cancelled_leaky()

    def broken(*, order_ref):
        raise RuntimeError("payments unreachable")

    monkeypatch.setitem(
        reconcile_module.REPAIRS, Kind.CANCELLED_ORDER_PAYMENT_CAPTURED, broken
    )

    report = reconcile(repair=True)

    [refund] = report.remaining
    assert refund.kind == Kind.CANCELLED_ORDER_PAYMENT_CAPTURED
    assert refund.state == "repair failed: RuntimeError: payments unreachable"
    assert report.repaired == 2
    assert payment_of(order).status == PaymentStatus.CAPTURED
    assert not StockReservation.objects.filter(
        order_ref=order.pk, status=ReservationStatus.HELD
    ).exists()


# THE COMMAND AND THE TASK ------------------------------------------------------------


def run_command(*args: str) -> tuple[str, int]:
    out = StringIO()
    try:
        call_command("reconcile", *args, stdout=out)
    except SystemExit as exit_:
        return out.getvalue(), exit_.code
    return out.getvalue(), 0


def test_the_command_on_a_clean_world_exits_0(shop):
    shop.confirmed()

    assert run_command() == ("0 violations (0 repaired)\n", 0)


def test_the_command_prints_each_violation_with_its_ids_and_exits_1(shop):
    order = shop.cancelled_leaky()
    payment = payment_of(order)

    output, code = run_command()

    assert code == 1
    lines = output.splitlines()
    assert lines[-1] == "3 violations (0 repaired)"
    assert (
        f"cancelled_order_payment_captured order_id={order.pk} "
        f"account_id={shop.account.pk} payment_id={payment.pk}: "
    ) in lines[0]
    assert lines[0].endswith("[safe to repair]")
    assert lines[1].startswith(
        f"cancelled_order_stock_held order_id={order.pk} sku=MUG"
    )


def test_the_command_repairs_and_exits_0_when_nothing_remains(shop):
    shop.cancelled_leaky()

    output, code = run_command("--repair")

    assert code == 0
    assert output.splitlines()[-1] == "3 violations (3 repaired)"
    assert all(line.endswith("[repaired]") for line in output.splitlines()[:-1])
    assert run_command() == ("0 violations (0 repaired)\n", 0)


def test_the_command_exits_1_while_an_unsafe_violation_remains(shop):
    shop.cancelled_leaky()
    Account.objects.filter(pk=shop.account.pk).update(balance=F("balance") + 10)

    output, code = run_command("--repair")

    assert code == 1
    assert output.splitlines()[-1] == "4 violations (3 repaired)"
    assert f"account_money account_id={shop.account.pk}: " in output


def test_the_command_writes_json(shop):
    order = shop.cancelled_leaky()

    output, code = run_command("--json")

    assert code == 1
    report = json.loads(output)
    assert (report["count"], report["repaired"], report["remaining"]) == (3, 0, 3)
    kinds = {(v["kind"], v["order_id"], v["sku"]) for v in report["violations"]}
    assert kinds == {
        ("cancelled_order_payment_captured", order.pk, None),
        ("cancelled_order_stock_held", order.pk, "MUG"),
        ("cancelled_order_stock_held", order.pk, "TEA"),
    }


def test_the_task_logs_each_violation_and_returns_the_count(shop, caplog):
    order = shop.cancelled_leaky()

    with caplog.at_level(logging.WARNING, logger="orders.tasks"):
        count = reconcile_purchases()

    assert count == 3
    warnings = [r for r in caplog.records if r.name == "orders.tasks"]
    assert len(warnings) == 3
    assert all(r.levelno == logging.WARNING for r in warnings)
    assert all(f"order_id={order.pk}" in r.getMessage() for r in warnings)
    assert {r.kind for r in warnings} == {
        "cancelled_order_payment_captured",
        "cancelled_order_stock_held",
    }
    # The task only reports: nothing was repaired.
    assert payment_of(order).status == PaymentStatus.CAPTURED


def test_the_task_is_the_one_beat_schedules():
    assert reconcile_purchases.name == "orders.reconcile"
    assert settings.CELERY_BEAT_SCHEDULE["reconcile"]["task"] == "orders.reconcile"


# ONE SNAPSHOT ------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_a_purchase_committing_mid_check_is_not_mistaken_for_drift():
    """A charge that commits between reading payments and accounts is not seen at all.

    Under READ COMMITTED the account would be read with the charge taken from its
    balance but the payments read before it: money "destroyed" that never was.
    """
    shop = Shop()
    charged = threading.Event()

    def charge_elsewhere():
        try:
            payment_charge(
                order_ref=999_999,
                customer_id=shop.user.pk,
                method_id=shop.method.pk,
                amount=Decimal("10.00"),
            )
            charged.set()
        finally:
            connection.close()  # this thread's own connection

    def between_queries(execute, sql, params, many, context):
        result = execute(sql, params, many, context)
        if 'SUM("payments_payment"."amount")' in sql and not charged.is_set():
            thread = threading.Thread(target=charge_elsewhere)
            thread.start()
            thread.join()
        return result

    with connection.execute_wrapper(between_queries):
        report = reconcile()

    assert charged.is_set()
    assert report.violations == []
    assert reconcile().violations == []  # and once committed, it adds up
