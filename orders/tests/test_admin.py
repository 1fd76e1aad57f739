"""The shop's admin pages: orders, stock and money are shown, never edited by hand."""

from decimal import Decimal

import pytest
from django.contrib.auth import get_user_model
from django.urls import reverse

from inventory.admin import ProductAdmin
from inventory.models import Product, StockReservation
from inventory.services import product_create, stock_release, stock_reserve
from orders.models import Order, OrderStatus, Shipment
from orders.services import order_cancel, order_place
from orders.tests.factories import order_charge, order_ship
from payments.models import Account, Payment, PaymentMethod
from payments.services import (
    account_create,
    payment_method_create,
    payment_method_deactivate,
    payment_refund,
)

pytestmark = pytest.mark.django_db


@pytest.fixture
def customer():
    user = get_user_model().objects.create_user("carol", password="pw")
    account_create(customer=user, balance=Decimal("100.00"))
    return user


@pytest.fixture
def method(customer):
    return payment_method_create(customer_id=customer.pk, label="card")


@pytest.fixture
def place(customer, method):
    """Place an order of one mug through the orders service."""
    product_create(sku="MUG", name="Mug", price=Decimal("8.50"), units=50)

    def place() -> Order:
        order, _ = order_place(
            customer=customer,
            items=[{"sku": "MUG", "quantity": 1}],
            payment_method_id=method.pk,
            ship_to="US",
        )
        return order

    return place


@pytest.fixture
def shipped(customer, method, place) -> Order:
    """An order whose saga steps ran up to the shipment, called as services."""
    return order_ship(place())


def _url(model, view: str, *args) -> str:
    return reverse(
        f"admin:{model._meta.app_label}_{model._meta.model_name}_{view}", args=args
    )


def _listed(response) -> list[int]:
    assert response.status_code == 200
    return sorted(row.pk for row in response.context["cl"].result_list)


@pytest.mark.parametrize(
    "model",
    [Order, Shipment, Product, StockReservation, Account, PaymentMethod, Payment],
)
def test_pages_render_for_staff(admin_client, shipped, model):
    row = model.objects.order_by("pk").first()

    assert _listed(admin_client.get(_url(model, "changelist"))) == [row.pk]
    assert admin_client.get(_url(model, "change", row.pk)).status_code == 200


@pytest.mark.parametrize(
    "model", [Order, Shipment, StockReservation, Account, PaymentMethod, Payment]
)
def test_shop_rows_are_read_only(admin_client, shipped, model):
    row = model.objects.order_by("pk").first()

    assert admin_client.get(_url(model, "add")).status_code == 403
    assert admin_client.post(_url(model, "change", row.pk), {}).status_code == 403
    assert (
        admin_client.post(_url(model, "delete", row.pk), {"post": "yes"}).status_code
        == 403
    )


def test_order_page_shows_lines_shipment_and_saga_link(admin_client, shipped):
    html = admin_client.get(_url(Order, "change", shipped.pk)).content.decode()

    assert "<p>MUG</p>" in html
    assert f"SG{shipped.pk:010d}" in html
    saga = reverse("admin:sagas_saga_change", args=[shipped.saga_id])
    assert f'<a href="{saga}">saga {shipped.saga_id}</a>' in html
    changelist = admin_client.get(_url(Order, "changelist")).content.decode()
    assert f'href="{saga}"' in changelist


def test_order_status_filter(admin_client, place):
    pending, cancelled = place(), place()
    order_cancel(order_id=cancelled.pk, reason="test")

    changelist = _url(Order, "changelist")
    assert _listed(admin_client.get(changelist, {"status__exact": "CANCELLED"})) == [
        cancelled.pk
    ]
    assert _listed(admin_client.get(changelist, {"status__exact": "PENDING"})) == [
        pending.pk
    ]
    assert Order.objects.get(pk=cancelled.pk).status == OrderStatus.CANCELLED


def test_reservation_and_payment_status_filters(admin_client, place):
    kept, undone = order_charge(place()), order_charge(place())
    stock_release(order_ref=undone.pk)
    payment_refund(order_ref=undone.pk)

    reservations = _url(StockReservation, "changelist")
    held = admin_client.get(reservations, {"status__exact": "HELD"})
    assert [r.order_ref for r in held.context["cl"].result_list] == [kept.pk]
    payments = _url(Payment, "changelist")
    refunded = admin_client.get(payments, {"status__exact": "REFUNDED"})
    assert [p.order_ref for p in refunded.context["cl"].result_list] == [undone.pk]


def test_payment_method_active_filter(admin_client, customer, method):
    old = payment_method_create(customer_id=customer.pk, label="old card")
    payment_method_deactivate(customer_id=customer.pk, method_id=old.pk)

    changelist = _url(PaymentMethod, "changelist")
    assert _listed(admin_client.get(changelist, {"active__exact": "0"})) == [old.pk]
    assert _listed(admin_client.get(changelist, {"active__exact": "1"})) == [method.pk]


def test_product_search(admin_client, place):
    product_create(sku="TEA", name="Green tea", price=Decimal("4.00"), units=5)

    changelist = _url(Product, "changelist")
    found = admin_client.get(changelist, {"q": "green"}).context["cl"].result_list
    assert [p.sku for p in found] == ["TEA"]


def test_product_edit_changes_name_and_price_only(admin_client, place, monkeypatch):
    product = Product.objects.get(sku="MUG")
    load = ProductAdmin.get_object

    def load_then_reserve(self, request, object_id, from_field=None):
        # A saga step reserves stock after the admin read the row, before it saves.
        loaded = load(self, request, object_id, from_field)
        if request.method == "POST":
            stock_reserve(order_ref=999, lines=[("MUG", 2)])
        return loaded

    monkeypatch.setattr(ProductAdmin, "get_object", load_then_reserve)

    response = admin_client.post(
        _url(Product, "change", product.pk),
        {"name": "Big mug", "price": "9.00", "sku": "CUP", "available": "0"},
    )

    assert response.status_code == 302
    product.refresh_from_db()
    assert (product.sku, product.name, product.price) == (
        "MUG",
        "Big mug",
        Decimal("9.00"),
    )
    assert (product.available, product.reserved) == (48, 2)
    assert admin_client.get(_url(Product, "add")).status_code == 403


def test_non_staff_user_is_sent_to_the_login_page(client, customer):
    client.force_login(customer)

    response = client.get(_url(Order, "changelist"))

    assert response.status_code == 302
    assert response.url.startswith(reverse("admin:login"))
