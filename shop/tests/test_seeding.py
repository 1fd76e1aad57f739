"""The demo data: its shape, its idempotency, and refilling stock and balances."""

import json
from decimal import Decimal

import pytest
from django.core.management import call_command

from inventory.models import Product
from payments.models import Account, PaymentMethod
from shop.seeding import (
    PRODUCTS,
    SCARCE_SKU,
    SCARCE_UNITS,
    demo_data_seed,
    loadtest_data_seed,
)

pytestmark = pytest.mark.django_db


def test_seed_demo_prints_what_a_client_needs_as_json(capsys):
    call_command("seed_demo", "--json")
    data = json.loads(capsys.readouterr().out)

    assert set(data) == {"staff", "customers", "products"}
    assert set(data["staff"]) == {"username", "password", "token"}
    assert all(
        {"id", "token", "balance", "payment_method_id"} <= set(c)
        for c in data["customers"]
    )
    scarce = next(p for p in data["products"] if p["sku"] == SCARCE_SKU)
    assert scarce["available"] <= 20


def test_seeding_twice_creates_nothing_new():
    first = demo_data_seed()
    counts = (
        Product.objects.count(),
        Account.objects.count(),
        PaymentMethod.objects.count(),
    )
    assert demo_data_seed() == first
    assert counts == (
        Product.objects.count(),
        Account.objects.count(),
        PaymentMethod.objects.count(),
    )


def test_refill_brings_stock_and_balances_back_to_their_demo_levels():
    data = demo_data_seed()
    alice = next(c for c in data["customers"] if c["username"] == "alice")
    Product.objects.filter(sku=SCARCE_SKU).update(available=3, sold=SCARCE_UNITS - 3)
    Account.objects.filter(customer_id=alice["id"]).update(balance=5, credited=5)

    refilled = demo_data_seed(refill=True)

    scarce = Product.objects.get(sku=SCARCE_SKU)
    assert (scarce.available, scarce.received) == (SCARCE_UNITS, SCARCE_UNITS + 17)
    account = Account.objects.get(customer_id=alice["id"])
    assert account.balance == Decimal("10000.00")
    refilled_alice = next(c for c in refilled["customers"] if c["username"] == "alice")
    assert refilled_alice["balance"] == "10000.00"
    assert (
        account.credited == account.balance
    )  # credited, not conjured: the books add up


def test_the_load_test_seeds_payers_with_a_retired_card_and_poor_customers():
    data = loadtest_data_seed(customers=20, units=3000)

    assert len(data["customers"]) == 20 and len(data["poor"]) == 2
    for customer in data["customers"]:
        mine = PaymentMethod.objects.filter(account__customer_id=customer["id"])
        methods = {m.pk: m.active for m in mine}
        assert methods == {
            customer["payment_method_id"]: True,
            customer["retired_method_id"]: False,
        }
    cheapest = min(Decimal(price) for _, _, price, _ in PRODUCTS)
    assert all(Decimal(c["balance"]) < cheapest for c in data["poor"])
    stock = {p["sku"]: p["available"] for p in data["products"]}
    assert stock == {"SENCHA": 3000, "MATCHA": 3000, "HOJICHA": 3000, SCARCE_SKU: 20}
    # Seeded again: nothing new, and no second retired card.
    assert loadtest_data_seed(customers=20, units=3000) == data
