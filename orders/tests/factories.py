"""Test orders, placed through orders.services (so each gets its purchase saga)."""

from orders.models import Order
from orders.services import order_place


def order_make(
    *,
    customer,
    payment_method_id: int,
    items: list[dict] | None = None,
    ship_to: str = "JP",
    idempotency_key: str | None = None,
) -> Order:
    order, _ = order_place(
        customer=customer,
        items=items or [{"sku": "TEA", "quantity": 2}],
        payment_method_id=payment_method_id,
        ship_to=ship_to,
        idempotency_key=idempotency_key,
    )
    return order
