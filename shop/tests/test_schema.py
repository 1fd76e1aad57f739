"""Tests of the OpenAPI schema and its docs page, served without any CDN."""

import re

import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command
from rest_framework.test import APIClient

from shop.tests.factories import client_for

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


@pytest.fixture(scope="module")
def schema(django_db_blocker) -> dict:
    with django_db_blocker.unblock():
        return APIClient().get("/api/schema/", {"format": "json"}).json()


# The errors each operation can answer (beside its success): 400 and 406 from any, 401
# where credentials are required, 403 where a permission or (a session's write) CSRF
# is checked, 404 where the path names an object, 409 where its state can refuse,
# 415 where it reads a body, 429 where a rate applies to who may call it.
ERRORS = {
    ("/api/orders/", "get"): {"400", "401", "406"},
    ("/api/orders/", "post"): {"400", "401", "403", "406", "409", "415", "429"},
    ("/api/orders/{order_id}/", "get"): {"400", "401", "404", "406"},
    ("/api/sagas/", "get"): {"400", "401", "403", "406"},
    ("/api/sagas/{saga_id}/", "get"): {"400", "401", "404", "406"},
    ("/api/sagas/{saga_id}/retry/", "post"): {"400", "401", "403", "404", "406", "409"},
    ("/api/sagas/{saga_id}/cancel/", "post"): {
        *("400", "401", "403", "404", "406", "409", "415"),
    },
    ("/api/products/", "get"): {"400", "406", "429"},
    ("/api/products/{sku}/", "get"): {"400", "404", "406", "429"},
    ("/api/accounts/me/", "get"): {"400", "401", "404", "406"},
    ("/api/accounts/{account_id}/", "get"): {"400", "401", "404", "406"},
    ("/api/payment-methods/", "get"): {"400", "401", "406"},
    ("/api/payment-methods/{method_id}/deactivate/", "post"): {
        *("400", "401", "403", "404", "406"),
    },
    ("/api/auth/token/", "post"): {"400", "401", "406", "415", "429"},
    ("/api/health/", "get"): {"400", "406", "503"},
}
ERROR = {"$ref": "#/components/schemas/Error"}


def test_each_operation_documents_every_error_it_can_answer(schema):
    assert set(ERRORS) == OPERATIONS
    for (path, method), errors in ERRORS.items():
        responses = schema["paths"][path][method]["responses"]
        assert {code for code in responses if code >= "400"} == errors, (path, method)
        for code in errors - {"503"}:
            assert responses[code]["description"], (path, method, code)
            content = responses[code]["content"]
            assert content == {"application/json": {"schema": ERROR}}, (path, code)


def test_a_429_documents_its_retry_after_header(schema):
    throttled = [
        op["responses"]["429"]
        for methods in schema["paths"].values()
        for op in methods.values()
        if "429" in op["responses"]
    ]

    assert len(throttled) == 4
    for response in throttled:
        assert response["headers"]["Retry-After"]["required"] is True


def test_placing_an_order_documents_its_input_and_its_answers(schema):
    post = schema["paths"]["/api/orders/"]["post"]
    assert post["parameters"][0]["name"] == "Idempotency-Key"
    assert post["parameters"][0]["schema"]["pattern"] == "^[\\x20-\\x7e]+$"
    components = schema["components"]["schemas"]
    order = components["OrderCreateInputRequest"]
    assert order["additionalProperties"] is False
    assert order["properties"]["items"]["minItems"] == 1
    assert order["properties"]["items"]["maxItems"] == 50
    assert order["properties"]["payment_method_id"]["minimum"] == 1
    assert order["properties"]["ship_to"]["pattern"] == "^[A-Z]{2}$"
    item = components["OrderCreateInputItemRequest"]
    assert item["additionalProperties"] is False
    assert item["properties"]["quantity"] == {
        "type": "integer",
        "maximum": 1000,
        "minimum": 1,
    }
    assert item["properties"]["sku"] == {
        "type": "string",
        "minLength": 1,
        "maxLength": 64,
        "pattern": NO_NUL,
    }


NO_NUL = "^[^\\u0000]*$"


def test_every_input_refuses_unknown_fields_and_nul_characters(schema):
    inputs = {
        name: component
        for name, component in schema["components"]["schemas"].items()
        if name.endswith("Request")
    }

    assert len(inputs) == 4
    for name, component in inputs.items():
        assert component["additionalProperties"] is False, name
        for field, spec in component["properties"].items():
            if spec.get("type") == "string":
                assert spec.get("pattern"), (name, field)


def test_query_and_path_parameters_state_their_bounds(schema):
    parameters = {
        (path, p["name"]): p["schema"]
        for path, methods in schema["paths"].items()
        for op in methods.values()
        for p in op.get("parameters", [])
    }

    for path in ("/api/orders/", "/api/products/", "/api/sagas/"):
        assert parameters[(path, "limit")] == {
            "type": "integer",
            "minimum": 1,
            "maximum": 200,
        }
        assert parameters[(path, "offset")]["maximum"] == 2**63 - 1
    assert parameters[("/api/sagas/", "name")]["pattern"] == NO_NUL
    assert parameters[("/api/orders/{order_id}/", "order_id")]["maximum"] == 2**63 - 1
    assert parameters[("/api/products/{sku}/", "sku")]["pattern"] == (
        "^[^/\\u0000]{1,64}$"
    )


def test_a_method_a_url_does_not_serve_is_405_naming_those_it_does(schema):
    root = get_user_model().objects.create_superuser(username="root")
    for path, methods in schema["paths"].items():
        url = re.sub(r"\{[a-z_]+\}", "1", path)

        response = client_for(root).delete(url)

        assert response.status_code == 405, path
        allowed = {method.strip() for method in response["Allow"].split(",")}
        head = {"HEAD"} if "get" in methods else set()
        assert allowed == {m.upper() for m in methods} | head | {"OPTIONS"}, path


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
