"""Payments writes: accounts and methods, and charging and refunding orders.

A charge and a refund are idempotent per order (one payment row per order) and write
their outbox event in the same transaction. The account row is locked before the balance
is read, and the database refuses a negative balance, so nothing can overdraw.

Services are atomic without a savepoint of their own: inside a caller's transaction (a
saga step) a failure rolls the whole of it back, so a savepoint would only cost two
statements; a caller that must go on after a failure rolls back and starts a new
transaction (a refused reaction does).
"""

from decimal import Decimal

from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction
from django.db.models import F
from django.utils import timezone

from payments import selectors
from payments.exceptions import InsufficientFunds, PaymentMethodUnusable
from payments.models import (
    Account,
    OutboxMessage,
    Payment,
    PaymentMethod,
    PaymentStatus,
)
from sagas.faults import fault_point
from sagas.messaging.outbox import outbox_emit
from shop import sql


@transaction.atomic(savepoint=False)
def account_create(
    *, customer: AbstractBaseUser, balance: Decimal = Decimal("0")
) -> Account:
    return Account.objects.create(customer=customer, balance=balance, credited=balance)


@transaction.atomic(savepoint=False)
def account_credit(*, customer_id: int, amount: Decimal) -> Account:
    account = selectors.account_lock(customer_id=customer_id)
    Account.objects.filter(pk=account.pk).update(
        balance=F("balance") + amount, credited=F("credited") + amount
    )
    account.refresh_from_db()
    return account


@transaction.atomic(savepoint=False)
def payment_method_create(*, customer_id: int, label: str) -> PaymentMethod:
    account = selectors.account_of(customer_id=customer_id)
    return PaymentMethod.objects.create(account=account, label=label)


@transaction.atomic(savepoint=False)
def payment_method_deactivate(
    *, customer_id: int, method_id: int
) -> PaymentMethod | None:
    """Deactivate one of the customer's methods; None if it is not theirs. Its rows
    are locked as a payment locks them (the account, then the method)."""
    method = selectors.payment_method_lock(customer_id=customer_id, method_id=method_id)
    if method is not None and method.active:
        method.active = False
        method.save(update_fields=["active", "updated_at"])
    return method


@fault_point("payments.charge")
@transaction.atomic(savepoint=False)
def payment_charge(
    *, order_ref: int, customer_id: int, method_id: int, amount: Decimal
) -> Payment:
    """Take ``amount`` from the customer's balance with one of their active methods."""
    return _take(order_ref, customer_id, method_id, amount, PaymentStatus.CAPTURED)


def _take(order_ref, customer_id, method_id, amount, status) -> Payment:
    existing = selectors.payment_of(order_ref=order_ref)
    if existing is not None:
        return existing  # taken by an earlier delivery
    # Lock first, then read: a method deactivated or a balance spent by a transaction
    # that committed while this one waited for the lock is seen as it now is.
    account, why_not = selectors.account_lock_to_pay(
        customer_id=customer_id, method_id=method_id
    )
    if account is None or why_not:
        raise PaymentMethodUnusable(method_id, why_not or "the customer has no account")
    if account.balance < amount:
        raise InsufficientFunds(amount, account.balance)
    # The balance taken and the payment written in one round trip (a saga step's).
    payment = Payment(
        order_ref=order_ref,
        account=account,
        method_id=method_id,
        amount=amount,
        status=status,
    )
    sql.insert(payment, before=(sql.increment(Account, account.pk, balance=-amount),))
    topic = (
        "PaymentCaptured" if status == PaymentStatus.CAPTURED else "PaymentAuthorized"
    )
    _emit(topic, payment)
    return payment


@fault_point("payments.authorize")
@transaction.atomic(savepoint=False)
def payment_authorize(
    *, order_ref: int, customer_id: int, method_id: int, amount: Decimal
) -> Payment:
    """Hold ``amount`` of the customer's balance with one of their active methods, to
    be captured or voided later (a try-confirm-cancel purchase's try)."""
    return _take(order_ref, customer_id, method_id, amount, PaymentStatus.AUTHORIZED)


@fault_point("payments.capture")
@transaction.atomic(savepoint=False)
def payment_capture(*, order_ref: int) -> Payment | None:
    """Take what was held for an order; a no-op once taken."""
    payment = selectors.payment_lock(order_ref=order_ref)
    if payment is None or payment.status != PaymentStatus.AUTHORIZED:
        return payment
    payment.move_to(PaymentStatus.CAPTURED)
    sql.together(sql.update_of(payment, ("status",)))  # prepared (shop.sql)
    _emit("PaymentCaptured", payment)
    return payment


@fault_point("payments.void")
@transaction.atomic(savepoint=False)
def payment_void(*, order_ref: int) -> Payment | None:
    """Give back what was held for an order; a no-op if nothing is (any more)."""
    return _give_back(order_ref, PaymentStatus.AUTHORIZED, PaymentStatus.VOIDED)


@fault_point("payments.refund")
@transaction.atomic(savepoint=False)
def payment_refund(*, order_ref: int) -> Payment | None:
    """Give an order's payment back; a no-op if none was taken or it was refunded."""
    return _give_back(order_ref, PaymentStatus.CAPTURED, PaymentStatus.REFUNDED)


def _give_back(order_ref: int, held: str, to: str) -> Payment | None:
    """Return to its account what an order's payment holds while ``held`` (a hold
    voided, a capture refunded); a no-op for a payment in any other status."""
    payment = selectors.payment_lock(order_ref=order_ref)
    if payment is None or payment.status != held:
        return payment
    payment.move_to(to)
    fields = ("status",)
    if to == PaymentStatus.REFUNDED:
        payment.refunded_at = timezone.now()
        fields += ("refunded_at",)
    # The balance given back and the payment's new status in one round trip.
    sql.together(
        sql.increment(Account, payment.account_id, balance=payment.amount),
        sql.update_of(payment, fields),
    )
    _emit(f"Payment{to.capitalize()}", payment)
    return payment


def _emit(topic: str, payment: Payment) -> None:
    outbox_emit(
        OutboxMessage,
        topic=topic,
        aggregate_id=payment.order_ref,
        payload={
            "order_id": payment.order_ref,
            "payment_id": payment.pk,
            "account_id": payment.account_id,
            "amount": str(payment.amount),
        },
    )
