"""Who may call what, endpoint by endpoint and caller by caller; what customers never
see of a saga; what the health check tells whom."""

from types import SimpleNamespace

import pytest
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from inventory.tests.factories import product_make
from orders.tests.factories import order_make
from payments.models import PaymentMethod
from payments.tests.factories import customer_make
from sagas.models import Saga, SagaEvent, SagaEventKind, SagaStatus, SagaStep
from shop.tests.factories import (
    CALLERS,
    client_for,
    permission_callers,
    token_client_for,
    user_create,
)
from shop.tests.rows import row_counts

pytestmark = pytest.mark.django_db

PASSWORD = "correct horse battery staple"


@pytest.fixture(autouse=True)
def fast_passwords(settings):
    # Ann's password is hashed for every case: the slow hasher would take minutes.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def world():
    product_make(sku="TEA", price="4.50", units=100)
    ann, ann_card = customer_make(username="ann")
    ann.set_password(PASSWORD)
    ann.save(update_fields=["password"])
    bob, bob_card = customer_make(username="bob")
    anns = order_make(customer=ann, payment_method_id=ann_card.pk)
    bobs = order_make(customer=bob, payment_method_id=bob_card.pk)
    return SimpleNamespace(
        ann=ann, ann_card=ann_card, bob=bob, anns_order=anns, bobs_order=bobs
    )


# Every operation of the API, as the schema names it: (endpoint, the permission that
# widens what it shows or allows, URL of one of ann's, status for each of CALLERS).
# Where no permission guards it, the one named only makes the callers: staff holding
# it get what the other staff get.
ENDPOINTS = [
    (
        "GET /api/orders/",
        "orders.view_order",
        lambda w: "/api/orders/",
        (401, 200, 200, 200, 200, 200, 200, 200),
    ),
    (
        # With ann's card: no permission lets anyone pay with someone else's (400).
        "POST /api/orders/",
        "orders.view_order",
        lambda w: "/api/orders/",
        (401, 202, 400, 400, 400, 400, 400, 400),
    ),
    (
        "GET /api/orders/{order_id}/",
        "orders.view_order",
        lambda w: f"/api/orders/{w.anns_order.pk}/",
        (401, 200, 404, 404, 404, 404, 200, 200),
    ),
    (
        "GET /api/sagas/{saga_id}/",
        "sagas.view_saga",
        lambda w: f"/api/sagas/{w.anns_order.saga_id}/",
        (401, 200, 404, 404, 404, 404, 200, 200),
    ),
    (
        "GET /api/sagas/",
        "sagas.view_saga",
        lambda w: "/api/sagas/",
        (401, 403, 403, 403, 403, 403, 200, 200),
    ),
    (
        "POST /api/sagas/{saga_id}/retry/",
        "sagas.change_saga",
        lambda w: f"/api/sagas/{w.anns_order.saga_id}/retry/",
        # 409 is past the permission check: only a FAILED saga can be retried.
        (401, 403, 403, 403, 403, 403, 409, 409),
    ),
    (
        "POST /api/sagas/{saga_id}/cancel/",
        "sagas.change_saga",
        lambda w: f"/api/sagas/{w.anns_order.saga_id}/cancel/",
        (401, 403, 403, 403, 403, 403, 202, 202),
    ),
    (
        "GET /api/products/",
        "orders.view_order",
        lambda w: "/api/products/",
        (200,) * 8,
    ),
    (
        "GET /api/products/{sku}/",
        "orders.view_order",
        lambda w: "/api/products/TEA/",
        (200,) * 8,
    ),
    (
        # Each caller's own; the users made for a test have none.
        "GET /api/accounts/me/",
        "payments.view_account",
        lambda w: "/api/accounts/me/",
        (401, 200, 200, 404, 404, 404, 404, 404),
    ),
    (
        "GET /api/accounts/{account_id}/",
        "payments.view_account",
        lambda w: f"/api/accounts/{w.ann.account.pk}/",
        (401, 200, 404, 404, 404, 404, 200, 200),
    ),
    (
        "GET /api/payment-methods/",
        "payments.view_account",
        lambda w: "/api/payment-methods/",
        (401, 200, 200, 200, 200, 200, 200, 200),
    ),
    (
        # No permission lets anyone deactivate someone else's method.
        "POST /api/payment-methods/{method_id}/deactivate/",
        "payments.view_account",
        lambda w: f"/api/payment-methods/{w.ann_card.pk}/deactivate/",
        (401, 200, 404, 404, 404, 404, 404, 404),
    ),
    (
        # Ann's username and password: whoever sends them gets her token.
        "POST /api/auth/token/",
        "orders.view_order",
        lambda w: "/api/auth/token/",
        (200,) * 8,
    ),
    (
        # Only what it tells differs (see THE HEALTH CHECK below).
        "GET /api/health/",
        "sagas.view_saga",
        lambda w: "/api/health/",
        (200,) * 8,
    ),
]
BODIES = {
    "POST /api/orders/": lambda w: {
        "items": [{"sku": "TEA", "quantity": 1}],
        "payment_method_id": w.ann_card.pk,
    },
    "POST /api/auth/token/": lambda w: {"username": "ann", "password": PASSWORD},
}
CASES = [
    pytest.param(endpoint, permission, url, caller, expected, id=f"{endpoint}-{caller}")
    for endpoint, permission, url, statuses in ENDPOINTS
    for caller, expected in zip(CALLERS, statuses, strict=True)
]


def test_the_table_has_every_operation_of_the_schema():
    schema = APIClient().get("/api/schema/", {"format": "json"}).json()

    operations = {
        f"{method.upper()} {path}"
        for path, methods in schema["paths"].items()
        for method in methods
    }
    endpoints = [endpoint for endpoint, *_ in ENDPOINTS]
    assert sorted(endpoints) == sorted(operations)  # each once, none forgotten


@pytest.mark.parametrize(("endpoint", "permission", "url", "caller", "expected"), CASES)
def test_each_caller_gets_what_the_permission_allows(
    world, endpoint, permission, url, caller, expected
):
    user = permission_callers(owner=world.ann, other=world.bob, permission=permission)[
        caller
    ]
    method = endpoint.split()[0].lower()
    body = BODIES[endpoint](world) if endpoint in BODIES else None
    before = row_counts()

    response = getattr(client_for(user), method)(url(world), body, format="json")

    assert response.status_code == expected, response.content
    if expected >= 400:
        assert set(response.json()) == {"message", "extra"}
        assert row_counts() == before


@pytest.mark.parametrize(
    ("caller", "expected"),
    [
        ("owner", {"ann"}),
        ("other customer", {"bob"}),
        ("customer granted it", set()),
        ("staff without it", set()),
        ("staff with all but it", set()),
        ("staff with it", {"ann", "bob"}),
        ("superuser", {"ann", "bob"}),
    ],
)
def test_the_order_list_has_everyones_orders_only_for_staff_with_view_order(
    world, caller, expected
):
    users = permission_callers(
        owner=world.ann, other=world.bob, permission="orders.view_order"
    )

    response = client_for(users[caller]).get("/api/orders/")

    assert response.status_code == 200
    ids = {order["id"] for order in response.json()["results"]}
    owners = {"ann": world.anns_order.pk, "bob": world.bobs_order.pk}
    assert ids == {owners[name] for name in expected}


def test_an_action_refused_for_want_of_permission_leaves_the_saga_alone(world):
    saga_id = world.anns_order.saga_id
    Saga.objects.filter(pk=saga_id).update(status=SagaStatus.FAILED)
    viewer = user_create(
        username="viewer", is_staff=True, permissions=("sagas.view_saga",)
    )

    for action in ("retry", "cancel"):
        response = client_for(viewer).post(f"/api/sagas/{saga_id}/{action}/")
        assert response.status_code == 403

    assert Saga.objects.get(pk=saga_id).status == SagaStatus.FAILED
    assert not SagaEvent.objects.filter(saga_id=saga_id).exists()
    assert PaymentMethod.objects.get(pk=world.ann_card.pk).active


# WHAT A CUSTOMER NEVER SEES ----------------------------------------------------------

SECRETS = ("TransientError", "purchase.reserve_stock", "task-1234", "ops-alice")


@pytest.fixture
def troubled_saga(world) -> Saga:
    """Ann's saga after a failure and an operator's retry: errors, a task id, an
    operator's name, all of which only staff may read."""
    saga = Saga.objects.get(pk=world.anns_order.saga_id)
    Saga.objects.filter(pk=saga.pk).update(
        error="TransientError: purchase.reserve_stock gave up"
    )
    SagaStep.objects.filter(saga=saga, index=0).update(
        error="TransientError: connection reset",
        task_id="task-1234",
        compensation_error="TransientError: purchase.reserve_stock",
    )
    SagaEvent.objects.create(
        saga=saga,
        kind=SagaEventKind.OPERATOR_RETRY,
        actor="ops-alice",
        detail="retried by ops-alice",
    )
    return saga


def test_the_owner_sees_no_errors_task_ids_context_or_operators(world, troubled_saga):
    response = client_for(world.ann).get(f"/api/sagas/{troubled_saga.pk}/")

    assert response.status_code == 200
    body = response.json()
    assert (body["error"], body["context"]) == ("", {})
    step = body["steps"][0]
    assert (step["error"], step["task_id"], step["compensation_error"]) == ("", "", "")
    assert [(e["kind"], e["actor"], e["detail"]) for e in body["events"]] == [
        ("OPERATOR_RETRY", "", "")
    ]
    assert not [secret for secret in SECRETS if secret in response.content.decode()]
    # What happened stays visible: the steps, their attempts, the kinds of event.
    assert (step["name"], step["attempts"]) == ("charge_payment", 0)


@pytest.mark.parametrize("permissions", [(), ("orders.view_order",)], ids=repr)
def test_staff_without_view_saga_read_their_own_saga_as_a_customer_does(permissions):
    product_make(sku="TEA")
    clerk, card = customer_make(
        username="clerk", is_staff=True, permissions=permissions
    )
    order = order_make(customer=clerk, payment_method_id=card.pk)
    Saga.objects.filter(pk=order.saga_id).update(error="TransientError: x")

    body = client_for(clerk).get(f"/api/sagas/{order.saga_id}/").json()

    assert (body["id"], body["error"], body["context"]) == (order.saga_id, "", {})


def test_staff_with_view_saga_see_everything(world, troubled_saga):
    reader = user_create(
        username="reader", is_staff=True, permissions=("sagas.view_saga",)
    )

    response = client_for(reader).get(f"/api/sagas/{troubled_saga.pk}/")

    body = response.json()
    assert body["error"] == "TransientError: purchase.reserve_stock gave up"
    assert body["context"]["order_id"] == world.anns_order.pk
    assert body["steps"][0]["task_id"] == "task-1234"
    assert body["steps"][0]["compensation_error"].startswith("TransientError")
    assert body["events"][0]["actor"] == "ops-alice"
    assert body["events"][0]["detail"] == "retried by ops-alice"


def test_the_schema_says_which_saga_fields_are_for_staff():
    schema = APIClient().get("/api/schema/", {"format": "json"}).json()

    saga = schema["components"]["schemas"]["SagaDetailOutput"]["properties"]
    assert "blank for everyone else" in saga["error"]["description"]
    assert "blank for everyone else" in saga["context"]["description"]


# THE HEALTH CHECK --------------------------------------------------------------------

DETAILS = {"status", "database", "broker", "faults", "sagas"}
UP_OR_DOWN = {"status", "database", "broker"}


@pytest.mark.parametrize(
    ("caller", "keys"),
    [
        ("anonymous", UP_OR_DOWN),
        ("owner", UP_OR_DOWN),
        ("customer granted it", UP_OR_DOWN),
        ("staff without it", UP_OR_DOWN),
        ("staff with it", DETAILS),
        ("superuser", DETAILS),
    ],
)
def test_the_health_check_shows_details_to_staff_with_view_saga(world, caller, keys):
    user = permission_callers(
        owner=world.ann, other=world.bob, permission="sagas.view_saga"
    )[caller]
    client = APIClient() if user is None else token_client_for(user)

    response = client.get("/api/health/")

    assert response.status_code == 200
    assert set(response.json()) == keys
    if "sagas" in keys:
        assert all(isinstance(n, int) for n in response.json()["sagas"].values())


def test_a_session_signs_staff_in_to_the_health_check_too(client):
    client.force_login(user_create(username="ops", is_staff=True))

    assert set(client.get("/api/health/").json()) == DETAILS


@pytest.mark.parametrize(
    "authorization",
    ["Token stale", "Token", "Basic b3BzOm9wcw==", "Token a b", "Bearer x"],
)
def test_credentials_that_fail_make_no_401_only_an_anonymous_answer(
    world, authorization
):
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=authorization)

    response = client.get("/api/health/")

    assert response.status_code == 200
    assert set(response.json()) == UP_OR_DOWN


def test_an_inactive_staff_users_token_counts_as_none(world):
    ops = user_create(username="ops", is_staff=True)
    token = Token.objects.create(user=ops)
    ops.is_active = False
    ops.save(update_fields=["is_active"])
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {token.key}")

    response = client.get("/api/health/")

    assert response.status_code == 200
    assert set(response.json()) == UP_OR_DOWN
