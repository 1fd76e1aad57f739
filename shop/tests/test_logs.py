"""Log lines stay whole and keep credentials out, whatever a client sends: JSON
lines parse, secrets are masked, request lines leave out the query string, the
referrer and the user agent."""

import json
import logging

import pytest
from django.test import RequestFactory

from shop.observability.logs import ConsoleLines, CorrelationFilter, JsonLines


def line(formatter, name: str, msg: str, args=(), **extra) -> str:
    record = logging.LogRecord(name, logging.INFO, __file__, 1, msg, args, None)
    record.__dict__.update(extra)
    CorrelationFilter().filter(record)
    return formatter.format(record)


@pytest.mark.parametrize(
    "said",
    ['password=x"', 'Mozilla token=abc"', 'api_key="k\\"', "secret: s}", "a\\"],
)
def test_a_json_line_with_a_secret_in_it_still_parses_and_hides_it(said):
    written = line(JsonLines(), "django.request", "user agent %s", (said,))

    event = json.loads(written)  # one whole JSON object, whatever was said
    assert event["message"].startswith("user agent ")
    for secret in ("x", "abc", "k", "s"):
        assert f"={secret}" not in event["message"]


def test_a_request_line_leaves_out_what_the_client_wrote():
    atoms = {
        "h": "10.0.0.1",
        "m": "GET",
        "U": "/api/products/",
        "q": "secret_param=hunter2&api_key=k",
        "s": "200",
        "B": "42",
        "D": "1500",
        "a": "curl token=abcdefgh",
        "f": "http://x/?token=abcdefgh",
        "r": "GET /api/products/?secret_param=hunter2&api_key=k HTTP/1.1",
    }
    for formatter in (JsonLines(), ConsoleLines()):
        written = line(formatter, "gunicorn.access", "%(r)s %(a)s %(f)s", atoms)

        assert "/api/products/" in written
        assert "hunter2" not in written and "abcdefgh" not in written
    event = json.loads(line(JsonLines(), "gunicorn.access", "%(r)s", atoms))
    assert (event["method"], event["path"], event["status"]) == (
        "GET",
        "/api/products/",
        "200",
    )


def test_a_django_request_line_names_the_path_not_the_query():
    request = RequestFactory().get("/api/orders/abc/?token=abcdefgh")

    event = json.loads(
        line(JsonLines(), "django.request", "Not Found", request=request)
    )

    assert event["request"] == "/api/orders/abc/"
    assert "abcdefgh" not in json.dumps(event)
