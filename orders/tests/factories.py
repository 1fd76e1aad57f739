"""Test orders, placed through orders.services (so each gets its purchase saga)."""

from inventory.services import stock_reserve
from orders.models import Order
from orders.services import order_place, shipment_create
from payments.services import payment_charge


def order_make(
    *,
    customer,
    payment_method_id: int,
    items: list[dict] | None = None,
    ship_to: str = "JP",
    idempotency_key: str | None = None,
    mode: str | None = None,
) -> Order:
    order, _ = order_place(
        customer=customer,
        items=items or [{"sku": "TEA", "quantity": 2}],
        payment_method_id=payment_method_id,
        ship_to=ship_to,
        mode=mode,
        idempotency_key=idempotency_key,
    )
    return order


def order_charge(order: Order) -> Order:
    """Run the order's saga steps before its shipment, called as services: its stock
    held, its payment taken."""
    stock_reserve(
        order_ref=order.pk,
        lines=[(line.sku, line.quantity) for line in order.lines.all()],
    )
    payment_charge(
        order_ref=order.pk,
        customer_id=order.customer_id,
        method_id=order.payment_method_id,
        amount=order.total,
    )
    return order


def order_ship(order: Order) -> Order:
    """order_charge, then the shipment."""
    shipment_create(order_id=order_charge(order).pk)
    return order
