"""Reads and row locks of inventory; locks are always taken in primary-key order."""

from django.db.models import QuerySet, Sum

from inventory.models import Product, ReservationStatus, StockReservation


def product_list() -> QuerySet[Product]:
    return Product.objects.order_by("sku")


def product_get(*, sku: str) -> Product | None:
    return Product.objects.filter(sku=sku).first()


def product_prices(*, skus: list[str]) -> dict[str, "Product"]:
    """The products named by ``skus`` (unknown ones are absent), by sku."""
    return {p.sku: p for p in Product.objects.filter(sku__in=skus)}


def products_lock(*, skus: list[str]) -> dict[str, Product]:
    """Lock products in pk order, so concurrent reservations never deadlock."""
    rows = Product.objects.filter(sku__in=skus).order_by("pk").select_for_update()
    return {p.sku: p for p in rows}


def reservations_lock(*, order_ref: int, status: str) -> list[StockReservation]:
    """Lock an order's reservations of one status and their products, in pk order."""
    return list(
        StockReservation.objects.filter(order_ref=order_ref, status=status)
        .select_related("product")
        .order_by("product_id")
        .select_for_update(of=("self",))  # products are locked apart, by products_lock
    )


def reservations_of(*, order_ref: int) -> list[StockReservation]:
    return list(
        StockReservation.objects.filter(order_ref=order_ref).select_related("product")
    )


def product_counter_mismatches() -> list[dict]:
    """Products whose reserved/sold counters disagree with their reservations."""
    units: dict[tuple[int, str], int] = {
        (row["product_id"], row["status"]): row["units"]
        for row in StockReservation.objects.values("product_id", "status").annotate(
            units=Sum("quantity")
        )
    }
    mismatches = []
    for product in Product.objects.order_by("pk"):
        held = units.get((product.pk, ReservationStatus.HELD), 0)
        committed = units.get((product.pk, ReservationStatus.COMMITTED), 0)
        if (held, committed) != (product.reserved, product.sold):
            mismatches.append(
                {
                    "sku": product.sku,
                    "reserved": product.reserved,
                    "held": held,
                    "sold": product.sold,
                    "committed": committed,
                }
            )
    return mismatches


def reservations_by_order() -> dict[int, dict[str, dict[str, int]]]:
    """Every reservation as {order_ref: {status: {sku: quantity}}} (for reconciliation).

    One query over all reservations: reconciliation compares them to orders in memory
    rather than asking once per order.
    """
    by_order: dict[int, dict[str, dict[str, int]]] = {}
    rows = StockReservation.objects.values_list(
        "order_ref", "status", "product__sku", "quantity"
    )
    for order_ref, status, sku, quantity in rows:
        by_order.setdefault(order_ref, {}).setdefault(status, {})[sku] = quantity
    return by_order
