"""Tests of the health API: 200 when the database and broker answer, else a 503.

Staff see the details (errors, faults, sagas); anyone else only ok or error."""

import socket
import time

import pytest
from django.db import OperationalError
from rest_framework.test import APIClient

from shop.tests.factories import token_client_for, user_create

pytestmark = pytest.mark.django_db

URL = "/api/health/"


def test_healthy_with_the_real_database_and_broker():
    response = staff_client().get(URL)

    assert response.status_code == 200
    assert response.json() == {
        "status": "ok",
        "database": "ok",
        "broker": "ok",
        "faults": [],
        "sagas": {"failed": 0, "attention": 0, "overdue": 0},
    }


def test_no_credentials_needed_and_a_stale_token_is_ignored():
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION="Token expired")

    assert client.get(URL).status_code == 200


def test_a_broker_that_is_down_is_503_at_once(settings):
    # Read at call time: the Celery app's own cached configuration would miss this.
    settings.CELERY_BROKER_URL = "redis://127.0.0.1:1/0"
    started = time.monotonic()

    response = staff_client().get(URL)

    assert time.monotonic() - started < 3
    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "error"
    assert body["database"] == "ok"
    assert "Connection refused" in body["broker"]


def test_a_broker_that_never_answers_is_503_within_three_seconds(settings):
    # Accepts connections (the kernel's backlog) and never replies to PING.
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        settings.CELERY_BROKER_URL = f"redis://127.0.0.1:{silent.getsockname()[1]}/0"
        started = time.monotonic()

        response = staff_client().get(URL)

        elapsed = time.monotonic() - started
    assert elapsed < 3.5
    assert response.status_code == 503
    assert "Timeout" in response.json()["broker"]


def test_a_database_that_fails_is_503(monkeypatch):
    class Broken:
        def cursor(self):
            raise OperationalError("connection to server was lost")

    monkeypatch.setattr("shop.selectors.connection", Broken())

    response = staff_client().get(URL)

    assert response.status_code == 503
    assert response.json()["database"] == (
        "OperationalError: connection to server was lost"
    )
    assert response.json()["broker"] == "ok"


def test_the_faults_in_force_are_listed(settings):
    settings.SAGA_FAULTS = (
        "payments.charge:transient:0.2, inventory.reserve:delay=3s:0.05"
    )

    response = staff_client().get(URL)

    assert response.status_code == 200
    assert response.json()["faults"] == [
        "payments.charge:transient:0.2",
        "inventory.reserve:delay=3s:0.05",
    ]


def test_failed_and_overdue_sagas_are_counted_without_failing_the_check():
    from datetime import timedelta

    from django.utils import timezone

    from sagas.models import Saga, SagaStatus

    Saga.objects.create(name="purchase", status=SagaStatus.FAILED)
    Saga.objects.create(
        name="purchase",
        status=SagaStatus.RUNNING,
        deadline_at=timezone.now() - timedelta(minutes=5),
    )
    Saga.objects.create(
        name="purchase",
        status=SagaStatus.RUNNING,
        deadline_at=timezone.now() + timedelta(minutes=5),
    )

    response = staff_client().get(URL)

    assert response.status_code == 200
    assert response.json()["sagas"] == {"failed": 1, "attention": 0, "overdue": 1}


def staff_client() -> APIClient:
    """Signed in with a real token: the health check reads credentials itself."""
    return token_client_for(user_create(username="ops", is_staff=True))


# WHAT ANYONE ELSE SEES ---------------------------------------------------------------


def test_anyone_else_learns_only_whether_each_server_is_up():
    response = APIClient().get(URL)

    assert response.status_code == 200
    assert response.json() == {"status": "ok", "database": "ok", "broker": "ok"}


def test_anyone_else_gets_no_error_text_when_a_server_is_down(settings):
    settings.CELERY_BROKER_URL = "redis://127.0.0.1:1/0"

    response = APIClient().get(URL)

    assert response.status_code == 503
    assert response.json() == {"status": "error", "database": "ok", "broker": "error"}
