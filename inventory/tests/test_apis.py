"""Tests of the catalog APIs: public, read-only, paginated."""

import pytest
from rest_framework.test import APIClient

from inventory.tests.factories import product_make

pytestmark = pytest.mark.django_db

URL = "/api/products/"


@pytest.fixture
def catalog():
    return [
        product_make(sku="TEA", price="4.50", units=100),
        product_make(sku="MUG", price="12.00", units=5, name="Blue mug"),
    ]


def test_anyone_lists_the_catalog_by_sku(catalog):
    response = APIClient().get(URL)

    assert response.status_code == 200
    body = response.json()
    assert body["count"] == 2
    assert body["results"] == [
        {
            "sku": "MUG",
            "name": "Blue mug",
            "price": "12.00",
            "available": 5,
            "reserved": 0,
        },
        {"sku": "TEA", "name": "Tea", "price": "4.50", "available": 100, "reserved": 0},
    ]


def test_the_catalog_is_paginated(catalog):
    body = APIClient().get(URL, {"limit": 1, "offset": 1}).json()

    assert body["count"] == 2
    assert [p["sku"] for p in body["results"]] == ["TEA"]


def test_anyone_reads_one_product(catalog):
    response = APIClient().get(f"{URL}MUG/")

    assert response.status_code == 200
    assert response.json()["price"] == "12.00"


def test_a_stale_token_does_not_hide_the_catalog(catalog):
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION="Token expired")

    assert client.get(URL).status_code == 200
    assert client.get(f"{URL}TEA/").status_code == 200


@pytest.mark.parametrize(
    "sku",
    [
        pytest.param("COFFEE", id="unknown"),
        pytest.param("tea", id="other-case"),
        pytest.param("T%00EA", id="nul"),
        pytest.param("T" * 65, id="too-long"),
        pytest.param("%ED%A0%80", id="surrogate"),
        pytest.param("%FF", id="not-utf8"),
    ],
)
def test_a_product_that_is_not_there_is_404(catalog, sku):
    response = APIClient().get(f"{URL}{sku}/")

    assert response.status_code == 404


def test_the_catalog_is_read_only(catalog):
    client = APIClient()

    assert client.post(URL, {"sku": "NEW"}, format="json").status_code == 405
    assert client.delete(f"{URL}TEA/").status_code == 405
