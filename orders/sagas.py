"""The purchase saga, three ways: payment, stock and shipment for one order, or none.

Each definition reads top-down like the process. Whatever runs it, the purchase uses
the same services of the apps, the same outboxes and the same saga records.

Payment comes before stock on purpose (a pessimistic ordering): a customer who cannot
pay never holds stock, so nobody can keep a scarce product's stock away from paying
customers with orders that are bound to fail. The price is a refund, rather than a
release, when the stock then runs out.
"""

from decimal import Decimal

from inventory.services import stock_commit, stock_release, stock_reserve
from orders.services import (
    order_cancel,
    order_confirm,
    shipment_book,
    shipment_create,
    shipment_dispatch,
    shipment_release,
)
from payments.services import (
    payment_authorize,
    payment_capture,
    payment_charge,
    payment_refund,
    payment_void,
)
from sagas.definitions import SagaDefinition, Step
from sagas.definitions.choreography import Choreography, Reaction
from sagas.definitions.tcc import Participant, TryConfirmCancel
from sagas.registry import register

# ORCHESTRATION: the engine runs the steps in turn. If payment, stock or shipment
# fails, what succeeded is undone newest first and the order is cancelled with the
# reason. Once the shipment exists (the pivot) the purchase only goes forward:
# confirming is retried until it succeeds.


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


def reserve_stock(order: dict) -> None:
    stock_reserve(
        order_ref=order["order_id"], lines=[tuple(line) for line in order["lines"]]
    )


def release_stock(order: dict) -> None:
    stock_release(order_ref=order["order_id"])


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
        subject=("order_id",),
    )
)


# CHOREOGRAPHY: no one runs it. Each app reacts to the event before it (see its
# handlers.py) and announces what it did; a failure makes the apps before it undo
# their work, newest first, and orders cancels the order.

purchase_choreography = register(
    Choreography(
        name="purchase",
        steps=(
            Reaction(
                "charge_payment",
                by="payments",
                on="OrderPlaced",
                succeeds="PaymentCaptured",
                fails="PaymentFailed",
                undone="PaymentRefunded",
            ),
            Reaction(
                "reserve_stock",
                by="inventory",
                on="PaymentCaptured",
                succeeds="StockReserved",
                fails="StockReservationFailed",
                undone="StockReleased",
            ),
            Reaction(
                "create_shipment",
                by="orders",
                on="StockReserved",
                succeeds="ShipmentCreated",
                fails="ShipmentFailed",
                pivot=True,
            ),
            Reaction(
                "commit_stock",
                by="inventory",
                on="ShipmentCreated",
                succeeds="StockCommitted",
            ),
            Reaction(
                "confirm_order",
                by="orders",
                on="StockCommitted",
                succeeds="OrderConfirmed",
            ),
        ),
        ends_undone_with="OrderCancelled",
        ended_by="orders",
        subject=("order_id",),
    )
)


# TRY-CONFIRM-CANCEL: every participant holds what the purchase needs (the balance on
# the payment method, the stock, the carrier's slot); once all hold, all confirm and
# the order is confirmed; if one cannot, all are cancelled, tried or not.


def authorize_payment(order: dict) -> None:
    payment_authorize(
        order_ref=order["order_id"],
        customer_id=order["customer_id"],
        method_id=order["payment_method_id"],
        amount=Decimal(order["total"]),
    )


def capture_payment(order: dict) -> None:
    payment_capture(order_ref=order["order_id"])


def void_payment(order: dict) -> None:
    payment_void(order_ref=order["order_id"])


def commit_stock(order: dict) -> None:
    stock_commit(order_ref=order["order_id"])


def book_shipment(order: dict) -> None:
    shipment_book(order_id=order["order_id"])


def dispatch_shipment(order: dict) -> None:
    shipment_dispatch(order_id=order["order_id"])


def release_shipment(order: dict) -> None:
    shipment_release(order_id=order["order_id"])


def mark_order_confirmed(order: dict) -> None:
    order_confirm(order_id=order["order_id"])


purchase_tcc = register(
    TryConfirmCancel(
        name="purchase",
        participants=(
            Participant(
                "payment",
                try_=authorize_payment,
                confirm=capture_payment,
                cancel=void_payment,
            ),
            Participant(
                "stock", try_=reserve_stock, confirm=commit_stock, cancel=release_stock
            ),
            Participant(
                "shipment",
                try_=book_shipment,
                confirm=dispatch_shipment,
                cancel=release_shipment,
            ),
        ),
        then=(Step("confirm_order", mark_order_confirmed),),
        on_compensated=cancel_order,
        subject=("order_id",),
    )
)
