"""GET /metrics: served only to a scraper holding METRICS_TOKEN, in Prometheus's text
format, with the outboxes' backlog measured as it answers. (The counts of a batch of
sagas through real processes are in tests/test_observability.py.)"""

import contextlib

import pytest
from django.db import connection
from django.test import Client
from prometheus_client.parser import text_string_to_metric_families

from orders.models import OutboxMessage
from sagas.messaging.outbox import outbox_models

TOKEN = "a-scrapers-token-0123456789abcdef"

pytestmark = pytest.mark.django_db


@pytest.fixture
def token(settings):
    settings.METRICS_TOKEN = TOKEN
    return TOKEN


def get(authorization: str | None = None):
    headers = {"HTTP_AUTHORIZATION": authorization} if authorization else {}
    return Client().get("/metrics", **headers)


@pytest.mark.django_db(transaction=True)  # it closes the connection
def test_with_the_database_away_the_counters_still_answer(token):
    """The backlog is unknown then (saga_outbox_backlog_up 0); the counters, which
    may be what tells why, are all there."""
    connection.close()
    away = {**connection.settings_dict, "HOST": "/nonexistent", "PORT": "1"}
    with pointed(connection, away):
        response = get(f"Bearer {TOKEN}")
    connection.close()

    assert response.status_code == 200
    families = {f.name: f for f in text_string_to_metric_families(response.text)}
    assert [s.value for s in families["saga_outbox_up"].samples] == [0]
    assert "saga_started" in families
    assert "saga_outbox_backlog" not in families


@contextlib.contextmanager
def pointed(conn, settings_dict: dict):
    """The connection made from ``settings_dict`` for the block: pointed at no
    server, its connecting really fails."""
    before = conn.settings_dict
    conn.settings_dict = settings_dict
    try:
        yield
    finally:
        conn.settings_dict = before


def test_without_a_token_set_there_are_no_metrics(settings):
    settings.METRICS_TOKEN = ""

    assert get().status_code == 404
    assert get("Bearer ").status_code == 404
    assert get(f"Bearer {TOKEN}").status_code == 404


@pytest.mark.parametrize(
    "authorization",
    [
        None,
        "Bearer",
        "Bearer wrong-token",
        f"Bearer {TOKEN}x",
        f"Bearer {TOKEN[:-1]}",
        f"Token {TOKEN}",
        f"Basic {TOKEN}",
        TOKEN,
    ],
)
def test_anything_but_the_bearer_token_is_refused(token, authorization):
    response = get(authorization)

    assert response.status_code == 401
    assert response["WWW-Authenticate"] == 'Bearer realm="metrics"'
    assert b"saga_" not in response.content


def test_the_bearer_token_gets_the_metrics(token):
    OutboxMessage.objects.create(topic="OrderPlaced", aggregate_id="1")

    response = get(f"Bearer {token}")

    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/plain; version=")
    families = {f.name: f for f in text_string_to_metric_families(response.text)}
    for name in ("saga_started", "saga_step_duration_seconds", "saga_step_retries"):
        assert name in families
    # HTTP requests by view and status (django-prometheus), this one's included
    assert "django_http_responses_total_by_status_view_method" in families
    backlog = {
        s.labels["app"]: s.value for s in families["saga_outbox_backlog"].samples
    }
    assert backlog == {m._meta.app_label: 0.0 for m in outbox_models()} | {"orders": 1}
    ages = {
        s.labels["app"]: s.value
        for s in families["saga_outbox_oldest_pending_age_seconds"].samples
    }
    assert ages["orders"] >= 0.0 and ages["sagas"] == 0.0


def test_only_reads_are_answered(token):
    response = Client().post("/metrics", HTTP_AUTHORIZATION=f"Bearer {token}")

    assert response.status_code == 405
