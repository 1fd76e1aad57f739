"""A small shop for end-to-end tests, built through the apps' own services."""

import itertools
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from decimal import Decimal

import requests
from django.contrib.auth.models import User
from django.db import connection
from rest_framework.test import APIClient

from inventory.models import Product
from inventory.tests.factories import product_make
from orders.models import Order, OrderStatus
from orders.reconcile import reconcile
from payments.models import Account, Payment, PaymentStatus
from payments.tests.factories import customer_make
from sagas.models import ENDED_STATUSES, Saga, SagaStatus
from shop.tests.factories import client_for
from tests.cluster import wait_until

_ids = itertools.count(1)


@dataclass
class Customer:
    user: User
    method_id: int
    client: APIClient = field(repr=False)

    def order(
        self,
        items: dict[str, int],
        *,
        ship_to: str = "JP",
        key: str | None = None,
        mode: str | None = None,
    ):
        """Place an order through the REST API; return the response."""
        body = {
            "items": [{"sku": sku, "quantity": qty} for sku, qty in items.items()],
            "payment_method_id": self.method_id,
            "ship_to": ship_to,
        }
        if mode is not None:
            body["mode"] = mode
        headers = {"HTTP_IDEMPOTENCY_KEY": key} if key else {}
        return self.client.post("/api/orders/", body, format="json", **headers)


def customer(balance: str = "1000.00") -> Customer:
    user, method = customer_make(username=f"customer{next(_ids)}", balance=balance)
    return Customer(user=user, method_id=method.pk, client=client_for(user))


def product(sku: str, *, price: str = "10.00", units: int = 100):
    return product_make(sku=sku, price=price, units=units)


def in_threads(function, arguments, *, workers: int = 8) -> list:
    """Call ``function`` on each argument from a pool of threads, as concurrent clients.

    Each thread opens its own database connection; it is closed when its call ends,
    or the test database could not be dropped at the end of the run.
    """

    def call(argument):
        try:
            return function(argument)
        finally:
            connection.close()

    with ThreadPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(call, arguments))


def wait_ended(saga_ids, *, timeout: float = 60.0) -> list[Saga]:
    """Wait until every saga is COMPLETED or COMPENSATED (or FAILED); return them."""
    ids = list(saga_ids)
    done = {*ENDED_STATUSES, SagaStatus.FAILED}

    def ended():
        sagas = list(Saga.objects.filter(pk__in=ids).order_by("pk"))
        return (
            sagas
            if all(s.status in done for s in sagas) and len(sagas) == len(ids)
            else None
        )

    def stuck():
        return str(list(Saga.objects.filter(pk__in=ids).exclude(status__in=done)[:5]))

    return wait_until(
        ended, timeout=timeout, what=f"{len(ids)} sagas to end", on_timeout=stuck
    )


def balance(customer: Customer) -> Decimal:
    return Account.objects.get(customer=customer.user).balance


def place(customer: Customer, items: dict[str, int], **kwargs) -> Saga:
    """Place an order through the REST API, which must accept it; return its saga."""
    response = customer.order(items, **kwargs)
    assert response.status_code == 202, response.content
    return Saga.objects.get(pk=response.json()["saga_id"])


ALL_MODES = ("orchestration", "choreography", "tcc")


def place_over_http(
    url: str, customer: Customer, token: str, *, sku: str = "TEA", **fields
) -> int:
    """Place one order of one ``sku`` through a live web server's API, as a client
    holding ``token`` would; return its saga's id (202, or the test fails)."""
    response = requests.post(
        f"{url}/api/orders/",
        json={
            "items": [{"sku": sku, "quantity": 1}],
            "payment_method_id": customer.method_id,
            **fields,
        },
        headers={"Authorization": f"Token {token}"},
        timeout=30,
    )
    assert response.status_code == 202, response.text
    return response.json()["saga_id"]


def place_batch(
    buyers: list[Customer],
    n: int,
    *,
    rare: bool = False,
    modes: tuple[str, ...] = ALL_MODES,
) -> list[int]:
    """Place ``n`` orders from threads, their sagas run in ``modes`` in turn; every
    fourth asks for RARE if ``rare``."""

    def one(i: int) -> int:
        items = {"RARE": 1} if rare and i % 4 == 3 else {"TEA": 1 + i % 3}
        return place(buyers[i % len(buyers)], items, mode=modes[i % len(modes)]).pk

    return in_threads(one, range(n))


def ended(saga_ids: list[int]) -> int:
    return Saga.objects.filter(pk__in=saga_ids, status__in=ENDED_STATUSES).count()


def assert_consistent() -> None:
    """Nothing lost, nothing doubled: every saga ended and the books add up."""
    assert not Saga.objects.exclude(status__in=ENDED_STATUSES).exists()
    assert reconcile().violations == []
    confirmed = Order.objects.filter(status=OrderStatus.CONFIRMED)
    for order in confirmed:
        [payment] = Payment.objects.filter(order_ref=order.pk)
        assert (payment.status, payment.amount) == (PaymentStatus.CAPTURED, order.total)
    assert not Order.objects.filter(status=OrderStatus.PENDING).exists()
    sold = sum(Product.objects.values_list("sold", flat=True))
    assert sold == sum(line.quantity for o in confirmed for line in o.lines.all())


def wait_all_published(*, timeout: float) -> None:
    """Wait until the relay has published (or set aside) every outbox row."""
    from sagas.messaging.outbox import outbox_models

    wait_until(
        lambda: (
            not any(
                m.objects.filter(published_at=None, dead_at=None).exists()
                for m in outbox_models()
            )
        ),
        timeout=timeout,
        what="the relay to publish every outbox row",
    )
