"""Products and the stock reservations held for orders."""

from django.db import models
from django.db.models import F, Q

from sagas.messaging.inbox import AbstractInboxMessage
from sagas.messaging.outbox import AbstractOutboxMessage
from shop.states import transition


class Product(models.Model):
    sku = models.CharField(max_length=64, unique=True)
    name = models.CharField(max_length=200)
    price = models.DecimalField(max_digits=12, decimal_places=2)
    available = models.PositiveIntegerField(default=0)
    reserved = models.PositiveIntegerField(default=0)
    sold = models.PositiveIntegerField(default=0)
    # Every unit ever put into stock; the database keeps it equal to the three above.
    received = models.PositiveIntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["sku"]
        constraints = [
            models.CheckConstraint(
                condition=Q(price__gte=0), name="product_price_not_negative"
            ),
            models.CheckConstraint(
                condition=Q(received=F("available") + F("reserved") + F("sold")),
                name="product_stock_adds_up",
            ),
        ]

    def __str__(self) -> str:
        return self.sku


class ReservationStatus(models.TextChoices):
    HELD = "HELD"
    RELEASED = "RELEASED"
    COMMITTED = "COMMITTED"


RESERVATION_MOVES = {
    ReservationStatus.HELD: frozenset(
        {ReservationStatus.RELEASED, ReservationStatus.COMMITTED}
    ),
}


class StockReservation(models.Model):
    order_ref = models.PositiveBigIntegerField()
    product = models.ForeignKey(
        Product, related_name="reservations", on_delete=models.PROTECT
    )
    quantity = models.PositiveIntegerField()
    status = models.CharField(
        max_length=20, choices=ReservationStatus.choices, default=ReservationStatus.HELD
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["id"]
        constraints = [
            models.UniqueConstraint(
                fields=["order_ref", "product"],
                name="reservation_one_per_order_product",
            ),
            models.CheckConstraint(
                condition=Q(quantity__gt=0), name="reservation_quantity_positive"
            ),
        ]

    def __str__(self) -> str:
        return (
            f"order {self.order_ref}: {self.quantity} x {self.product_id} {self.status}"
        )

    def move_to(self, status: str) -> None:
        self.status = transition(
            self.status, status, RESERVATION_MOVES, what=f"reservation {self.pk}"
        )


class OutboxMessage(AbstractOutboxMessage):
    """Inventory's events: StockReserved, StockReleased, StockCommitted, and
    StockReservationFailed (refused, when choreographed)."""


class InboxMessage(AbstractInboxMessage):
    """The events of other apps that inventory has handled."""
