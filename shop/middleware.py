"""Refuses, before any view, requests carrying text PostgreSQL cannot store or compare.

A NUL character in a value that reaches a lookup makes psycopg2 raise ValueError (a 500
wherever it happens: a token, a session cookie, an admin list filter); a lone surrogate
cannot be encoded to UTF-8 at all. JSON bodies are left to the API's serializers, which
refuse both in every string field and name the field.
"""

import re
from collections.abc import Iterator

from django.http import HttpRequest, HttpResponse, HttpResponseBadRequest

from shop.exceptions import is_api_request, json_error

_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")
MESSAGE = "Null characters and lone surrogates are not allowed."
FORM_TYPES = ("application/x-www-form-urlencoded", "multipart/form-data")


class RefuseUnstorableTextMiddleware:
    """A 400 naming the query parameter, header, cookie or form field at fault; in the
    API's error shape under /api/, as plain text elsewhere (the admin)."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        where = next(_unstorable_parts(request), None)
        if where is None:
            return self.get_response(request)
        if is_api_request(request):
            return json_error(400, "Validation error.", {"fields": {where: [MESSAGE]}})
        return HttpResponseBadRequest(f"{where}: {MESSAGE}", content_type="text/plain")


def _unstorable_parts(request: HttpRequest) -> Iterator[str]:
    """The name of every part of the request that holds unstorable text."""
    # The path is the router's: no route takes a NUL into a lookup (ids are digits,
    # a sku excludes it), so such a path is a 404 like any other that matches none.
    yield from _unstorable_fields(request.GET)
    for name, value in request.headers.items():
        if _UNSTORABLE.search(value):
            yield name
    # A cookie can also carry one quoted ("\000"), which only parsing reveals.
    for name, value in request.COOKIES.items():
        if _UNSTORABLE.search(name) or _UNSTORABLE.search(value):
            yield f"Cookie.{name}"
    # The API reads JSON only (anything else is a 415), and parsing a form here would
    # consume the body before it could say so.
    if not is_api_request(request) and request.content_type in FORM_TYPES:
        yield from _unstorable_fields(request.POST)


def _unstorable_fields(fields) -> Iterator[str]:
    for name, values in fields.lists():
        if _UNSTORABLE.search(name) or any(_UNSTORABLE.search(v) for v in values):
            yield name
