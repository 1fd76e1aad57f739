"""Orders writes: place an order (and start its purchase saga), ship, confirm, cancel.

``order_place`` writes the order, its lines, its OrderPlaced event and its saga in one
transaction, so an order that committed always gets its saga and a rolled-back one never
does. The other services are saga steps: idempotent, each with its outbox event.

Services are atomic without a savepoint of their own: inside a caller's transaction (a
saga step) a failure rolls the whole of it back, so a savepoint would only cost two
statements; a caller that must go on after a failure rolls back and starts a new
transaction (a refused reaction does).
"""

import hashlib
import json
from decimal import Decimal

from django.conf import settings
from django.db import IntegrityError, transaction

from inventory import selectors as inventory_selectors
from orders import selectors
from orders.exceptions import DestinationNotServed, IdempotencyKeyReused, InvalidOrder
from orders.models import (
    Order,
    OrderLine,
    OrderStatus,
    OutboxMessage,
    Shipment,
    ShipmentStatus,
)
from payments import selectors as payments_selectors
from sagas.definitions import Mode
from sagas.faults import fault_point
from sagas.lifecycle import saga_start
from sagas.messaging.correlation import correlated
from sagas.messaging.outbox import outbox_emit
from sagas.registry import headers_of
from shop import sql

CENT = Decimal("0.01")
# The largest total Order.total (12 digits, 2 after the point) can hold.
MAX_TOTAL = Decimal("9999999999.99")


def order_place(
    *,
    customer,
    items: list[dict],
    payment_method_id: int,
    ship_to: str = "JP",
    mode: str | None = None,
    idempotency_key: str | None = None,
) -> tuple[Order, bool]:
    """Place an order and start its purchase saga, run in ``mode`` (default
    SAGA_DEFAULT_MODE); return (order, whether it is new).

    The same idempotency key with the same request returns the first order; with a
    different request it raises IdempotencyKeyReused.
    """
    mode = mode or settings.SAGA_DEFAULT_MODE
    fingerprint = _fingerprint(items, payment_method_id, ship_to, mode)
    if idempotency_key is not None:
        existing = selectors.order_by_key(
            customer_id=customer.pk, idempotency_key=idempotency_key
        )
        if existing is not None:
            return _replay(existing, fingerprint), False
    try:
        order = _order_create(
            customer=customer,
            items=items,
            payment_method_id=payment_method_id,
            ship_to=ship_to,
            mode=mode,
            idempotency_key=idempotency_key,
            fingerprint=fingerprint,
        )
    except IntegrityError:
        if idempotency_key is None:
            raise
        # A concurrent request with the same key committed first.
        existing = selectors.order_by_key(
            customer_id=customer.pk, idempotency_key=idempotency_key
        )
        if existing is None:
            raise
        return _replay(existing, fingerprint), False
    return order, True


@transaction.atomic(durable=True)
def _order_create(
    *, customer, items, payment_method_id, ship_to, mode, idempotency_key, fingerprint
):
    products = _validate(customer, items, payment_method_id)
    lines = [
        OrderLine(
            sku=i["sku"], quantity=i["quantity"], unit_price=products[i["sku"]].price
        )
        for i in items
    ]
    total = sum(
        (line.unit_price * line.quantity for line in lines), Decimal("0")
    ).quantize(CENT)
    # Refused here, not by the database as a 500: a total beyond the column, or one of
    # nothing (products priced 0), which no payment can be taken for (amount > 0).
    if total > MAX_TOTAL:
        raise InvalidOrder({"items": [f"The order total {total} exceeds {MAX_TOTAL}."]})
    if total <= 0:
        raise InvalidOrder(
            {"items": [f"The order total is {total}; it must be more than 0."]}
        )
    # Written as prepared statements (shop.sql), as the saga's rows are: placing an
    # order is what every saga starts with.
    order = Order(
        customer=customer,
        total=total,
        payment_method_id=payment_method_id,
        ship_to=ship_to,
        mode=mode,
        idempotency_key=idempotency_key,
        request_fingerprint=fingerprint,
    )
    sql.insert(order)
    for line in lines:
        line.order = order
    sql.insert(*lines, prepare=len(lines) == 1)  # each size a statement of its own
    context = {
        "order_id": order.pk,
        "customer_id": customer.pk,
        "payment_method_id": payment_method_id,
        "total": str(total),
        "lines": [[line.sku, line.quantity] for line in lines],
    }
    saga = saga_start(
        name="purchase",
        mode=mode,
        context=context,
        idempotency_key=f"order-{order.pk}",
        owner_id=customer.pk,
    )
    order.saga_id = saga.pk
    sql.together(sql.update_of(order, ("saga_id",)))
    # With the saga's headers: choreographed, this event is what sets it off.
    with correlated(**headers_of(saga)):
        _emit("OrderPlaced", order, context)
    return order


def _validate(customer, items, payment_method_id) -> dict:
    """Check what only the database can tell: skus exist, the method is usable."""
    products = inventory_selectors.product_prices(skus=[i["sku"] for i in items])
    fields = {
        f"items[{n}].sku": [f"Unknown sku {item['sku']!r}."]
        for n, item in enumerate(items)
        if item["sku"] not in products
    }
    why_not = payments_selectors.payment_method_usable(
        customer_id=customer.pk, method_id=payment_method_id
    )
    if why_not:
        fields["payment_method_id"] = [why_not.capitalize() + "."]
    if fields:
        raise InvalidOrder(fields)
    return products


def _replay(order: Order, fingerprint: str) -> Order:
    if order.request_fingerprint != fingerprint:
        raise IdempotencyKeyReused()
    return order


def _fingerprint(items, payment_method_id, ship_to, mode) -> str:
    request = [[[i["sku"], i["quantity"]] for i in items], payment_method_id, ship_to]
    if mode != Mode.ORCHESTRATION:
        # Left out for orchestration: orders placed before modes existed still match.
        request.append(mode)
    canonical = json.dumps(request, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


@fault_point("orders.ship")
@transaction.atomic(savepoint=False)
def shipment_create(*, order_id: int) -> Shipment:
    """Hand the order to the carrier: a shipment, SHIPPED."""
    return _shipment(order_id, ShipmentStatus.SHIPPED, "ShipmentCreated")


@fault_point("orders.book")
@transaction.atomic(savepoint=False)
def shipment_book(*, order_id: int) -> Shipment:
    """Hold the carrier's slot for the order (a try-confirm-cancel purchase's try)."""
    return _shipment(order_id, ShipmentStatus.BOOKED, "ShipmentBooked")


@fault_point("orders.dispatch")
@transaction.atomic(savepoint=False)
def shipment_dispatch(*, order_id: int) -> Shipment | None:
    """Ship what was booked; a no-op once shipped."""
    return _shipment_move(order_id, ShipmentStatus.SHIPPED, "ShipmentCreated")


@fault_point("orders.unbook")
@transaction.atomic(savepoint=False)
def shipment_release(*, order_id: int) -> Shipment | None:
    """Let the carrier's slot go; a no-op if none is booked (any more)."""
    return _shipment_move(order_id, ShipmentStatus.RELEASED, "ShipmentReleased")


def _shipment(order_id: int, status: str, topic: str) -> Shipment:
    order = selectors.order_lock(order_id=order_id)
    if order.ship_to not in settings.SHIPPING_COUNTRIES:
        raise DestinationNotServed(order.ship_to)
    shipment = Shipment(
        order=order,
        destination=order.ship_to,
        tracking_code=f"SG{order.pk:010d}",
        status=status,
    )
    # One shipment per order: written unless an earlier delivery made it, which is
    # then returned (one round trip on the way every purchase takes).
    if not sql.insert_once(shipment, unique=("order",)):
        return selectors.shipment_of(order_id=order.pk)
    _emit_shipment(topic, order, shipment)
    return shipment


def _shipment_move(order_id: int, status: str, topic: str) -> Shipment | None:
    order = selectors.order_lock(order_id=order_id)
    shipment = selectors.shipment_of(order_id=order.pk)
    if shipment is None or shipment.status != ShipmentStatus.BOOKED:
        return shipment
    shipment.move_to(status)
    sql.together(sql.update_of(shipment, ("status",)))  # prepared (shop.sql)
    _emit_shipment(topic, order, shipment)
    return shipment


def _emit_shipment(topic: str, order: Order, shipment: Shipment) -> None:
    _emit(
        topic,
        order,
        {"shipment_id": shipment.pk, "tracking_code": shipment.tracking_code},
    )


@fault_point("orders.confirm")
@transaction.atomic(savepoint=False)
def order_confirm(*, order_id: int) -> Order:
    return _order_end(order_id, OrderStatus.CONFIRMED, "OrderConfirmed")


@fault_point("orders.cancel")
@transaction.atomic(savepoint=False)
def order_cancel(*, order_id: int, reason: str) -> Order:
    return _order_end(order_id, OrderStatus.CANCELLED, "OrderCancelled", reason=reason)


def _order_end(order_id: int, status: str, topic: str, *, reason: str = "") -> Order:
    order = selectors.order_lock(order_id=order_id)
    if order.status == status:
        return order  # ended by an earlier delivery
    order.move_to(status)
    order.cancel_reason = reason[:2000]
    sql.together(sql.update_of(order, ("status", "cancel_reason", "updated_at")))
    _emit(topic, order, {"reason": reason} if reason else {})
    return order


def _emit(topic: str, order: Order, payload: dict) -> None:
    outbox_emit(
        OutboxMessage,
        topic=topic,
        aggregate_id=order.pk,
        payload={"order_id": order.pk, "status": order.status, **payload},
    )
