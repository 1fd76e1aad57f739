"""Payments take their rows in one order: a charge and a deactivation of the same
method, side by side, never deadlock (each locks the account, then the method)."""

import threading
import time

import pytest
from django.db import OperationalError, connection, transaction

from payments import selectors
from payments.services import payment_method_deactivate
from payments.tests.factories import customer_make

pytestmark = pytest.mark.django_db(transaction=True)


class Undone(Exception):
    """Rolls each try back, so the next one finds the rows as they were."""


def test_paying_and_deactivating_side_by_side_never_deadlock():
    user, method = customer_make(balance="100.00")
    errors: list[str] = []
    until = time.monotonic() + 6  # before the fix: a deadlock within about 4 s

    def pay():
        selectors.account_lock_to_pay(customer_id=user.pk, method_id=method.pk)

    def deactivate():
        payment_method_deactivate(customer_id=user.pk, method_id=method.pk)

    def again_and_again(work):
        try:
            while time.monotonic() < until and not errors:
                try:
                    with transaction.atomic():
                        work()
                        raise Undone
                except Undone:
                    pass
                except OperationalError as exc:  # "deadlock detected"
                    errors.append(str(exc).splitlines()[0])
        finally:
            connection.close()

    threads = [
        threading.Thread(target=again_and_again, args=(work,))
        for work in (pay, deactivate, pay, deactivate)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert errors == []


def test_only_the_customers_own_method_is_locked_and_deactivated():
    user, method = customer_make(username="ann")
    _, others = customer_make(username="bob")

    assert payment_method_deactivate(customer_id=user.pk, method_id=others.pk) is None
    assert payment_method_deactivate(customer_id=user.pk, method_id=method.pk).pk == (
        method.pk
    )
    others.refresh_from_db()
    method.refresh_from_db()
    assert (method.active, others.active) == (False, True)
