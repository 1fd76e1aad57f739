"""Every admin search box and list filter takes any input without a 500: numbers no
column holds, Unicode digits, LIKE wildcards, quotes, 10 kB, NUL, broken UTF-8."""

from decimal import Decimal

import pytest
from django.contrib import admin
from django.contrib.admin import SimpleListFilter
from django.db import models
from django.test import RequestFactory
from django.urls import reverse

from inventory.services import product_create
from orders.services import order_place
from orders.tests.factories import order_ship
from payments.services import account_create, payment_method_create
from sagas.models import Saga, SagaEvent

pytestmark = pytest.mark.django_db

GARBAGE = [
    "99999999999999999999999",
    "9" * 5000,  # more digits than int() parses
    "²",
    "\u0663",  # an Arabic-Indic 3: a digit to isdigit(), not to int() in a bigint
    "-1",
    "%",
    "' OR 1=1 --",
    "x" * 10_000,
    "a\x00b",
    "🍵",
]
# As sent on the wire: bytes no UTF-8 decoder accepts as they are.
RAW_QUERIES = ["%ED%A0%80", "%FF%FE", "%C0%80", "%00"]


def _label(model) -> str:
    return model._meta.label


def _filter_parameters(model, model_admin) -> list[str]:
    """The query parameters the admin's list filters read (checked against Django's
    own list by test_every_list_filter_parameter_is_tested)."""
    parameters = []
    for entry in model_admin.list_filter:
        if isinstance(entry, type) and issubclass(entry, SimpleListFilter):
            parameters.append(entry.parameter_name)
            continue
        name = entry[0] if isinstance(entry, tuple) else entry
        field = model._meta.get_field(name)
        # As Django picks a filter for the field (django.contrib.admin.filters).
        if isinstance(field, models.DateField):  # "today", "past 7 days", ...
            parameters += [f"{name}__gte", f"{name}__lt"]
        elif field.is_relation:
            parameters.append(f"{name}__{field.target_field.name}__exact")
        elif field.choices or isinstance(field, models.BooleanField):
            parameters.append(f"{name}__exact")
        else:  # every value in the column
            parameters.append(name)
        parameters.append(f"{name}__isnull")
    return parameters


REGISTRY = sorted(admin.site._registry.items(), key=lambda item: _label(item[0]))
SEARCHES = [
    pytest.param(model, id=_label(model))
    for model, model_admin in REGISTRY
    if model_admin.search_fields
]
FILTERS = [
    pytest.param(model, parameter, id=f"{_label(model)}-{parameter}")
    for model, model_admin in REGISTRY
    for parameter in _filter_parameters(model, model_admin)
]


@pytest.fixture
def rows(django_user_model):
    """A row in every table an admin lists: an order shipped through the services."""
    customer = django_user_model.objects.create_user("carol")
    account_create(customer=customer, balance=Decimal("100.00"))
    method = payment_method_create(customer_id=customer.pk, label="card")
    product_create(sku="MUG", name="Mug", price=Decimal("8.50"), units=50)
    order, _ = order_place(
        customer=customer,
        items=[{"sku": "MUG", "quantity": 1}],
        payment_method_id=method.pk,
        ship_to="US",
        idempotency_key="key-1",
    )
    order_ship(order)


def changelist(model) -> str:
    return reverse(f"admin:{model._meta.app_label}_{model._meta.model_name}_changelist")


def has_nul(value: str) -> bool:
    return "\x00" in value or "%00" in value


def assert_answered(response, what: str, *, allowed: tuple[int, ...]) -> None:
    """A NUL is refused (400: PostgreSQL cannot compare text holding one); any other
    input gets one of ``allowed``, and a 200 is the list itself."""
    expected = (400,) if has_nul(what) else allowed
    assert response.status_code in expected, (what, response.status_code)
    if response.status_code == 200:
        assert response.context["cl"] is not None, what


@pytest.mark.parametrize("model", SEARCHES)
def test_a_search_box_answers_any_term(admin_client, rows, model):
    url = changelist(model)
    for term in GARBAGE:
        response = admin_client.get(url, {"q": term})
        assert_answered(response, term, allowed=(200,))  # the list, matching or not
    for raw in RAW_QUERIES:
        response = admin_client.generic("GET", url, QUERY_STRING=f"q={raw}")
        assert_answered(response, raw, allowed=(200,))


@pytest.mark.parametrize(("model", "parameter"), FILTERS)
def test_a_list_filter_answers_any_value(admin_client, rows, model, parameter):
    url = changelist(model)
    # 302: Django drops a value its filter cannot use and redirects with ?e=1.
    for value in GARBAGE:
        response = admin_client.get(url, {parameter: value})
        assert_answered(response, f"{parameter}={value}", allowed=(200, 302))
    for raw in RAW_QUERIES:
        response = admin_client.generic("GET", url, QUERY_STRING=f"{parameter}={raw}")
        assert_answered(response, f"{parameter}={raw}", allowed=(200, 302))


@pytest.mark.parametrize("model", [pytest.param(m, id=_label(m)) for m, _ in REGISTRY])
def test_the_changelists_own_parameters_answer_any_value(admin_client, rows, model):
    url = changelist(model)
    for parameter in ("o", "p", "all", "e", "_to_field"):
        for value in ("99999999999999999999999", "²", "-1", "x" * 10_000):
            response = admin_client.get(url, {parameter: value})
            # 400: Django refuses a _to_field it does not allow.
            allowed = (200, 302, 400, 404)
            assert_answered(response, f"{parameter}={value}", allowed=allowed)


def test_every_list_filter_parameter_is_tested(admin_user):
    request = RequestFactory().get("/")
    request.user = admin_user
    for model, model_admin in REGISTRY:
        changelist = model_admin.get_changelist_instance(request)
        expected = {
            parameter
            for spec in changelist.filter_specs
            for parameter in spec.expected_parameters()
        }
        # A filter with nothing to offer (no groups yet) is left out of filter_specs.
        assert expected <= set(_filter_parameters(model, model_admin)), _label(model)


def test_a_unicode_digit_searches_sagas_as_a_key_not_an_id(admin_client, rows):
    saga = Saga.objects.get()
    found = admin_client.get(changelist(Saga), {"q": str(saga.pk)})
    assert [s.pk for s in found.context["cl"].result_list] == [saga.pk]
    for digit in ("²", "\u0663", str(2**63)):
        listed = admin_client.get(changelist(Saga), {"q": digit})
        assert list(listed.context["cl"].result_list) == []


def test_a_nul_in_a_filter_is_a_plain_400_naming_it(admin_client, rows):
    response = admin_client.get(changelist(Saga), {"status__exact": "\x00"})

    assert response.status_code == 400
    assert response["Content-Type"].startswith("text/plain")
    assert response.content.decode().startswith("status__exact: Null characters")


def test_a_nul_in_an_admin_form_is_a_400_and_acts_on_nothing(admin_client, rows):
    saga = Saga.objects.get()
    response = admin_client.post(
        changelist(Saga),
        {"action": "cancel_sagas", "_selected_action": [f"{saga.pk}\x00"]},
    )

    assert response.status_code == 400
    assert not SagaEvent.objects.exists()
