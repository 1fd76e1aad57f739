"""Tests of the OpenAPI schema and its docs page, served without any CDN."""

import pytest
from django.core.management import call_command
from rest_framework.test import APIClient

pytestmark = pytest.mark.django_db

OPERATIONS = {
    ("/api/orders/", "get"),
    ("/api/orders/", "post"),
    ("/api/orders/{order_id}/", "get"),
    ("/api/sagas/", "get"),
    ("/api/sagas/{saga_id}/", "get"),
    ("/api/sagas/{saga_id}/retry/", "post"),
    ("/api/sagas/{saga_id}/cancel/", "post"),
    ("/api/products/", "get"),
    ("/api/products/{sku}/", "get"),
    ("/api/accounts/me/", "get"),
    ("/api/accounts/{account_id}/", "get"),
    ("/api/payment-methods/", "get"),
    ("/api/payment-methods/{method_id}/deactivate/", "post"),
    ("/api/auth/token/", "post"),
    ("/api/health/", "get"),
}


def test_the_schema_lists_every_operation():
    response = APIClient().get("/api/schema/", {"format": "json"})

    assert response.status_code == 200
    paths = response.json()["paths"]
    assert {(path, method) for path in paths for method in paths[path]} == OPERATIONS


def test_placing_an_order_documents_its_input_and_its_answers():
    schema = APIClient().get("/api/schema/", {"format": "json"}).json()

    post = schema["paths"]["/api/orders/"]["post"]
    assert set(post["responses"]) == {"202", "400", "401", "409", "429"}
    assert post["parameters"][0]["name"] == "Idempotency-Key"
    item = schema["components"]["schemas"]["OrderCreateInputItemRequest"]
    assert item["properties"]["quantity"] == {
        "type": "integer",
        "maximum": 1000,
        "minimum": 1,
    }


def test_the_schema_generates_without_warnings(tmp_path):
    # Raises CommandError on any warning or an invalid schema.
    call_command(
        "spectacular",
        "--validate",
        "--fail-on-warn",
        "--file",
        str(tmp_path / "schema.yaml"),
    )


def test_the_docs_page_loads_swagger_ui_from_this_server():
    response = APIClient().get("/api/docs/")

    assert response.status_code == 200
    page = response.content.decode()
    assert "/static/drf_spectacular_sidecar/swagger-ui-dist/" in page
    assert "cdn.jsdelivr.net" not in page
