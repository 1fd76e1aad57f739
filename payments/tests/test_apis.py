"""Tests of the payments APIs: accounts and payment methods, each customer their own."""

from types import SimpleNamespace

import pytest

from payments.models import PaymentMethod
from payments.tests.factories import customer_make, method_make
from shop.tests.factories import client_for, user_create

pytestmark = pytest.mark.django_db


@pytest.fixture
def world():
    ann, ann_card = customer_make(username="ann", balance="500.00")
    ann_spare = method_make(customer_id=ann.pk)
    bob, bob_card = customer_make(username="bob", balance="20.00")
    staff = user_create(username="ops", is_staff=True)
    return SimpleNamespace(
        ann=ann,
        ann_card=ann_card,
        ann_spare=ann_spare,
        bob=bob,
        bob_card=bob_card,
        staff=staff,
    )


# ACCOUNTS ----------------------------------------------------------------------------


def test_a_customer_reads_their_account(world):
    response = client_for(world.ann).get("/api/accounts/me/")

    assert response.status_code == 200
    assert response.json() == {
        "id": world.ann.account.pk,
        "customer_id": world.ann.pk,
        "balance": "500.00",
        "payment_methods": [
            {"id": world.ann_card.pk, "label": "card", "active": True},
            {"id": world.ann_spare.pk, "label": "spare card", "active": True},
        ],
    }


def test_a_user_without_an_account_gets_404(world):
    response = client_for(world.staff).get("/api/accounts/me/")

    assert response.status_code == 404
    assert response.json() == {"message": "You have no account.", "extra": {}}


def test_staff_read_any_account(world):
    response = client_for(world.staff).get(f"/api/accounts/{world.bob.account.pk}/")

    assert response.status_code == 200
    assert response.json()["balance"] == "20.00"
    assert response.json()["customer_id"] == world.bob.pk


def test_a_customer_reads_their_own_account_by_id(world):
    response = client_for(world.ann).get(f"/api/accounts/{world.ann.account.pk}/")

    assert response.status_code == 200
    assert response.json()["customer_id"] == world.ann.pk


def test_another_customers_account_is_404_as_if_there_were_none(world):
    response = client_for(world.ann).get(f"/api/accounts/{world.bob.account.pk}/")

    assert response.status_code == 404
    assert response.json() == {"message": "Account not found.", "extra": {}}


def test_staff_get_404_for_no_account(world):
    assert client_for(world.staff).get("/api/accounts/999999/").status_code == 404


def test_accounts_need_authentication(world):
    client = client_for(None)

    assert client.get("/api/accounts/me/").status_code == 401
    assert client.get(f"/api/accounts/{world.ann.account.pk}/").status_code == 401


# PAYMENT METHODS ---------------------------------------------------------------------


def test_a_customer_lists_only_their_methods(world):
    response = client_for(world.bob).get("/api/payment-methods/")

    assert response.status_code == 200
    assert response.json() == [
        {"id": world.bob_card.pk, "label": "card", "active": True}
    ]


def test_a_customer_deactivates_their_method(world):
    url = f"/api/payment-methods/{world.ann_card.pk}/deactivate/"

    first = client_for(world.ann).post(url)
    again = client_for(world.ann).post(url)

    assert first.status_code == again.status_code == 200
    assert (
        first.json()
        == again.json()
        == {
            "id": world.ann_card.pk,
            "label": "card",
            "active": False,
        }
    )
    assert not PaymentMethod.objects.get(pk=world.ann_card.pk).active
    assert PaymentMethod.objects.get(pk=world.ann_spare.pk).active


@pytest.mark.parametrize("who", ["customer", "staff"])
def test_nobody_deactivates_someone_elses_method(world, who):
    user = world.ann if who == "customer" else world.staff

    response = client_for(user).post(
        f"/api/payment-methods/{world.bob_card.pk}/deactivate/"
    )

    assert response.status_code == 404
    assert response.json() == {"message": "Payment method not found.", "extra": {}}
    assert PaymentMethod.objects.get(pk=world.bob_card.pk).active


@pytest.mark.parametrize("method_id", [999999, 10**30])
def test_deactivating_no_method_is_404(world, method_id):
    response = client_for(world.ann).post(
        f"/api/payment-methods/{method_id}/deactivate/"
    )

    assert response.status_code == 404


def test_payment_methods_need_authentication(world):
    client = client_for(None)

    assert client.get("/api/payment-methods/").status_code == 401
    response = client.post(f"/api/payment-methods/{world.ann_card.pk}/deactivate/")
    assert response.status_code == 401
    assert PaymentMethod.objects.get(pk=world.ann_card.pk).active
