"""Reads and row locks of orders."""

from django.db.models import OuterRef, QuerySet, Subquery

from orders.models import Order, OrderLine, OrderStatus, Shipment
from shop import sql
from shop.permissions import visible_to

VIEW_ORDERS = "orders.view_order"


def order_visible_to(*, user, order_id: int) -> Order | None:
    """An order of the user's own (staff with orders.view_order: anyone's); None for
    anyone else's."""
    return _orders_visible_to(user).filter(pk=order_id).first()


def order_by_key(*, customer_id: int, idempotency_key: str) -> Order | None:
    return Order.objects.filter(
        customer_id=customer_id, idempotency_key=idempotency_key
    ).first()


def order_saga_ids(*, order_id: int) -> list[int]:
    """The id of the order's purchase saga, in a list: one, or none for no order."""
    found = Order.objects.filter(pk=order_id, saga_id__isnull=False)
    return list(found.values_list("saga_id", flat=True))


def order_lock(*, order_id: int) -> Order:
    # On the hot path (a purchase's steps): hand-written SQL (shop.sql).
    order = sql.first(sql.select(Order, "id = %s", [order_id], tail="FOR UPDATE"))
    if order is None:
        raise Order.DoesNotExist(f"no order {order_id}")
    return order


def shipment_of(*, order_id: int) -> Shipment | None:
    return sql.first(sql.select(Shipment, "order_id = %s", [order_id]))


def orders_with_status(*, status: str) -> QuerySet[Order]:
    return Order.objects.filter(status=status).order_by("pk")


def orders_ended() -> QuerySet[Order]:
    return Order.objects.exclude(status=OrderStatus.PENDING).order_by("pk")


def orders_ended_with_lines() -> list[dict]:
    """Every ended order as {order_id, status, total, saga_id, shipment, lines}.

    ``lines`` is {sku: quantity}. Two queries in all. Orders are read before their
    lines: lines never change once placed, so an order that ends in between still
    finds all of its lines.
    """
    orders = list(
        orders_ended()
        .annotate(
            shipment_status=Subquery(
                Shipment.objects.filter(order=OuterRef("pk")).values("status")[:1]
            )
        )
        .values_list("pk", "status", "total", "saga_id", "shipment_status")
    )
    lines: dict[int, dict[str, int]] = {}
    rows = OrderLine.objects.exclude(order__status=OrderStatus.PENDING).values_list(
        "order_id", "sku", "quantity"
    )
    for order_id, sku, quantity in rows:
        lines.setdefault(order_id, {})[sku] = quantity
    return [
        {
            "order_id": pk,
            "status": status,
            "total": total,
            "saga_id": saga_id,
            "shipment": shipment,
            "lines": lines.get(pk, {}),
        }
        for pk, status, total, saga_id, shipment in orders
    ]


def order_list(*, user) -> QuerySet[Order]:
    """The orders ``user`` may see (staff with orders.view_order: all), newest first."""
    return _orders_visible_to(user).order_by("-pk")


def _orders_visible_to(user) -> QuerySet[Order]:
    return visible_to(
        Order.objects.prefetch_related("lines").select_related("shipment"),
        user=user,
        permission=VIEW_ORDERS,
        owner="customer_id",
    )


def order_outcomes(*, order_ids: list[int]) -> dict[int, tuple[str, str]]:
    """``(status, cancel_reason)`` of each order named, by id."""
    rows = Order.objects.filter(pk__in=order_ids).values_list(
        "pk", "status", "cancel_reason"
    )
    return {pk: (status, reason) for pk, status, reason in rows}
