"""Tests of the orders APIs: placing an order (validation, idempotency), reading."""

import json
from types import SimpleNamespace

import pytest
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from inventory.tests.factories import product_make
from orders.models import Order, OrderStatus
from orders.models import OutboxMessage as OrdersOutbox
from orders.services import shipment_create
from orders.tests.factories import order_make
from payments.services import payment_method_deactivate
from payments.tests.factories import customer_make
from sagas.models import Saga, SagaStatus
from shop.tests.factories import client_for, user_create
from shop.tests.rows import row_counts

pytestmark = pytest.mark.django_db

URL = "/api/orders/"


@pytest.fixture
def world():
    product_make(sku="TEA", price="4.50", units=100)
    product_make(sku="MUG", price="12.00", units=5)
    ann, ann_card = customer_make(username="ann")
    bob, bob_card = customer_make(username="bob")
    staff = user_create(username="ops", is_staff=True)
    return SimpleNamespace(
        ann=ann, ann_card=ann_card, bob=bob, bob_card=bob_card, staff=staff
    )


def place(client: APIClient, body, *, key: str | None = None):
    extra = {} if key is None else {"HTTP_IDEMPOTENCY_KEY": key}
    if isinstance(body, bytes):
        return client.generic(
            "POST", URL, body, content_type="application/json", **extra
        )
    return client.post(URL, body, format="json", **extra)


def valid_body(world, **overrides) -> dict:
    return {
        "items": [{"sku": "TEA", "quantity": 2}],
        "payment_method_id": world.ann_card.pk,
        **overrides,
    }


# PLACING AN ORDER --------------------------------------------------------------------


def test_place_order_is_accepted_and_writes_the_order_and_its_saga(world):
    before = row_counts()

    response = place(
        client_for(world.ann),
        valid_body(
            world,
            items=[{"sku": "TEA", "quantity": 2}, {"sku": "MUG", "quantity": 1}],
            ship_to="US",
        ),
    )

    assert response.status_code == 202, response.json()
    body = response.json()
    assert set(body) == {"order_id", "saga_id", "status", "mode"}
    assert body["mode"] == "orchestration"  # SAGA_DEFAULT_MODE
    assert body["status"] == "PENDING"
    order = Order.objects.get(pk=body["order_id"])
    assert order.customer == world.ann
    assert order.saga_id == body["saga_id"]
    assert str(order.total) == "21.00"
    assert order.ship_to == "US"
    assert order.payment_method_id == world.ann_card.pk
    assert [(line.sku, line.quantity) for line in order.lines.all()] == [
        ("TEA", 2),
        ("MUG", 1),
    ]
    saga = Saga.objects.get(pk=body["saga_id"])
    assert (saga.name, saga.status, saga.owner_id) == (
        "purchase",
        "PENDING",
        world.ann.pk,
    )
    assert response["Location"] == f"/api/orders/{order.pk}/"
    after = row_counts()
    assert {label: after[label] - before[label] for label in after} == {
        "orders.Order": 1,
        "orders.OrderLine": 2,
        "orders.Shipment": 0,
        "sagas.Saga": 1,
        "sagas.SagaStep": 4,
        "sagas.SagaEvent": 0,
        "inventory.StockReservation": 0,
        "payments.Payment": 0,
        "sagas.OutboxMessage": 1,  # SagaStarted: the relay sends the first chain
        # OrderPlaced: no app subscribes to an orchestrated purchase's events
        "orders.OutboxMessage": 0,
        "inventory.OutboxMessage": 0,
        "payments.OutboxMessage": 0,
    }


@pytest.mark.parametrize(
    ("mode", "keep", "written"),
    [
        ("choreography", False, 1),  # it sets the purchase off: payments react
        ("orchestration", False, 0),  # nobody subscribes: not written
        ("orchestration", True, 1),  # kept as a record, already handled
    ],
)
def test_order_placed_is_written_when_someone_subscribes_or_it_is_kept(
    world, settings, mode, keep, written
):
    settings.OUTBOX_KEEP_UNSUBSCRIBED = keep
    response = place(client_for(world.ann), valid_body(world, mode=mode))

    assert response.status_code == 202, response.content
    rows = OrdersOutbox.objects.filter(topic="OrderPlaced")
    assert rows.count() == written
    assert all((row.published_at is None) == (mode == "choreography") for row in rows)


@pytest.mark.parametrize("mode", ["orchestration", "choreography", "tcc"])
def test_the_order_says_how_its_purchase_runs(world, mode):
    response = place(client_for(world.ann), valid_body(world, mode=mode))

    assert response.status_code == 202, response.content
    order = Order.objects.get(pk=response.json()["order_id"])
    assert (order.mode, response.json()["mode"]) == (mode, mode)
    assert Saga.objects.get(pk=order.saga_id).mode == mode


def test_the_mode_defaults_to_the_setting(world, settings):
    settings.SAGA_DEFAULT_MODE = "tcc"
    response = place(client_for(world.ann), valid_body(world))
    assert response.json()["mode"] == "tcc"


def test_ship_to_defaults_to_japan(world):
    response = place(client_for(world.ann), valid_body(world))

    assert response.status_code == 202
    assert Order.objects.get(pk=response.json()["order_id"]).ship_to == "JP"


@pytest.mark.parametrize(
    "overrides",
    [
        pytest.param({"items": [{"sku": "MUG", "quantity": 6}]}, id="too-little-stock"),
        pytest.param(
            {"items": [{"sku": "MUG", "quantity": 1000}]},
            id="more-than-stock-or-balance",
        ),
        pytest.param({"ship_to": "BR"}, id="destination-not-served"),
    ],
)
def test_what_only_the_saga_can_refuse_is_accepted(world, overrides):
    # Stock, balance and the carrier are the saga's business: it cancels the order.
    response = place(client_for(world.ann), valid_body(world, **overrides))

    assert response.status_code == 202, response.json()
    assert Order.objects.filter(pk=response.json()["order_id"]).exists()


def test_a_token_authenticates(world):
    token = Token.objects.create(user=world.ann)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {token.key}")

    response = place(client, valid_body(world))

    assert response.status_code == 202
    assert Order.objects.get().customer == world.ann


@pytest.mark.parametrize("authorization", [None, "Token not-a-token"])
def test_anonymous_or_bad_token_is_401_and_writes_nothing(world, authorization):
    client = APIClient()
    if authorization:
        client.credentials(HTTP_AUTHORIZATION=authorization)
    before = row_counts()

    response = place(client, valid_body(world))

    assert response.status_code == 401
    assert response["WWW-Authenticate"] == "Token"
    assert set(response.json()) == {"message", "extra"}
    assert row_counts() == before


# BAD INPUT ---------------------------------------------------------------------------

SURROGATE = b'"\\ud800"'  # valid JSON, but no PostgreSQL text can hold it

# (id, body: a function of the world giving a JSON value or raw bytes, field path)
BAD_FIELDS = [
    # the shape of the body
    ("empty-body", lambda w: b"", "items"),
    ("empty-object", lambda w: {}, "payment_method_id"),
    ("top-level-array", lambda w: [valid_body(w)], "non_field_errors"),
    ("top-level-number", lambda w: b"42", "non_field_errors"),
    ("top-level-string", lambda w: b'"order"', "non_field_errors"),
    ("top-level-null", lambda w: b"null", "non_field_errors"),
    ("unknown-field", lambda w: valid_body(w, coupon="FREE"), "coupon"),
    ("unknown-nul-field", lambda w: valid_body(w, **{"a\x00": 1}), "a\x00"),
    (
        "unknown-surrogate-field",  # echoed back in the error: must still encode
        lambda w: b'{%s: 1, "items": [], "payment_method_id": 1}' % SURROGATE,
        "\ud800",
    ),
    # items
    ("items-missing", lambda w: {"payment_method_id": w.ann_card.pk}, "items"),
    ("items-null", lambda w: valid_body(w, items=None), "items"),
    (
        "items-dict",
        lambda w: valid_body(w, items={"sku": "TEA", "quantity": 1}),
        "items",
    ),
    ("items-string", lambda w: valid_body(w, items="TEA"), "items"),
    ("items-number", lambda w: valid_body(w, items=3), "items"),
    ("items-empty", lambda w: valid_body(w, items=[]), "items"),
    (
        "items-too-many",
        lambda w: valid_body(
            w, items=[{"sku": f"S{n}", "quantity": 1} for n in range(51)]
        ),
        "items",
    ),
    ("item-null", lambda w: valid_body(w, items=[None]), "items[0]"),
    ("item-string", lambda w: valid_body(w, items=["TEA"]), "items[0]"),
    ("item-list", lambda w: valid_body(w, items=[["TEA", 2]]), "items[0]"),
    (
        "item-unknown-field",
        lambda w: valid_body(w, items=[{"sku": "TEA", "quantity": 1, "colour": "red"}]),
        "items[0].colour",
    ),
    (
        "second-item-bad",
        lambda w: valid_body(
            w, items=[{"sku": "TEA", "quantity": 1}, {"sku": "MUG", "quantity": 0}]
        ),
        "items[1].quantity",
    ),
    # quantity
    (
        "quantity-missing",
        lambda w: valid_body(w, items=[{"sku": "TEA"}]),
        "items[0].quantity",
    ),
    *[
        (
            f"quantity-{name}",
            lambda w, value=value: valid_body(
                w, items=[{"sku": "TEA", "quantity": value}]
            ),
            "items[0].quantity",
        )
        for name, value in [
            ("string", "2"),
            ("float", 2.5),
            ("integral-float", 2.0),
            ("true", True),
            ("false", False),
            ("null", None),
            ("zero", 0),
            ("negative", -1),
            ("over-1000", 1001),
            ("over-bigint", 2**70),
            ("list", [2]),
            ("object", {"n": 2}),
        ]
    ],
    (
        "quantity-exponent",
        lambda w: (
            b'{"items": [{"sku": "TEA", "quantity": 1e400}], "payment_method_id": %d}'
            % w.ann_card.pk
        ),
        "items[0].quantity",
    ),
    # sku
    ("sku-missing", lambda w: valid_body(w, items=[{"quantity": 1}]), "items[0].sku"),
    *[
        (
            f"sku-{name}",
            lambda w, value=value: valid_body(w, items=[{"sku": value, "quantity": 1}]),
            "items[0].sku",
        )
        for name, value in [
            ("empty", ""),
            ("number", 12),
            ("null", None),
            ("list", ["TEA"]),
            ("too-long", "T" * 65),
            ("nul", "TE\x00A"),
            ("unknown", "COFFEE"),
        ]
    ],
    (
        "sku-lone-surrogate",
        lambda w: (
            b'{"items": [{"sku": %s, "quantity": 1}], "payment_method_id": %d}'
            % (SURROGATE, w.ann_card.pk)
        ),
        "items[0].sku",
    ),
    (
        "second-sku-unknown",
        lambda w: valid_body(
            w, items=[{"sku": "TEA", "quantity": 1}, {"sku": "COFFEE", "quantity": 1}]
        ),
        "items[1].sku",
    ),
    (
        "duplicate-sku",
        lambda w: valid_body(
            w, items=[{"sku": "TEA", "quantity": 1}, {"sku": "TEA", "quantity": 2}]
        ),
        "items[1].sku",
    ),
    # payment method
    (
        "payment-method-missing",
        lambda w: {"items": [{"sku": "TEA", "quantity": 1}]},
        "payment_method_id",
    ),
    *[
        (
            f"payment-method-{name}",
            lambda w, value=value: valid_body(w, payment_method_id=value),
            "payment_method_id",
        )
        for name, value in [
            ("string", "1"),
            ("float", 1.0),
            ("true", True),
            ("null", None),
            ("zero", 0),
            ("negative", -5),
            ("2**31", 2**31),
            ("over-bigint", 2**80),
            ("unknown", 2**31 - 1),
        ]
    ],
    (
        "payment-method-huge",
        lambda w: (
            b'{"items": [{"sku": "TEA", "quantity": 1}], "payment_method_id": 1%s}'
            % (b"0" * 5000)
        ),
        None,  # more digits than Python parses: no field to blame
    ),
    (
        "someone-elses-method",
        lambda w: valid_body(w, payment_method_id=w.bob_card.pk),
        "payment_method_id",
    ),
    # ship_to
    *[
        (
            f"ship-to-{name}",
            lambda w, value=value: valid_body(w, ship_to=value),
            "ship_to",
        )
        for name, value in [
            ("lowercase", "jp"),
            ("three-letters", "JPN"),
            ("empty", ""),
            ("newline", "JP\n"),
            ("number", 81),
            ("null", None),
            ("nul", "J\x00"),
        ]
    ],
    # mode
    *[
        (f"mode-{name}", lambda w, value=value: valid_body(w, mode=value), "mode")
        for name, value in [
            ("unknown", "saga"),
            ("capitalised", "TCC"),
            ("empty", ""),
            ("number", 1),
            ("null", None),
            ("list", ["tcc"]),
        ]
    ],
]


@pytest.mark.parametrize(
    ("make_body", "field"),
    [pytest.param(make, field, id=name) for name, make, field in BAD_FIELDS],
)
def test_bad_input_is_400_naming_the_field_and_writes_nothing(world, make_body, field):
    before = row_counts()

    response = place(client_for(world.ann), make_body(world))

    assert response.status_code == 400, response.content
    body = response.json()
    assert body["message"]
    if field is not None:
        assert field in body["extra"]["fields"], body
        assert all(body["extra"]["fields"][field])
    assert row_counts() == before


def test_an_inactive_payment_method_is_400(world):
    payment_method_deactivate(customer_id=world.ann.pk, method_id=world.ann_card.pk)
    before = row_counts()

    response = place(client_for(world.ann), valid_body(world))

    assert response.status_code == 400
    assert response.json()["extra"]["fields"]["payment_method_id"] == [
        "This payment method is inactive."
    ]
    assert row_counts() == before


def test_a_total_too_large_to_store_is_400_not_500(world):
    product_make(sku="GOLD", price="9999999999.99", units=10)
    before = row_counts()

    response = place(
        client_for(world.ann),
        valid_body(world, items=[{"sku": "GOLD", "quantity": 2}]),
    )

    assert response.status_code == 400
    assert response.json()["extra"]["fields"]["items"] == [
        "The order total 19999999999.98 exceeds 9999999999.99."
    ]
    assert row_counts() == before


def test_every_bad_field_is_reported_at_once(world):
    response = place(
        client_for(world.ann),
        {
            "items": [{"sku": "", "quantity": "1", "x": 1}],
            "payment_method_id": "1",
            "ship_to": "jp",
            "y": 2,
        },
    )

    assert response.status_code == 400
    assert set(response.json()["extra"]["fields"]) == {
        "items[0].sku",
        "items[0].quantity",
        "items[0].x",
        "payment_method_id",
        "ship_to",
        "y",
    }


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(b'{"items": [', id="truncated"),
        pytest.param(b'{"items": [], }', id="trailing-comma"),
        pytest.param(b'{"payment_method_id": NaN}', id="nan"),
        pytest.param(b'{"payment_method_id": Infinity}', id="infinity"),
        pytest.param(b'{"items": "\xff\xfe"}', id="not-utf8"),
        pytest.param('{"items": []}'.encode("utf-16"), id="utf16"),
        pytest.param(b"\xef\xbb\xbf{}", id="utf8-bom"),
        pytest.param(b"[" * 60_000, id="nested-too-deep"),
        pytest.param(b'{"a": 1} {"b": 2}', id="two-documents"),
    ],
)
def test_malformed_json_is_400_and_writes_nothing(world, body):
    before = row_counts()

    response = place(client_for(world.ann), body)

    assert response.status_code == 400, response.content
    assert response.json()["message"]
    assert row_counts() == before


def test_a_body_over_the_upload_limit_is_400_not_500(world, settings):
    padding = "x" * (settings.DATA_UPLOAD_MAX_MEMORY_SIZE + 1)
    body = json.dumps(valid_body(world, ship_to=padding)).encode()
    before = row_counts()

    response = place(client_for(world.ann), body)

    assert response.status_code == 400
    assert response.json() == {
        "message": "The request body is larger than "
        f"{settings.DATA_UPLOAD_MAX_MEMORY_SIZE} bytes.",
        "extra": {},
    }
    assert row_counts() == before


def test_the_upload_limit_is_read_per_request(world, settings):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 10
    response = place(client_for(world.ann), valid_body(world))
    assert response.status_code == 400

    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 64 * 1024
    assert place(client_for(world.ann), valid_body(world)).status_code == 202


@pytest.mark.parametrize(
    "content_type",
    ["text/plain", "application/x-www-form-urlencoded", "multipart/form-data; b=x"],
)
def test_a_body_that_is_not_json_is_415(world, content_type):
    before = row_counts()

    response = client_for(world.ann).generic(
        "POST", URL, json.dumps(valid_body(world)), content_type=content_type
    )

    assert response.status_code == 415
    assert set(response.json()) == {"message", "extra"}
    assert row_counts() == before


WEIRD = [None, True, 1.5, -1, 2**64, "", "x" * 100, "\x00", [], {}, [None], {"a": None}]


@pytest.mark.parametrize("weird", WEIRD, ids=repr)
@pytest.mark.parametrize(
    "slot", ["items", "item", "sku", "quantity", "payment_method_id", "ship_to", "mode"]
)
def test_no_odd_value_anywhere_gets_past_validation(world, slot, weird):
    body = valid_body(world)
    if slot == "items":
        body["items"] = weird
    elif slot == "item":
        body["items"] = [weird]
    elif slot in ("sku", "quantity"):
        body["items"][0][slot] = weird
    else:
        body[slot] = weird
    before = row_counts()

    response = place(client_for(world.ann), body)

    assert response.status_code == 400, response.content
    assert row_counts() == before


# IDEMPOTENCY -------------------------------------------------------------------------


def test_the_same_key_and_body_replays_the_first_order(world):
    client = client_for(world.ann)
    first = place(client, valid_body(world), key="order-1")
    counts = row_counts()

    again = place(client, valid_body(world, ship_to="JP"), key="order-1")

    assert first.status_code == again.status_code == 202
    assert again.json() == first.json()
    assert first["Idempotent-Replayed"] == "false"
    assert again["Idempotent-Replayed"] == "true"
    assert row_counts() == counts
    assert Saga.objects.count() == 1


def test_the_same_key_with_another_body_is_409(world):
    client = client_for(world.ann)
    place(client, valid_body(world), key="order-1")
    counts = row_counts()

    response = place(
        client, valid_body(world, items=[{"sku": "TEA", "quantity": 3}]), key="order-1"
    )

    assert response.status_code == 409
    assert response.json() == {
        "message": "This Idempotency-Key was already used with a different request.",
        "extra": {},
    }
    assert row_counts() == counts


def test_keys_belong_to_one_customer(world):
    ann = place(client_for(world.ann), valid_body(world), key="k")
    bob = place(
        client_for(world.bob),
        valid_body(world, payment_method_id=world.bob_card.pk),
        key="k",
    )

    assert ann.status_code == bob.status_code == 202
    assert ann.json()["order_id"] != bob.json()["order_id"]


def test_a_replay_reports_the_orders_status_now(world):
    client = client_for(world.ann)
    first = place(client, valid_body(world), key="k").json()
    Order.objects.filter(pk=first["order_id"]).update(status=OrderStatus.CONFIRMED)

    again = place(client, valid_body(world), key="k")

    assert again.status_code == 202
    assert again.json() == {**first, "status": "CONFIRMED"}


@pytest.mark.parametrize(
    "key",
    [
        pytest.param("", id="empty"),
        pytest.param("k" * 256, id="too-long"),
        pytest.param("clé", id="not-ascii"),
        pytest.param("a\tb", id="tab"),
        pytest.param("a\x7fb", id="del"),
    ],
)
def test_a_bad_idempotency_key_is_400_and_writes_nothing(world, key):
    before = row_counts()

    response = place(client_for(world.ann), valid_body(world), key=key)

    assert response.status_code == 400
    assert "Idempotency-Key" in response.json()["extra"]["fields"]
    assert row_counts() == before


def test_the_longest_key_is_accepted(world):
    response = place(client_for(world.ann), valid_body(world), key="k" * 255)

    assert response.status_code == 202
    assert Order.objects.get().idempotency_key == "k" * 255


# READING ORDERS ----------------------------------------------------------------------


def test_a_customer_reads_their_order(world):
    order = order_make(
        customer=world.ann,
        payment_method_id=world.ann_card.pk,
        items=[{"sku": "TEA", "quantity": 2}, {"sku": "MUG", "quantity": 1}],
    )

    response = client_for(world.ann).get(f"{URL}{order.pk}/")

    assert response.status_code == 200
    body = response.json()
    assert body == {
        "id": order.pk,
        "status": "PENDING",
        "mode": "orchestration",
        "total": "21.00",
        "ship_to": "JP",
        "cancel_reason": "",
        "created_at": body["created_at"],
        "lines": [
            {"sku": "TEA", "quantity": 2, "unit_price": "4.50"},
            {"sku": "MUG", "quantity": 1, "unit_price": "12.00"},
        ],
        "saga_id": order.saga_id,
        "saga_status": "PENDING",
        "shipment": None,
    }
    assert body["created_at"].startswith(str(order.created_at.date()))


def test_an_order_shows_its_sagas_status_and_its_shipment(world):
    order = order_make(customer=world.ann, payment_method_id=world.ann_card.pk)
    Saga.objects.filter(pk=order.saga_id).update(status=SagaStatus.RUNNING)
    shipment = shipment_create(order_id=order.pk)

    body = client_for(world.ann).get(f"{URL}{order.pk}/").json()

    assert body["saga_status"] == "RUNNING"
    assert body["shipment"]["tracking_code"] == shipment.tracking_code
    assert body["shipment"]["destination"] == "JP"


@pytest.mark.parametrize("order_id", ["others", "missing", "huge"])
def test_a_customer_cannot_read_another_customers_order(world, order_id):
    bobs = order_make(customer=world.bob, payment_method_id=world.bob_card.pk)
    path_id = {"others": bobs.pk, "missing": bobs.pk + 1000, "huge": 10**30}[order_id]

    response = client_for(world.ann).get(f"{URL}{path_id}/")

    assert response.status_code == 404
    # An id beyond a bigint matches no route at all.
    message = "Not found." if order_id == "huge" else "Order not found."
    assert response.json() == {"message": message, "extra": {}}


def test_staff_read_any_order(world):
    bobs = order_make(customer=world.bob, payment_method_id=world.bob_card.pk)

    response = client_for(world.staff).get(f"{URL}{bobs.pk}/")

    assert response.status_code == 200
    assert response.json()["id"] == bobs.pk


def test_anonymous_cannot_read_orders(world):
    order = order_make(customer=world.ann, payment_method_id=world.ann_card.pk)

    assert client_for(None).get(f"{URL}{order.pk}/").status_code == 401
    assert client_for(None).get(URL).status_code == 401


def test_the_list_has_the_callers_orders_newest_first(world):
    first = order_make(customer=world.ann, payment_method_id=world.ann_card.pk)
    order_make(customer=world.bob, payment_method_id=world.bob_card.pk)
    second = order_make(customer=world.ann, payment_method_id=world.ann_card.pk)

    response = client_for(world.ann).get(URL)

    assert response.status_code == 200
    body = response.json()
    assert body["count"] == 2
    assert [o["id"] for o in body["results"]] == [second.pk, first.pk]
    assert body["results"][0]["saga_status"] == "PENDING"
    assert body["results"][0]["lines"] == [
        {"sku": "TEA", "quantity": 2, "unit_price": "4.50"}
    ]


def test_staff_list_everyones_orders(world):
    order_make(customer=world.ann, payment_method_id=world.ann_card.pk)
    order_make(customer=world.bob, payment_method_id=world.bob_card.pk)

    assert client_for(world.staff).get(URL).json()["count"] == 2


def test_the_list_is_paginated(world):
    orders = [
        order_make(customer=world.ann, payment_method_id=world.ann_card.pk)
        for _ in range(3)
    ]
    client = client_for(world.ann)

    page = client.get(URL, {"limit": 2, "offset": 1}).json()

    assert page["count"] == 3
    assert [o["id"] for o in page["results"]] == [orders[1].pk, orders[0].pk]
    assert page["previous"] is not None and page["next"] is None
    # Past the end, up to the largest offset PostgreSQL takes: an empty page.
    assert client.get(URL, {"offset": 2**63 - 1}).json()["results"] == []


def test_the_list_pages_by_50_by_default(world):
    for _ in range(51):
        order_make(customer=world.ann, payment_method_id=world.ann_card.pk)

    page = client_for(world.ann).get(URL).json()

    assert page["count"] == 51
    assert len(page["results"]) == 50


def test_another_method_on_the_collection_is_405(world):
    response = client_for(world.ann).put(URL, {}, format="json")

    assert response.status_code == 405
    assert set(response.json()) == {"message", "extra"}
