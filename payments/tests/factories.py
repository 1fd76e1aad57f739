"""Test customers with an account and a payment method, made through the services."""

from collections.abc import Iterable
from decimal import Decimal

from payments.models import PaymentMethod
from payments.services import account_create, payment_method_create
from shop.tests.factories import user_create


def customer_make(
    *,
    username: str = "ann",
    balance: str = "500.00",
    is_staff: bool = False,
    permissions: Iterable[str] | None = None,
) -> tuple:
    """A user with an account and one active card: ``(user, method)``; ``is_staff``
    and ``permissions`` as for shop.tests.factories.user_create."""
    user = user_create(username=username, is_staff=is_staff, permissions=permissions)
    account_create(customer=user, balance=Decimal(balance))
    method = payment_method_create(customer_id=user.pk, label="card")
    return user, method


def method_make(*, customer_id: int, label: str = "spare card") -> PaymentMethod:
    return payment_method_create(customer_id=customer_id, label=label)
