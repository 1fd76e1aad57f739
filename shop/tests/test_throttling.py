"""Rate limits: orders per customer, logins per address and username (the token
endpoint and the admin's login page), anonymous requests per address; the token
endpoint itself; the demo waiting out a 429."""

import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from django.contrib.auth import get_user_model
from django.core.checks import run_checks
from django.db import connection
from django.test import Client
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from inventory.tests.factories import product_make
from payments.tests.factories import customer_make
from shop.demo import Api
from shop.models import RequestCount
from shop.tests.factories import client_for
from shop.tests.rows import row_counts

pytestmark = pytest.mark.django_db

TOKEN_URL = "/api/auth/token/"
PASSWORD = "correct horse battery staple"


@pytest.fixture(autouse=True)
def away_from_a_window_edge():
    """Requests are counted in fixed windows (a minute, for the rates here): a test
    whose requests straddled the minute would see its count start again."""
    left = 60 - time.time() % 60
    if left < 3:
        time.sleep(left + 0.05)


@pytest.fixture
def shop():
    product_make(sku="TEA", price="4.50", units=100)


def order(client: APIClient, method_id: int):
    body = {"items": [{"sku": "TEA", "quantity": 1}], "payment_method_id": method_id}
    return client.post("/api/orders/", body, format="json")


def assert_throttled(response) -> int:
    """A 429 in the API's error shape whose Retry-After matches its body; the wait."""
    assert response.status_code == 429, response.content
    body = response.json()
    assert set(body) == {"message", "extra"}
    assert body["message"].startswith("Request was throttled.")
    wait = body["extra"]["retry_after"]
    assert isinstance(wait, int) and wait >= 1
    assert response["Retry-After"] == str(wait)
    return wait


# ORDERS ------------------------------------------------------------------------------


def test_orders_beyond_the_rate_are_429_and_write_nothing(settings, shop):
    settings.ORDER_RATE_LIMIT = "2/min"
    ann, card = customer_make(username="ann")
    client = client_for(ann)
    assert [order(client, card.pk).status_code for _ in range(2)] == [202, 202]
    before = row_counts()

    response = order(client, card.pk)

    assert assert_throttled(response) <= 60
    assert row_counts() == before


def test_the_order_rate_is_per_customer(settings, shop):
    settings.ORDER_RATE_LIMIT = "1/min"
    ann, ann_card = customer_make(username="ann")
    bob, bob_card = customer_make(username="bob")
    order(client_for(ann), ann_card.pk)

    assert order(client_for(ann), ann_card.pk).status_code == 429
    assert order(client_for(bob), bob_card.pk).status_code == 202


def test_a_changed_rate_applies_to_the_next_request(settings, shop):
    settings.ORDER_RATE_LIMIT = "1/min"
    ann, card = customer_make(username="ann")
    client = client_for(ann)
    order(client, card.pk)
    assert order(client, card.pk).status_code == 429

    settings.ORDER_RATE_LIMIT = "5/min"

    assert order(client, card.pk).status_code == 202


def test_reading_orders_is_not_limited_by_the_order_rate(settings, shop):
    settings.ORDER_RATE_LIMIT = "1/min"
    ann, card = customer_make(username="ann")
    client = client_for(ann)
    order(client, card.pk)

    assert [client.get("/api/orders/").status_code for _ in range(3)] == [200] * 3


def test_the_counts_are_kept_where_every_web_process_reads_them(settings, shop):
    ann, card = customer_make(username="ann")

    order(client_for(ann), card.pk)

    [count] = RequestCount.objects.filter(key=f"orders:{ann.pk}")
    assert count.count == 1


@pytest.mark.django_db(transaction=True)
def test_attempts_arriving_together_cannot_slip_through_together(settings):
    get_user_model().objects.create_user("carol", password=PASSWORD)
    settings.LOGIN_RATE_LIMIT = "5/day"  # a window that will not end mid-test

    def attempt(_):
        try:
            return login(username="carol", password="guess").status_code
        finally:
            connection.close()

    with ThreadPoolExecutor(max_workers=20) as pool:
        answers = list(pool.map(attempt, range(40)))

    assert answers.count(401) == 5  # refused credentials, within the rate
    assert answers.count(429) == 35


# THE TOKEN ENDPOINT ------------------------------------------------------------------


@pytest.fixture
def carol():
    return get_user_model().objects.create_user("carol", password=PASSWORD)


def login(client=None, **body):
    return (client or APIClient()).post(TOKEN_URL, body, format="json")


def test_a_username_and_password_get_the_users_token(carol):
    first = login(username="carol", password=PASSWORD)
    again = login(username="carol", password=PASSWORD)

    assert first.status_code == 200
    assert first.json() == again.json() == {"token": Token.objects.get(user=carol).key}
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {first.json()['token']}")
    assert client.get("/api/orders/").status_code == 200


def test_a_stale_token_sent_along_does_not_stop_a_login(carol):
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION="Token stale")

    assert login(client, username="carol", password=PASSWORD).status_code == 200


@pytest.mark.parametrize(
    "body",
    [
        pytest.param({"username": "carol", "password": "wrong"}, id="wrong-password"),
        pytest.param({"username": "nobody", "password": PASSWORD}, id="no-such-user"),
        pytest.param({"username": "inactive", "password": PASSWORD}, id="inactive"),
    ],
)
def test_bad_credentials_are_401_saying_no_more_than_that(carol, body):
    get_user_model().objects.create_user("inactive", password=PASSWORD, is_active=False)

    response = login(**body)

    assert response.status_code == 401
    # A 401 names the scheme the credentials are then sent with (RFC 9110).
    assert response["WWW-Authenticate"] == "Token"
    assert response.json() == {
        "message": "Unable to log in with the username and password.",
        "extra": {},
    }
    assert not Token.objects.exists()


@pytest.mark.parametrize(
    ("body", "fields"),
    [
        pytest.param({}, {"username", "password"}, id="empty"),
        pytest.param({"username": "carol"}, {"password"}, id="no-password"),
        pytest.param({"username": 5, "password": None}, {"username", "password"}),
        pytest.param(
            {"username": "carol", "password": PASSWORD, "otp": 1}, {"otp"}, id="extra"
        ),
        pytest.param({"username": "c\x00", "password": "x"}, {"username"}, id="nul"),
        pytest.param({"username": "c" * 151, "password": "x"}, {"username"}, id="long"),
        pytest.param({"username": "c", "password": "x" * 1025}, {"password"}),
    ],
)
def test_bad_input_is_400_naming_each_field(carol, body, fields):
    response = login(**body)

    assert response.status_code == 400
    assert set(response.json()["extra"]["fields"]) == fields


def test_a_lone_surrogate_in_the_username_is_400(carol):
    response = APIClient().generic(
        "POST",
        TOKEN_URL,
        b'{"username": "\\ud800", "password": "x"}',
        content_type="application/json",
    )

    assert set(response.json()["extra"]["fields"]) == {"username"}


# LOGIN ATTEMPTS ----------------------------------------------------------------------


def test_login_attempts_beyond_the_rate_are_429_even_with_the_right_password(
    settings, carol
):
    settings.LOGIN_RATE_LIMIT = "2/min"
    for _ in range(2):
        assert login(username="carol", password="guess").status_code == 401

    assert_throttled(login(username="carol", password=PASSWORD))
    assert not Token.objects.exists()


def test_login_attempts_are_counted_per_address_and_username(settings, carol):
    settings.LOGIN_RATE_LIMIT = "1/min"
    login(username="carol", password="guess")

    elsewhere = APIClient(REMOTE_ADDR="192.0.2.7")
    assert login(username="carol", password="guess").status_code == 429
    assert login(username="dave", password="guess").status_code == 401
    assert login(elsewhere, username="carol", password=PASSWORD).status_code == 200


def test_a_forged_forwarded_for_header_is_no_new_address(settings, carol):
    settings.LOGIN_RATE_LIMIT = "1/min"
    login(username="carol", password="guess")
    forger = APIClient(HTTP_X_FORWARDED_FOR="198.51.100.9")

    assert login(forger, username="carol", password=PASSWORD).status_code == 429


def test_admin_login_attempts_beyond_the_rate_are_429(settings, carol):
    settings.LOGIN_RATE_LIMIT = "2/min"
    client = Client()
    for _ in range(2):
        page = client.post("/admin/login/", {"username": "carol", "password": "x"})
        assert page.status_code == 200  # the form again, with its error

    response = client.post("/admin/login/", {"username": "carol", "password": "x"})

    assert response.status_code == 429
    assert response["Content-Type"].startswith("text/plain")
    assert 1 <= int(response["Retry-After"]) <= 60
    assert client.get("/admin/login/").status_code == 200  # showing the form is not


def test_admin_login_attempts_count_as_anonymous_requests_too(settings, carol):
    settings.ANON_RATE_LIMIT = "2/min"
    client = Client()
    for username in ("carol", "dave"):
        client.post("/admin/login/", {"username": username, "password": "x"})

    response = client.post("/admin/login/", {"username": "erin", "password": "x"})

    assert response.status_code == 429


def test_admin_and_api_logins_share_their_count(settings, carol):
    settings.LOGIN_RATE_LIMIT = "1/min"
    Client().post("/admin/login/", {"username": "carol", "password": "x"})

    assert login(username="carol", password=PASSWORD).status_code == 429


# ANONYMOUS REQUESTS ------------------------------------------------------------------


def test_anonymous_requests_beyond_the_rate_are_429(settings, shop):
    settings.ANON_RATE_LIMIT = "2/min"
    client = APIClient()
    assert [client.get("/api/products/").status_code for _ in range(2)] == [200, 200]

    assert_throttled(client.get("/api/products/TEA/"))


def test_the_anonymous_rate_does_not_limit_signed_in_callers(settings, shop):
    settings.ANON_RATE_LIMIT = "1/min"
    ann, _ = customer_make(username="ann")
    APIClient().get("/api/products/")

    assert client_for(ann).get("/api/products/").status_code == 200
    assert APIClient().get("/api/products/").status_code == 429


def test_the_health_check_is_never_throttled(settings):
    settings.ANON_RATE_LIMIT = "1/min"
    client = APIClient()

    assert {client.get("/api/health/").status_code for _ in range(5)} == {200}


# SETTINGS ----------------------------------------------------------------------------


@pytest.mark.parametrize("rate", ["lots", "60", "60/", "60/fortnight", "0/min", ""])
def test_a_rate_that_cannot_work_fails_the_system_checks(settings, rate):
    settings.ORDER_RATE_LIMIT = rate

    errors = [e for e in run_checks() if e.id == "shop.E001"]

    assert [e.msg.split()[0] for e in errors] == ["ORDER_RATE_LIMIT"]


# THE DEMO AS A CLIENT ----------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_the_demo_waits_out_a_429_and_sends_again(settings, live_server):
    settings.ORDER_RATE_LIMIT = "1/s"
    product_make(sku="TEA", price="4.50", units=100)
    ann, card = customer_make(username="ann")
    token = Token.objects.create(user=ann).key
    body = {"items": [{"sku": "TEA", "quantity": 1}], "payment_method_id": card.pk}
    api = Api(live_server.url)
    started = time.monotonic()

    answers = [api.call_timed("POST", "/api/orders/", token, body) for _ in range(3)]

    assert [status for status, _, _ in answers] == [202, 202, 202]
    # At least one of them was refused and waited out its Retry-After (a second at
    # least: the rest of the rate's one-second window, rounded up).
    assert time.monotonic() - started >= 1.0
    sent = [sent_at for _, _, sent_at in answers]
    assert sent[2] - sent[1] >= 0.9
