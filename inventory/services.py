"""Inventory writes: reserve, release and commit stock for an order; stock products.

Each service is idempotent per order (a reservation exists at most once per order and
product), writes its outbox event in the same transaction, and locks products in pk
order. The database refuses any count below zero, so nothing can ever oversell.

Services are atomic without a savepoint of their own: inside a caller's transaction (a
saga step) a failure rolls the whole of it back, so a savepoint would only cost two
statements; a caller that must go on after a failure rolls back and starts a new
transaction (a refused reaction does).
"""

from django.db import transaction
from django.utils import timezone

from inventory import selectors
from inventory.exceptions import InsufficientStock
from inventory.models import OutboxMessage, Product, ReservationStatus, StockReservation
from sagas.faults import fault_point
from sagas.messaging.outbox import outbox_emit
from shop import sql


@transaction.atomic(savepoint=False)
def product_create(*, sku: str, name: str, price, units: int = 0) -> Product:
    return Product.objects.create(
        sku=sku, name=name, price=price, available=units, received=units
    )


@transaction.atomic(savepoint=False)
def product_update(*, sku: str, name: str, price) -> Product:
    """Rename or reprice; the stock counts are left to the stock services."""
    product = selectors.products_lock(skus=[sku])[sku]
    product.name, product.price = name, price
    product.save(update_fields=["name", "price", "updated_at"])
    return product


@transaction.atomic(savepoint=False)
def product_restock(*, sku: str, units: int) -> Product:
    product = selectors.products_lock(skus=[sku])[sku]
    product.available += units
    product.received += units
    product.save(update_fields=["available", "received", "updated_at"])
    return product


@fault_point("inventory.reserve")
@transaction.atomic(savepoint=False)
def stock_reserve(
    *, order_ref: int, lines: list[tuple[str, int]]
) -> list[StockReservation]:
    """Hold ``lines`` (sku, quantity) for an order: all of them, or none (an error)."""
    existing = selectors.reservations_of(order_ref=order_ref)
    if existing:
        return existing  # reserved by an earlier delivery
    products = selectors.products_lock(skus=[sku for sku, _ in lines])
    for sku, quantity in lines:
        product = products.get(sku)
        if product is None or product.available < quantity:
            raise InsufficientStock(sku, quantity, product.available if product else 0)
    reservations = [
        StockReservation(order_ref=order_ref, product=products[sku], quantity=quantity)
        for sku, quantity in lines
    ]
    # The stock held and the reservations written in one round trip (a saga step's);
    # one change per product row (an order holds a product once: a constraint).
    # Prepared for an order of one line: each size would be a statement of its own.
    sql.insert(
        *reservations,
        before=tuple(
            sql.increment(
                Product, r.product_id, available=-r.quantity, reserved=r.quantity
            )
            for r in reservations
        ),
        prepare=len(reservations) == 1,
    )
    _emit("StockReserved", order_ref, lines)
    return reservations


@fault_point("inventory.release")
@transaction.atomic(savepoint=False)
def stock_release(*, order_ref: int) -> None:
    """Give back what an order holds; nothing to do if it holds nothing (any more)."""
    _settle(order_ref, ReservationStatus.RELEASED, "StockReleased")


@fault_point("inventory.commit")
@transaction.atomic(savepoint=False)
def stock_commit(*, order_ref: int) -> None:
    """Turn what an order holds into sold units."""
    _settle(order_ref, ReservationStatus.COMMITTED, "StockCommitted")


def _settle(order_ref: int, outcome: str, topic: str) -> None:
    held = selectors.reservations_lock(
        order_ref=order_ref, status=ReservationStatus.HELD
    )
    if not held:
        return
    moved_to = "available" if outcome == ReservationStatus.RELEASED else "sold"
    for reservation in held:
        reservation.move_to(outcome)  # checks the move; stored below
    # The stock moved and the reservations settled in one round trip.
    sql.together(
        *(
            sql.increment(
                Product, r.product_id, reserved=-r.quantity, **{moved_to: r.quantity}
            )
            for r in held
        ),
        (
            f"UPDATE {sql.table_of(StockReservation)} SET status = %s, "
            "updated_at = %s WHERE id = ANY(%s)",
            [outcome, timezone.now(), [r.pk for r in held]],
        ),
        prepare=len(held) == 1,  # as stock_reserve
    )
    _emit(topic, order_ref, [(r.product.sku, r.quantity) for r in held])


def _emit(topic: str, order_ref: int, lines: list[tuple[str, int]]) -> None:
    outbox_emit(
        OutboxMessage,
        topic=topic,
        aggregate_id=order_ref,
        payload={"order_id": order_ref, "lines": [[sku, qty] for sku, qty in lines]},
    )
