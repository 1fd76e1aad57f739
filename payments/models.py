"""Customer accounts with a balance, their payment methods, and payments per order."""

from django.conf import settings
from django.db import models
from django.db.models import Q

from sagas.messaging.inbox import AbstractInboxMessage
from sagas.messaging.outbox import AbstractOutboxMessage
from shop.states import transition


class Account(models.Model):
    customer = models.OneToOneField(
        settings.AUTH_USER_MODEL, related_name="account", on_delete=models.PROTECT
    )
    balance = models.DecimalField(max_digits=12, decimal_places=2, default=0)
    # All money ever paid in; with the captured payments it accounts for the balance.
    credited = models.DecimalField(max_digits=12, decimal_places=2, default=0)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["id"]
        constraints = [
            models.CheckConstraint(
                condition=Q(balance__gte=0), name="account_balance_not_negative"
            ),
        ]

    def __str__(self) -> str:
        return f"account {self.pk} of {self.customer_id}"


class PaymentMethod(models.Model):
    account = models.ForeignKey(
        Account, related_name="methods", on_delete=models.PROTECT
    )
    label = models.CharField(max_length=100)
    active = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["id"]

    def __str__(self) -> str:
        return f"{self.label} ({'active' if self.active else 'inactive'})"


class PaymentStatus(models.TextChoices):
    AUTHORIZED = "AUTHORIZED"  # the amount held on the balance (a TCC try)
    CAPTURED = "CAPTURED"
    REFUNDED = "REFUNDED"
    VOIDED = "VOIDED"  # the hold let go (a TCC cancel)


PAYMENT_MOVES = {
    PaymentStatus.AUTHORIZED: frozenset({PaymentStatus.CAPTURED, PaymentStatus.VOIDED}),
    PaymentStatus.CAPTURED: frozenset({PaymentStatus.REFUNDED}),
}
#: Statuses whose amount has left the balance: held, or taken.
TAKEN_STATUSES = (PaymentStatus.AUTHORIZED, PaymentStatus.CAPTURED)


class Payment(models.Model):
    order_ref = models.PositiveBigIntegerField(
        unique=True
    )  # at most one payment per order
    account = models.ForeignKey(
        Account, related_name="payments", on_delete=models.PROTECT
    )
    method = models.ForeignKey(
        PaymentMethod, related_name="payments", on_delete=models.PROTECT
    )
    amount = models.DecimalField(max_digits=12, decimal_places=2)
    status = models.CharField(
        max_length=20, choices=PaymentStatus.choices, default=PaymentStatus.CAPTURED
    )
    created_at = models.DateTimeField(auto_now_add=True)
    refunded_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["id"]
        constraints = [
            models.CheckConstraint(
                condition=Q(amount__gt=0), name="payment_amount_positive"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.amount} for order {self.order_ref} {self.status}"

    def move_to(self, status: str) -> None:
        self.status = transition(
            self.status, status, PAYMENT_MOVES, what=f"payment {self.pk}"
        )


class OutboxMessage(AbstractOutboxMessage):
    """Payments' events: PaymentCaptured, PaymentRefunded, PaymentAuthorized,
    PaymentVoided, and PaymentFailed (a charge refused, in a choreographed purchase)."""


class InboxMessage(AbstractInboxMessage):
    """The events of other apps that payments has handled."""
