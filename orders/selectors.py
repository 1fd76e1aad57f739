"""Reads and row locks of orders."""

from django.db.models import QuerySet

from orders.models import Order, OrderStatus


def order_visible_to(*, user, order_id: int) -> Order | None:
    """An order its customer (or staff) may see; None for anyone else's."""
    orders = Order.objects.prefetch_related("lines").select_related("shipment")
    if not user.is_staff:
        orders = orders.filter(customer=user)
    return orders.filter(pk=order_id).first()


def order_by_key(*, customer_id: int, idempotency_key: str) -> Order | None:
    return Order.objects.filter(
        customer_id=customer_id, idempotency_key=idempotency_key
    ).first()


def order_lock(*, order_id: int) -> Order:
    return Order.objects.select_for_update(of=("self",)).get(pk=order_id)


def orders_with_status(*, status: str) -> QuerySet[Order]:
    return Order.objects.filter(status=status).order_by("pk")


def orders_ended() -> QuerySet[Order]:
    return Order.objects.exclude(status=OrderStatus.PENDING).order_by("pk")
