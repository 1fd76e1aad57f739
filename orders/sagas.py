"""The purchase saga: payment, stock and shipment for one order, or none of them.

Runs top-down. If payment, stock or shipment fails, what succeeded is undone newest
first and the order is cancelled with the reason. Once the shipment exists (the pivot)
the purchase only goes forward: confirming is retried until it succeeds.

Payment comes before stock on purpose (a pessimistic ordering): a customer who cannot
pay never holds stock, so nobody can keep a scarce product's stock away from paying
customers with orders that are bound to fail. The price is a refund, rather than a
release, when the stock then runs out.
"""

from decimal import Decimal

from inventory.services import stock_commit, stock_release, stock_reserve
from orders.services import order_cancel, order_confirm, shipment_create
from payments.services import payment_charge, payment_refund
from sagas.definitions import SagaDefinition, Step
from sagas.registry import register


def reserve_stock(order: dict) -> None:
    stock_reserve(
        order_ref=order["order_id"], lines=[tuple(line) for line in order["lines"]]
    )


def release_stock(order: dict) -> None:
    stock_release(order_ref=order["order_id"])


def charge_payment(order: dict) -> dict:
    payment = payment_charge(
        order_ref=order["order_id"],
        customer_id=order["customer_id"],
        method_id=order["payment_method_id"],
        amount=Decimal(order["total"]),
    )
    return {"payment_id": payment.pk}


def refund_payment(order: dict) -> None:
    payment_refund(order_ref=order["order_id"])


def create_shipment(order: dict) -> dict:
    shipment = shipment_create(order_id=order["order_id"])
    return {"shipment_id": shipment.pk, "tracking_code": shipment.tracking_code}


def confirm_order(order: dict) -> None:
    stock_commit(order_ref=order["order_id"])
    order_confirm(order_id=order["order_id"])


def cancel_order(order: dict, reason: str) -> None:
    order_cancel(order_id=order["order_id"], reason=reason)


purchase = register(
    SagaDefinition(
        name="purchase",
        steps=(
            Step("charge_payment", charge_payment, compensate=refund_payment),
            Step("reserve_stock", reserve_stock, compensate=release_stock),
            Step("create_shipment", create_shipment, pivot=True),
            Step("confirm_order", confirm_order),
        ),
        on_compensated=cancel_order,
    )
)
