"""Bad input the database would refuse is refused at the door: a 4xx in the API's
error shape naming what was wrong, nothing written, and never a 500."""

from types import SimpleNamespace

import pytest
from django.test import Client
from django.urls import Resolver404, resolve
from rest_framework.test import APIClient

from inventory.tests.factories import product_make
from orders.models import Order
from orders.tests.factories import order_make
from payments.models import PaymentMethod
from payments.tests.factories import customer_make
from shop.tests.factories import client_for, user_create
from shop.tests.rows import row_counts

pytestmark = pytest.mark.django_db

BEYOND_BIGINT = "99999999999999999999999"
MAX_BIGINT = 2**63 - 1


@pytest.fixture
def world():
    product_make(sku="TEA", price="4.50", units=100)
    ann, ann_card = customer_make(username="ann")
    order = order_make(customer=ann, payment_method_id=ann_card.pk)
    staff = user_create(username="ops", is_staff=True)
    return SimpleNamespace(ann=ann, ann_card=ann_card, order=order, staff=staff)


def assert_refused(response, status: int, field: str | None = None) -> dict:
    """A ``status`` answer in the API's error shape, naming ``field`` if given."""
    assert response.status_code == status, response.content
    assert response["Content-Type"] == "application/json", response.content
    body = response.json()
    assert set(body) == {"message", "extra"}
    assert body["message"]
    if field is not None:
        assert body["extra"]["fields"][field], body
    return body


# A TOTAL OF NOTHING ------------------------------------------------------------------


def test_an_order_whose_total_is_zero_is_400_and_writes_nothing(world):
    product_make(sku="FREE", price="0.00", units=10)
    before = row_counts()

    response = client_for(world.ann).post(
        "/api/orders/",
        {
            "items": [{"sku": "FREE", "quantity": 3}],
            "payment_method_id": world.ann_card.pk,
        },
        format="json",
    )

    body = assert_refused(response, 400, "items")
    assert body["extra"]["fields"]["items"] == [
        "The order total is 0.00; it must be more than 0."
    ]
    assert row_counts() == before


# IDS IN THE URL ----------------------------------------------------------------------

BAD_IDS = [
    pytest.param(BEYOND_BIGINT, id="beyond-bigint"),
    pytest.param(str(MAX_BIGINT + 1), id="bigint-plus-one"),
    pytest.param("9" * 5000, id="more-digits-than-int-parses"),
    pytest.param("-1", id="negative"),
    pytest.param("1.5", id="decimal"),
    pytest.param("abc", id="word"),
    pytest.param("%D9%A3", id="arabic-indic-digit"),  # int() would take it
    pytest.param("null", id="null"),
]
# (method, URL with {} for the id, who calls)
ID_URLS = [
    ("get", "/api/orders/{}/", "ann"),
    ("get", "/api/sagas/{}/", "staff"),
    ("post", "/api/sagas/{}/retry/", "staff"),
    ("post", "/api/sagas/{}/cancel/", "staff"),
    ("get", "/api/accounts/{}/", "staff"),
    ("post", "/api/payment-methods/{}/deactivate/", "ann"),
]


@pytest.mark.parametrize("bad_id", BAD_IDS)
@pytest.mark.parametrize(
    ("method", "url", "who"), ID_URLS, ids=[url for _, url, _ in ID_URLS]
)
def test_an_id_no_row_can_have_is_404_in_the_api_shape(world, method, url, who, bad_id):
    before = row_counts()
    methods = list(PaymentMethod.objects.values_list("pk", "active"))

    response = getattr(client_for(getattr(world, who)), method)(url.format(bad_id))

    assert_refused(response, 404)
    assert row_counts() == before
    assert list(PaymentMethod.objects.values_list("pk", "active")) == methods


@pytest.mark.parametrize("path_id", [str(MAX_BIGINT + 1), "9" * 20])
def test_an_id_beyond_a_bigint_never_reaches_a_view(path_id):
    with pytest.raises(Resolver404):
        resolve(f"/api/orders/{path_id}/")
    assert resolve(f"/api/orders/{MAX_BIGINT}/").kwargs == {"order_id": MAX_BIGINT}


def test_the_largest_bigint_is_an_id_that_is_simply_not_found(world):
    response = client_for(world.ann).get(f"/api/orders/{MAX_BIGINT}/")

    assert response.json() == {"message": "Order not found.", "extra": {}}


def test_a_sku_longer_than_any_product_is_404_in_the_api_shape(world):
    assert_refused(client_for(None).get(f"/api/products/{'T' * 65}/"), 404)


# PAGINATION --------------------------------------------------------------------------

BAD_PAGES = [
    pytest.param("limit", "0", id="limit-zero"),
    pytest.param("limit", "201", id="limit-over-max"),
    pytest.param("limit", BEYOND_BIGINT, id="limit-huge"),
    pytest.param("offset", str(MAX_BIGINT + 1), id="offset-beyond-bigint"),
    pytest.param("offset", "9" * 5000, id="offset-more-digits-than-int-parses"),
    *[
        pytest.param(name, value, id=f"{name}-{label}")
        for name in ("limit", "offset")
        for label, value in [
            ("blank", ""),
            ("negative", "-1"),
            ("word", "abc"),
            ("null", "null"),
            ("decimal", "1.5"),
            ("spaces", " 5 "),
            ("plus", "+5"),
            ("underscore", "1_0"),
            ("arabic-indic", "\u0663"),
            ("superscript", "\u00b2"),
        ]
    ],
]
LISTS = [
    ("/api/orders/", "ann"),
    ("/api/sagas/", "staff"),
    ("/api/products/", None),
]


@pytest.mark.parametrize(("name", "value"), BAD_PAGES)
@pytest.mark.parametrize(("url", "who"), LISTS, ids=[url for url, _ in LISTS])
def test_a_bad_page_parameter_is_400_naming_it(world, url, who, name, value):
    client = client_for(getattr(world, who) if who else None)

    response = client.get(url, {name: value})

    body = assert_refused(response, 400, name)
    assert body["extra"]["fields"][name][0].startswith("Must be an integer from")


@pytest.mark.parametrize(
    ("url", "who", "name"),
    [
        ("/api/orders/", "ann", "limit"),
        ("/api/products/", None, "offset"),
        ("/api/sagas/", "staff", "offset"),
        ("/api/sagas/", "staff", "status"),
        ("/api/sagas/", "staff", "name"),
    ],
)
def test_a_query_parameter_given_twice_is_400_naming_it(world, url, who, name):
    # Which one would count? DRF alone quietly takes the last.
    client = client_for(getattr(world, who) if who else None)
    value = {"status": "FAILED", "name": "purchase"}.get(name, "1")

    response = client.get(f"{url}?{name}={value}&{name}={value}")

    body = assert_refused(response, 400, name)
    assert body["extra"]["fields"][name] == ["Given more than once; give it once."]


def test_both_bad_page_parameters_are_named_at_once(world):
    response = client_for(world.ann).get("/api/orders/", {"limit": "x", "offset": "y"})

    assert set(assert_refused(response, 400)["extra"]["fields"]) == {"limit", "offset"}


@pytest.mark.parametrize(
    "params",
    [
        {},
        {"limit": 1, "offset": 0},
        {"limit": 200, "offset": MAX_BIGINT},
    ],
    ids=["none", "smallest", "largest"],
)
def test_page_parameters_in_range_are_taken(world, params):
    response = client_for(world.ann).get("/api/orders/", params)

    assert response.status_code == 200


# TEXT POSTGRESQL CANNOT HOLD ---------------------------------------------------------


def test_a_nul_in_a_token_is_400_not_500():
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION="Token abc\x00def")

    assert_refused(client.get("/api/orders/"), 400, "Authorization")


def test_a_nul_in_the_session_cookie_is_400_not_500():
    client = Client()
    client.cookies["sessionid"] = "abcdefghij\x00klmnop"

    assert_refused(client.get("/api/orders/"), 400, "Cookie.sessionid")


@pytest.mark.parametrize(
    "url",
    [
        "/api/sagas/?status=%00",
        "/api/sagas/?name=pur%00chase",
        "/api/products/?limit=%00",
        "/api/products/?anything=%00",
        "/api/products/?a%00=1",
    ],
)
def test_a_nul_in_a_query_parameter_is_400_naming_it(world, url):
    response = client_for(world.staff).get(url)

    body = assert_refused(response, 400)
    assert list(body["extra"]["fields"].values()) == [
        ["Null characters and lone surrogates are not allowed."]
    ]


def test_a_nul_in_the_path_matches_no_route(world):
    assert_refused(client_for(None).get("/api/products/TE%00A/"), 404)


def test_a_lone_surrogate_escape_in_a_query_is_harmless(world):
    # Django decodes a query as UTF-8 with replacement: "%ED%A0%80" never becomes
    # a surrogate, so it is just an unknown status here.
    response = client_for(world.staff).generic(
        "GET", "/api/sagas/", QUERY_STRING="status=%ED%A0%80"
    )

    assert_refused(response, 400, "status")


def test_a_nul_in_the_idempotency_key_is_400_and_writes_nothing(world):
    before = row_counts()

    response = client_for(world.ann).post(
        "/api/orders/",
        {"items": [{"sku": "TEA", "quantity": 1}], "payment_method_id": 1},
        format="json",
        HTTP_IDEMPOTENCY_KEY="key\x00",
    )

    assert_refused(response, 400, "Idempotency-Key")
    assert row_counts() == before


@pytest.mark.parametrize(
    "reason",
    [b'"why\\u0000"', b'"\\ud800"', b'"\\udfff and more"'],
    ids=["nul", "high-surrogate", "low-surrogate"],
)
def test_unstorable_text_in_a_json_body_is_400_naming_the_field(world, reason):
    events = row_counts()

    response = client_for(world.staff).generic(
        "POST",
        f"/api/sagas/{world.order.saga_id}/cancel/",
        b'{"reason": %s}' % reason,
        content_type="application/json",
    )

    assert_refused(response, 400, "reason")
    assert row_counts() == events


# TOO LONG ----------------------------------------------------------------------------


def test_a_token_far_longer_than_any_is_just_wrong():
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION="Token " + "a" * 10_000)

    assert_refused(client.get("/api/orders/"), 401)


def test_more_query_parameters_than_django_reads_is_400_in_the_api_shape(settings):
    query = "&".join(
        f"p{n}=1" for n in range(settings.DATA_UPLOAD_MAX_NUMBER_FIELDS + 1)
    )

    response = client_for(None).generic("GET", "/api/products/", QUERY_STRING=query)

    assert_refused(response, 400)


@pytest.mark.parametrize(
    ("url", "params", "field"),
    [
        ("/api/sagas/", {"name": "x" * 10_000}, "name"),
        ("/api/sagas/", {"status": "x" * 10_000}, "status"),
    ],
)
def test_an_over_long_filter_is_400_naming_it(world, url, params, field):
    assert_refused(client_for(world.staff).get(url, params), 400, field)


def test_an_over_long_order_field_is_400_and_writes_nothing(world):
    before = row_counts()

    response = client_for(world.ann).post(
        "/api/orders/",
        {
            "items": [{"sku": "T" * 10_000, "quantity": 1}],
            "payment_method_id": world.ann_card.pk,
        },
        format="json",
    )

    assert_refused(response, 400, "items[0].sku")
    assert row_counts() == before
    assert Order.objects.count() == 1
