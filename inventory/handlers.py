"""Inventory's part in a choreographed purchase: the events it reacts to, and how.

Each reaction runs behind inventory's inbox and the step's barrier, and announces its
outcome from inventory's outbox (sagas.choreography.handlers).
"""

from inventory.services import stock_commit, stock_release, stock_reserve
from sagas.choreography import reacts_to


@reacts_to("PaymentCaptured", saga="purchase", step="reserve_stock")
def reserve_stock(purchase: dict) -> None:
    """Hold the order's lines once it is paid: StockReserved, or
    StockReservationFailed if there is not enough."""
    stock_reserve(
        order_ref=purchase["order_id"],
        lines=[tuple(line) for line in purchase["lines"]],
    )


@reacts_to(
    "ShipmentFailed",
    "StockReservationFailed",  # its own failure: no late hold may follow it
    saga="purchase",
    step="reserve_stock",
    undo=True,
)
def release_stock(purchase: dict) -> None:
    """Give the stock back when the carrier refuses the order: StockReleased."""
    stock_release(order_ref=purchase["order_id"])


@reacts_to("ShipmentCreated", saga="purchase", step="commit_stock")
def commit_stock(purchase: dict) -> None:
    """The order ships: what it holds is sold (StockCommitted)."""
    stock_commit(order_ref=purchase["order_id"])
