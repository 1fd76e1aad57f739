"""Reads and row locks of payments; locks are always taken in primary-key order."""

from decimal import Decimal

from django.db.models import Prefetch, QuerySet, Sum

from payments.models import TAKEN_STATUSES, Account, Payment, PaymentMethod
from shop import sql
from shop.permissions import visible_to

VIEW_ACCOUNTS = "payments.view_account"
_FIRST, _FIRST_LOCKED = "ORDER BY id LIMIT 1", "ORDER BY id LIMIT 1 FOR UPDATE"
_INACTIVE = "this payment method is inactive"


def account_of(*, customer_id: int) -> Account | None:
    return Account.objects.filter(customer_id=customer_id).first()


def account_get(*, account_id: int) -> Account | None:
    return Account.objects.filter(pk=account_id).first()


def account_lock(*, customer_id: int) -> Account | None:
    # On the hot path (a purchase's charge): hand-written SQL (shop.sql).
    rows = sql.select(Account, "customer_id = %s", [customer_id], tail=_FIRST_LOCKED)
    return sql.first(rows)


def account_lock_to_pay(
    *, customer_id: int, method_id: int
) -> tuple[Account | None, str | None]:
    """Lock the customer's account and the method it is to pay with, in one round
    trip; return the account and why the method cannot pay (None: it can).

    Both rows are locked, so a payment that waited for them sees what committed
    meanwhile (a balance spent, the method deactivated) as it now is."""
    found = _lock_account_and_method(customer_id, method_id)
    if not found:  # no account, or not one of its methods: say which
        account = account_lock(customer_id=customer_id)
        return account, payment_method_usable(
            customer_id=customer_id, method_id=method_id
        )
    [row] = found
    account = sql.instance(Account, row)
    method = sql.instance(PaymentMethod, row, start=sql.width(Account))
    return account, None if method.active else _INACTIVE


def payment_method_lock(*, customer_id: int, method_id: int) -> PaymentMethod | None:
    """Lock one of the customer's methods, with its account first, as a payment
    locks them: a payment and a deactivation take the two rows in one order and
    never deadlock. None if it is not one of theirs."""
    found = _lock_account_and_method(customer_id, method_id)
    return (
        sql.instance(PaymentMethod, found[0], start=sql.width(Account))
        if found
        else None
    )


def _lock_account_and_method(customer_id: int, method_id: int) -> list[tuple]:
    """The account, then the method (FOR UPDATE locks a join's rows in the order of
    its FROM list), in one statement; no row if the method is not the customer's."""
    accounts, methods = sql.table_of(Account), sql.table_of(PaymentMethod)
    return sql.fetch(
        f"SELECT {sql.columns(Account)}, {sql.columns(PaymentMethod)} "
        f"FROM {accounts} JOIN {methods} "
        f"ON {methods}.account_id = {accounts}.id AND {methods}.id = %s "
        f"WHERE {accounts}.customer_id = %s FOR UPDATE",
        [method_id, customer_id],
    )


def payment_method_usable(*, customer_id: int, method_id: int) -> str | None:
    """None if the customer may pay with this method now, else why not."""
    method = sql.first(
        sql.select(
            PaymentMethod,
            "id = %s AND account_id IN "
            f"(SELECT id FROM {sql.table_of(Account)} WHERE customer_id = %s)",
            [method_id, customer_id],
        )
    )
    if method is None:
        return "not one of your payment methods"
    if not method.active:
        return _INACTIVE
    return None


def payment_methods_of(*, customer_id: int) -> list[PaymentMethod]:
    return list(
        PaymentMethod.objects.filter(account__customer_id=customer_id).order_by("pk")
    )


def payment_of(*, order_ref: int) -> Payment | None:
    return sql.first(sql.select(Payment, "order_ref = %s", [order_ref], tail=_FIRST))


def payment_lock(*, order_ref: int) -> Payment | None:
    rows = sql.select(Payment, "order_ref = %s", [order_ref], tail=_FIRST_LOCKED)
    return sql.first(rows)


def account_money_mismatches() -> list[dict]:
    """Accounts where credited != balance + payments held or captured (money made or
    lost)."""
    captured = {
        row["account_id"]: row["total"]
        for row in Payment.objects.filter(status__in=TAKEN_STATUSES)
        .values("account_id")
        .annotate(total=Sum("amount"))
    }
    mismatches = []
    for account in Account.objects.order_by("pk"):
        spent = captured.get(account.pk, Decimal("0"))
        if account.balance + spent != account.credited:
            mismatches.append(
                {
                    "account_id": account.pk,
                    "credited": str(account.credited),
                    "balance": str(account.balance),
                    "captured": str(spent),
                }
            )
    return mismatches


def payments_by_order() -> dict[int, dict]:
    """Every payment as {order_ref: {payment_id, account_id, amount, status}}.

    One query (a payment is unique per order): reconciliation compares payments to
    orders in memory rather than asking once per order.
    """
    rows = Payment.objects.values_list(
        "order_ref", "pk", "account_id", "amount", "status"
    )
    return {
        order_ref: {
            "payment_id": pk,
            "account_id": account_id,
            "amount": amount,
            "status": status,
        }
        for order_ref, pk, account_id, amount, status in rows
    }


def account_with_methods_of(*, customer_id: int) -> Account | None:
    """A customer's account with its payment methods (in pk order)."""
    return _accounts_with_methods().filter(customer_id=customer_id).first()


def account_visible_to(*, user, account_id: int) -> Account | None:
    """An account by id with its payment methods (in pk order): the user's own (staff
    with payments.view_account: anyone's); None for anyone else's."""
    accounts = visible_to(
        _accounts_with_methods(),
        user=user,
        permission=VIEW_ACCOUNTS,
        owner="customer_id",
    )
    return accounts.filter(pk=account_id).first()


def _accounts_with_methods() -> QuerySet[Account]:
    return Account.objects.prefetch_related(
        Prefetch("methods", queryset=PaymentMethod.objects.order_by("pk"))
    )
