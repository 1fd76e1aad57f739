"""Orders' part in a choreographed purchase: the events it reacts to, and how.

Each reaction runs behind orders' inbox and the step's barrier, and announces its
outcome from orders' outbox (sagas.choreography.handlers). Orders starts the purchase
itself: placing the order writes OrderPlaced (orders.services.order_place).
"""

from orders.services import order_cancel, order_confirm, shipment_create
from sagas.choreography import reacts_to
from sagas.definitions.choreography import END


@reacts_to("StockReserved", saga="purchase", step="create_shipment")
def create_shipment(purchase: dict) -> None:
    """Paid and held: ship it (ShipmentCreated), or ShipmentFailed if the carrier
    does not deliver there."""
    shipment_create(order_id=purchase["order_id"])


@reacts_to("StockCommitted", saga="purchase", step="confirm_order")
def confirm_order(purchase: dict) -> None:
    """Shipped and sold: the order is confirmed (OrderConfirmed)."""
    order_confirm(order_id=purchase["order_id"])


@reacts_to("PaymentFailed", "PaymentRefunded", saga="purchase", step=END)
def cancel_order(purchase: dict, reason: str) -> None:
    """Nothing is held any more: the order is cancelled, saying why (OrderCancelled)."""
    order_cancel(order_id=purchase["order_id"], reason=reason)
