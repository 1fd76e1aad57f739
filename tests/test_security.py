"""The security pass, through real processes: production mode refuses to start with
DEBUG on or a weak SECRET_KEY and passes `manage.py check --deploy`; a production web
server redirects to HTTPS and sends the security headers; a session's API writes need
their CSRF token; a body over the limit is refused at every write."""

import os
import secrets
import subprocess
import sys
from collections.abc import Iterator

import pytest
import requests
from django.contrib.auth import get_user_model

from payments.models import PaymentMethod
from payments.tests.factories import customer_make
from shop.services import token_obtain
from tests.cluster import BASE, BIN, free_port, web_server

pytestmark = pytest.mark.django_db(transaction=True)

PASSWORD = "correct horse battery staple"
METRICS_TOKEN = secrets.token_urlsafe(32)
PRODUCTION = {
    "SHOP_ENV": "production",
    "SECRET_KEY": secrets.token_urlsafe(50),
    "DEBUG": None,
    "METRICS_TOKEN": METRICS_TOKEN,
}
LIMIT = 64 * 1024


def environment(**changes: str | None) -> dict[str, str]:
    """This test's environment with `make`'s .run/env spelled out (production mode reads
    no .run/env), changed by ``changes``; None removes a variable."""
    path = BASE / ".run" / "env"
    lines = path.read_text().splitlines() if path.exists() else []
    env = dict(line.split("=", 1) for line in lines if "=" in line)
    env.update(os.environ)
    for name, value in changes.items():
        if value is None:
            env.pop(name, None)
        else:
            env[name] = value
    return env


def manage(*args: str, **changes: str | None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(BASE / "manage.py"), *args],
        env=environment(**changes),
        cwd=BASE,
        capture_output=True,
        text=True,
        timeout=120,
    )


# PRODUCTION MODE ---------------------------------------------------------------------


def test_check_deploy_is_clean_in_production_mode():
    run = manage("check", "--deploy", "--fail-level=WARNING", **PRODUCTION)

    assert run.returncode == 0, run.stdout + run.stderr
    assert "System check identified no issues (0 silenced)." in run.stdout


def test_check_deploy_finds_what_development_mode_leaves_off():
    run = manage("check", "--deploy", "--fail-level=WARNING", SHOP_ENV=None)

    assert run.returncode != 0
    for warning in ("W004", "W008", "W012", "W016"):  # HSTS, redirect, cookies
        assert f"security.{warning}" in run.stderr


@pytest.mark.parametrize(
    ("changes", "says"),
    [
        pytest.param({"DEBUG": "true"}, "DEBUG is on in production mode", id="debug"),
        pytest.param(
            # make's generated key in .run/env is not read in production mode.
            {"SECRET_KEY": None},
            "Set the SECRET_KEY environment variable",
            id="no-key",
        ),
        pytest.param({"SECRET_KEY": "changeme"}, "too weak", id="short-key"),
        pytest.param({"SECRET_KEY": "ab" * 40}, "too weak", id="few-characters"),
        pytest.param(
            {"SECRET_KEY": "django-insecure-" + secrets.token_urlsafe(50)},
            "too weak",
            id="djangos-default",
        ),
        pytest.param({"SHOP_ENV": "prod"}, "SHOP_ENV is 'prod'", id="mode-typo"),
        pytest.param(
            {"METRICS_TOKEN": "abc"}, "METRICS_TOKEN is too short", id="short-token"
        ),
    ],
)
def test_production_mode_refuses_to_start(changes, says):
    run = manage("check", **{**PRODUCTION, **changes})

    assert run.returncode != 0
    assert "ImproperlyConfigured" in run.stderr and says in run.stderr, run.stderr


def test_the_web_server_refuses_to_start_with_debug_on_in_production_mode():
    # gunicorn runs no system checks: the settings themselves refuse.
    run = subprocess.run(
        [str(BIN / "gunicorn"), "shop.wsgi", f"--bind=127.0.0.1:{free_port()}"],
        env=environment(**{**PRODUCTION, "DEBUG": "true"}),
        cwd=BASE,
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert run.returncode != 0
    assert "DEBUG is on in production mode" in run.stderr


@pytest.fixture(scope="module")
def production(cluster) -> Iterator[str]:
    """A production web server behind one proxy that terminates HTTPS."""
    with web_server(cluster, environment(**PRODUCTION, NUM_PROXIES="1")) as url:
        yield url


HTTPS = {"X-Forwarded-Proto": "https"}  # what the proxy says of the client's request


def test_production_redirects_plain_http_to_https(production):
    response = requests.get(f"{production}/api/products/", allow_redirects=False)

    assert response.status_code == 301
    assert response.headers["Location"] == f"https://{production[7:]}/api/products/"


def test_production_sends_the_security_headers_over_https(production):
    response = requests.get(f"{production}/api/products/", headers=HTTPS)

    assert response.status_code == 200
    assert response.headers["Strict-Transport-Security"] == (
        "max-age=31536000; includeSubDomains; preload"
    )
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["X-Frame-Options"] == "DENY"
    assert response.headers["Referrer-Policy"] == "same-origin"
    assert response.headers["Cross-Origin-Opener-Policy"] == "same-origin"


def test_production_sets_cookies_for_https_only(production):
    response = requests.get(f"{production}/admin/login/", headers=HTTPS)

    cookie = response.headers["Set-Cookie"]
    assert cookie.startswith("csrftoken=") and "Secure" in cookie


def test_the_health_check_answers_a_load_balancer_over_plain_http(production):
    response = requests.get(f"{production}/api/health/", allow_redirects=False)

    assert response.status_code == 200
    assert "Strict-Transport-Security" not in response.headers  # HTTPS only


def test_the_metrics_answer_a_scraper_over_plain_http(production):
    response = requests.get(
        f"{production}/metrics",
        headers={"Authorization": f"Bearer {METRICS_TOKEN}"},
        allow_redirects=False,
    )

    assert response.status_code == 200
    assert "saga_outbox_backlog" in response.text


# CSRF AND BODY SIZES -----------------------------------------------------------------


@pytest.fixture
def operator():
    """Staff with a card of their own: sessions come from the admin's login page,
    which only staff pass."""
    user, card = customer_make(username="ops", is_staff=True)
    user.set_password(PASSWORD)
    user.save(update_fields=["password"])
    return user, card


def session_for(web: str, username: str) -> requests.Session:
    """Signed in through the admin's login page, as a browser is."""
    session = requests.Session()
    session.get(f"{web}/admin/login/")
    response = session.post(
        f"{web}/admin/login/?next=/admin/",
        data={
            "username": username,
            "password": PASSWORD,
            "csrfmiddlewaretoken": session.cookies["csrftoken"],
        },
        allow_redirects=False,
    )
    assert response.status_code == 302, response.text
    assert "sessionid" in session.cookies
    return session


def test_a_sessions_api_write_without_its_csrf_token_is_403(web, operator):
    user, card = operator
    session = session_for(web, user.username)

    response = session.post(f"{web}/api/payment-methods/{card.pk}/deactivate/")

    assert response.status_code == 403
    assert response.json() == {
        "message": "CSRF Failed: CSRF token missing.",
        "extra": {},
    }
    assert PaymentMethod.objects.get(pk=card.pk).active


def test_a_sessions_api_write_with_its_csrf_token_is_done(web, operator):
    user, card = operator
    session = session_for(web, user.username)

    response = session.post(
        f"{web}/api/payment-methods/{card.pk}/deactivate/",
        headers={"X-CSRFToken": session.cookies["csrftoken"]},
    )

    assert response.status_code == 200
    assert not PaymentMethod.objects.get(pk=card.pk).active


def test_a_body_over_the_limit_is_refused_by_every_write_that_reads_one(web):
    root = get_user_model().objects.create_superuser(username="root")
    token = token_obtain(user=root)
    schema = requests.get(f"{web}/api/schema/?format=json").json()
    writes = [
        path.replace("{saga_id}", "1")
        for path, methods in schema["paths"].items()
        for method, operation in methods.items()
        if method == "post" and "requestBody" in operation
    ]
    body = b'{"reason": "' + b"x" * LIMIT + b'"}'

    assert set(writes) == {"/api/orders/", "/api/sagas/1/cancel/", "/api/auth/token/"}
    for path in writes:
        response = requests.post(
            f"{web}{path}",
            data=body,
            headers={
                "Content-Type": "application/json",
                "Authorization": f"Token {token}",
            },
        )
        assert response.status_code == 400, (path, response.text)
        assert response.json() == {
            "message": f"The request body is larger than {LIMIT} bytes.",
            "extra": {},
        }


def test_a_body_over_the_limit_is_refused_by_the_admin(web):
    response = requests.post(
        f"{web}/admin/login/",
        data={"username": "x" * LIMIT, "password": "x"},
        allow_redirects=False,
    )

    assert response.status_code == 400
