"""Reads and row locks of inventory; locks are always taken in primary-key order."""

from django.db.models import QuerySet, Sum

from inventory.models import Product, ReservationStatus, StockReservation
from shop import sql

_IN_PK_ORDER = "ORDER BY id FOR UPDATE"


def product_list() -> QuerySet[Product]:
    return Product.objects.order_by("sku")


def product_get(*, sku: str) -> Product | None:
    return Product.objects.filter(sku=sku).first()


# The reads and locks of a purchase's stock steps are hand-written SQL (shop.sql).


def product_prices(*, skus: list[str]) -> dict[str, "Product"]:
    """The products named by ``skus`` (unknown ones are absent), by sku."""
    return {p.sku: p for p in sql.select(Product, "sku = ANY(%s)", [list(skus)])}


def products_lock(*, skus: list[str]) -> dict[str, Product]:
    """Lock products in pk order, so concurrent reservations never deadlock."""
    rows = sql.select(Product, "sku = ANY(%s)", [list(skus)], tail=_IN_PK_ORDER)
    return {p.sku: p for p in rows}


def reservations_lock(*, order_ref: int, status: str) -> list[StockReservation]:
    """Lock an order's reservations of one status and their products, in one round
    trip and in product (pk) order; each reservation comes with its product."""
    reservations, products = sql.table_of(StockReservation), sql.table_of(Product)
    rows = sql.fetch(
        f"SELECT {sql.columns(StockReservation)}, {sql.columns(Product)} "
        f"FROM {reservations} JOIN {products} "
        f"ON {products}.id = {reservations}.product_id "
        f"WHERE {reservations}.order_ref = %s AND {reservations}.status = %s "
        f"ORDER BY {products}.id FOR UPDATE",
        [order_ref, status],
    )
    held = []
    for row in rows:
        reservation = sql.instance(StockReservation, row)
        reservation.product = sql.instance(
            Product, row, start=sql.width(StockReservation)
        )
        held.append(reservation)
    return held


def reservations_of(*, order_ref: int) -> list[StockReservation]:
    return sql.select(
        StockReservation, "order_ref = %s", [order_ref], tail="ORDER BY id"
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
