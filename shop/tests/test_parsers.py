"""Tests of the API's JSON parser: the size limit holds however the body arrives."""

import io

import pytest
from django.test import RequestFactory
from rest_framework.exceptions import ParseError

from shop.parsers import JSONParser

LIMIT = 64 * 1024


@pytest.fixture(autouse=True)
def limit(settings):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = LIMIT


class Unreadable(io.BytesIO):
    def read(self, *args):
        raise AssertionError("an oversized body must be refused before it is read")


def test_a_body_at_the_limit_is_parsed():
    body = b'{"a": "' + b"x" * (LIMIT - 9) + b'"}'
    assert len(body) == LIMIT

    assert JSONParser().parse(io.BytesIO(body)) == {"a": "x" * (LIMIT - 9)}


def test_a_body_over_the_limit_is_refused_even_without_a_content_length():
    body = b'{"a": "' + b"x" * LIMIT + b'"}'

    with pytest.raises(ParseError, match="larger than 65536 bytes"):
        JSONParser().parse(io.BytesIO(body), parser_context={})


def test_a_declared_length_over_the_limit_is_refused_unread():
    request = RequestFactory().post(
        "/", b"{}", content_type="application/json", CONTENT_LENGTH=str(LIMIT + 1)
    )

    with pytest.raises(ParseError, match="larger than"):
        JSONParser().parse(Unreadable(), parser_context={"request": request})


@pytest.mark.parametrize("length", ["", "nonsense"])
def test_a_content_length_that_is_not_a_number_falls_back_to_reading(length):
    request = RequestFactory().post("/", b"{}", content_type="application/json")
    request.META["CONTENT_LENGTH"] = length

    parsed = JSONParser().parse(io.BytesIO(b"[1]"), parser_context={"request": request})

    assert parsed == [1]
