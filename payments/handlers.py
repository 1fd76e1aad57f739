"""Payments' part in a choreographed purchase: the events it reacts to, and how.

Each reaction runs behind payments' inbox and the step's barrier, and announces its
outcome from payments' outbox (sagas.choreography.handlers).
"""

from decimal import Decimal

from payments.services import payment_charge, payment_refund
from sagas.choreography import reacts_to


@reacts_to("OrderPlaced", saga="purchase", step="charge_payment")
def charge_payment(purchase: dict) -> None:
    """Take the order's total: PaymentCaptured, or PaymentFailed if refused."""
    payment_charge(
        order_ref=purchase["order_id"],
        customer_id=purchase["customer_id"],
        method_id=purchase["payment_method_id"],
        amount=Decimal(purchase["total"]),
    )


@reacts_to(
    "StockReservationFailed",
    "StockReleased",
    "PaymentFailed",  # its own failure: no late charge may follow it
    saga="purchase",
    step="charge_payment",
    undo=True,
)
def refund_payment(purchase: dict) -> None:
    """Give the money back when the stock cannot be had: PaymentRefunded."""
    payment_refund(order_ref=purchase["order_id"])
