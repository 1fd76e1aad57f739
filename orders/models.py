"""Orders with their lines and total, and the shipments that deliver them."""

from django.conf import settings
from django.db import models
from django.db.models import Q

from sagas.definitions import Mode
from sagas.messaging.inbox import AbstractInboxMessage
from sagas.messaging.outbox import AbstractOutboxMessage
from shop.states import transition


class OrderStatus(models.TextChoices):
    PENDING = "PENDING"  # until its purchase saga ends
    CONFIRMED = "CONFIRMED"
    CANCELLED = "CANCELLED"


ORDER_MOVES = {
    OrderStatus.PENDING: frozenset({OrderStatus.CONFIRMED, OrderStatus.CANCELLED}),
}


class Order(models.Model):
    customer = models.ForeignKey(
        settings.AUTH_USER_MODEL, related_name="orders", on_delete=models.PROTECT
    )
    status = models.CharField(
        max_length=20, choices=OrderStatus.choices, default=OrderStatus.PENDING
    )
    total = models.DecimalField(max_digits=12, decimal_places=2)
    payment_method_id = models.PositiveBigIntegerField()  # a payments method, by id
    ship_to = models.CharField(max_length=2, default="JP")
    # How its purchase saga runs: orchestration, choreography or tcc.
    mode = models.CharField(
        max_length=20, choices=Mode.choices, default=Mode.ORCHESTRATION
    )
    cancel_reason = models.TextField(blank=True)
    saga_id = models.PositiveBigIntegerField(null=True, blank=True)  # its purchase saga
    idempotency_key = models.CharField(max_length=255, null=True, blank=True)  # noqa: DJ001
    request_fingerprint = models.CharField(max_length=64, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["customer", "idempotency_key"],
                condition=Q(idempotency_key__isnull=False),
                name="order_unique_idempotency_key",
            ),
            models.CheckConstraint(
                condition=Q(total__gte=0), name="order_total_not_negative"
            ),
        ]

    def __str__(self) -> str:
        return f"order {self.pk} {self.status}"

    def move_to(self, status: str) -> None:
        self.status = transition(
            self.status, status, ORDER_MOVES, what=f"order {self.pk}"
        )


class OrderLine(models.Model):
    order = models.ForeignKey(Order, related_name="lines", on_delete=models.CASCADE)
    sku = models.CharField(max_length=64)
    quantity = models.PositiveIntegerField()
    unit_price = models.DecimalField(max_digits=12, decimal_places=2)

    class Meta:
        ordering = ["id"]
        constraints = [
            models.UniqueConstraint(
                fields=["order", "sku"], name="order_line_unique_sku"
            ),
            models.CheckConstraint(
                condition=Q(quantity__gt=0), name="order_line_quantity_positive"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.quantity} x {self.sku}"


class ShipmentStatus(models.TextChoices):
    BOOKED = "BOOKED"  # the carrier's slot held (a TCC try)
    SHIPPED = "SHIPPED"
    RELEASED = "RELEASED"  # the booking let go (a TCC cancel)


SHIPMENT_MOVES = {
    ShipmentStatus.BOOKED: frozenset({ShipmentStatus.SHIPPED, ShipmentStatus.RELEASED}),
}


class Shipment(models.Model):
    order = models.OneToOneField(
        Order, related_name="shipment", on_delete=models.PROTECT
    )
    destination = models.CharField(max_length=2)
    tracking_code = models.CharField(max_length=40, unique=True)
    status = models.CharField(
        max_length=20, choices=ShipmentStatus.choices, default=ShipmentStatus.SHIPPED
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-id"]

    def __str__(self) -> str:
        return self.tracking_code

    def move_to(self, status: str) -> None:
        self.status = transition(
            self.status, status, SHIPMENT_MOVES, what=f"shipment {self.pk}"
        )


class OutboxMessage(AbstractOutboxMessage):
    """Orders' events: OrderPlaced, ShipmentCreated, ShipmentBooked, ShipmentReleased,
    ShipmentFailed (refused, when choreographed), OrderConfirmed, OrderCancelled."""


class InboxMessage(AbstractInboxMessage):
    """The events of other apps that orders has handled."""
