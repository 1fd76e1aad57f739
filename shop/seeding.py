"""Demo data: products (one scarce), customers with money and tokens, a staff user;
and the load test's customers, on the same products.

Idempotent: what exists is kept (and reported as it is now), what is missing is created.
With ``refill``, stock and balances below their demo levels are brought back up to them
through the apps' services, so every demo run starts from the same place.
"""

import hashlib
import hmac
from decimal import Decimal

from django.conf import settings
from django.contrib.auth.models import User
from django.db import transaction

from inventory import selectors as inventory_selectors
from inventory.services import product_create, product_restock
from payments import selectors as payments_selectors
from payments.services import (
    account_create,
    account_credit,
    payment_method_create,
    payment_method_deactivate,
)
from shop.services import token_obtain

SCARCE_SKU, SCARCE_UNITS = "KYUSU", 20  # scarce on purpose, so contention shows
PRODUCTS = [
    # sku, name, price, units
    ("SENCHA", "Sencha green tea, 100 g", "12.50", 1000),
    ("MATCHA", "Ceremonial matcha, 30 g", "28.00", 1000),
    ("HOJICHA", "Roasted hojicha, 100 g", "9.80", 1000),
    (SCARCE_SKU, "Tokoname kyusu teapot (limited)", "45.00", SCARCE_UNITS),
]
CUSTOMERS = [
    # username, balance
    ("alice", "10000.00"),
    ("bob", "10000.00"),
    ("carol", "10000.00"),
    ("dave", "10000.00"),
    ("erin", "10000.00"),
    ("frank", "10000.00"),  # the demo deactivates his card while an order is pending
    ("pat", "3.00"),  # cannot afford anything
]
STAFF = "operator"
# Load-test customers: enough money for any stage, however many orders each places;
# and those who cannot pay for anything.
LOAD_BALANCE, POOR_BALANCE = "1000000.00", "1.00"


@transaction.atomic
def demo_data_seed(*, refill: bool = False) -> dict:
    products = [_product(*row, refill=refill) for row in PRODUCTS]
    customers = [
        _customer(name, Decimal(balance), refill=refill) for name, balance in CUSTOMERS
    ]
    return {"staff": _staff(), "customers": customers, "products": products}


@transaction.atomic
def loadtest_data_seed(*, customers: int, units: int) -> dict:
    """The load test's customers and the demo's products, stock and money refilled.

    ``customers`` can pay, each with a usable payment method and a deactivated one; a
    tenth as many (at least one) cannot. The regular products are refilled to
    ``units`` (at least their demo level), so a stage of that many orders never runs
    out of them.
    """
    products = []
    for sku, name, price, stock in PRODUCTS:
        # The scarce product stays scarce: the load test orders more than it has.
        level = stock if sku == SCARCE_SKU else max(stock, units)
        products.append(_product(sku, name, price, level, refill=True))
    payers = []
    for n in range(1, customers + 1):
        payer = _customer(f"load{n:04d}", Decimal(LOAD_BALANCE), refill=True)
        payers.append(payer | {"retired_method_id": _retired_method(payer["id"])})
    poor = [
        _customer(f"loadpoor{n:03d}", Decimal(POOR_BALANCE), refill=True)
        for n in range(1, max(1, customers // 10) + 1)
    ]
    return {"customers": payers, "poor": poor, "products": products}


def _retired_method(customer_id: int) -> int:
    """A payment method of the customer's that is no longer active."""
    methods = payments_selectors.payment_methods_of(customer_id=customer_id)
    retired = [m for m in methods if not m.active]
    if retired:
        return retired[0].pk
    method = payment_method_create(customer_id=customer_id, label="expired card")
    payment_method_deactivate(customer_id=customer_id, method_id=method.pk)
    return method.pk


def _product(sku: str, name: str, price: str, units: int, *, refill: bool) -> dict:
    product = inventory_selectors.product_get(sku=sku) or product_create(
        sku=sku, name=name, price=Decimal(price), units=units
    )
    if refill and product.available < units:
        product = product_restock(sku=sku, units=units - product.available)
    return {
        "sku": product.sku,
        "price": str(product.price),
        "available": product.available,
    }


def _customer(username: str, balance: Decimal, *, refill: bool) -> dict:
    user, _ = User.objects.get_or_create(username=username)
    account = payments_selectors.account_of(customer_id=user.pk) or account_create(
        customer=user, balance=balance
    )
    if refill and account.balance < balance:
        account = account_credit(customer_id=user.pk, amount=balance - account.balance)
    methods = [
        m
        for m in payments_selectors.payment_methods_of(customer_id=user.pk)
        if m.active
    ]
    method = (
        methods[0]
        if methods
        else payment_method_create(customer_id=user.pk, label="card")
    )
    return {
        "id": user.pk,
        "username": username,
        "token": token_obtain(user=user),
        "balance": str(account.balance),
        "payment_method_id": method.pk,
    }


def _staff() -> dict:
    user, _ = User.objects.get_or_create(
        username=STAFF, defaults={"is_staff": True, "is_superuser": True}
    )
    # Derived from the local secret key: stable across runs, never in the repository.
    password = hmac.new(settings.SECRET_KEY.encode(), b"demo-staff", hashlib.sha256)
    password = password.hexdigest()[:20]
    if not user.check_password(password):
        user.set_password(password)
        user.save(update_fields=["password"])
    token = token_obtain(user=user)
    return {"username": STAFF, "password": password, "token": token}
