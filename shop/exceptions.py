"""The API error base, and the handlers that give every API error one shape.

Every error answer is ``{"message": str, "extra": {...}}``; validation errors list
each bad field under ``extra.fields`` by its path, e.g. ``items[0].quantity``. DRF's
errors go through ``api_exception_handler``; Django's own 400 and 404 (a URL that
matches no route, a request refused before any view) through ``bad_request`` and
``not_found`` for paths under ``/api/``::

    ShopError                 400 unless a subclass says otherwise
     ├── NotFound             404
     └── Conflict             409
"""

from django.core.exceptions import (
    PermissionDenied,
    RequestDataTooBig,
    TooManyFieldsSent,
)
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.views import defaults
from rest_framework import exceptions as drf_exceptions
from rest_framework import status
from rest_framework.response import Response
from rest_framework.views import exception_handler

API_PREFIX = "/api/"


class ShopError(Exception):
    status_code = status.HTTP_400_BAD_REQUEST

    def __init__(self, message: str, extra: dict | None = None):
        super().__init__(message)
        self.message = message
        self.extra = extra or {}


class NotFound(ShopError):
    status_code = status.HTTP_404_NOT_FOUND


class Conflict(ShopError):
    status_code = status.HTTP_409_CONFLICT


def api_exception_handler(exc: Exception, context: dict) -> Response | None:
    if isinstance(exc, ShopError):
        return _answer(exc.status_code, exc.message, exc.extra)
    if isinstance(exc, Http404):
        exc = drf_exceptions.NotFound()
    elif isinstance(exc, PermissionDenied):
        exc = drf_exceptions.PermissionDenied()

    response = exception_handler(exc, context)
    if response is None:
        return None
    if isinstance(exc, drf_exceptions.ValidationError):
        fields = flatten_errors(exc.detail)
        return _answer(response.status_code, "Validation error.", {"fields": fields})
    detail = (
        response.data.get("detail", response.data)
        if isinstance(response.data, dict)
        else response.data
    )
    extra = {}
    if isinstance(exc, drf_exceptions.Throttled):
        # DRF also sends it as the Retry-After header (whole seconds).
        extra = {"retry_after": exc.wait}
    response.data = {"message": str(detail), "extra": extra}
    return response


def is_api_request(request: HttpRequest) -> bool:
    return request.path_info.startswith(API_PREFIX)


def json_error(
    status_code: int, message: str, extra: dict | None = None
) -> JsonResponse:
    """The error shape, from plain Django code (middleware, URL handlers)."""
    return JsonResponse({"message": message, "extra": extra or {}}, status=status_code)


def not_found(request: HttpRequest, exception: Exception) -> HttpResponse:
    """Django's handler404: a URL under /api/ that matches no route (an id that is no
    number or beyond a bigint, a sku too long) answers in the API's shape."""
    if is_api_request(request):
        return json_error(404, "Not found.")
    return defaults.page_not_found(request, exception)


def bad_request(request: HttpRequest, exception: Exception) -> HttpResponse:
    """Django's handler400: what Django refuses before any view (too many query
    parameters, a disallowed host) answers in the API's shape under /api/."""
    if is_api_request(request):
        # Only the size limits say what was wrong; other refusals (a disallowed host)
        # would tell a stranger about the configuration.
        limits = isinstance(exception, (RequestDataTooBig, TooManyFieldsSent))
        return json_error(400, str(exception) if limits else "Bad request.")
    return defaults.bad_request(request, exception)


def flatten_errors(detail, path: str = "") -> dict[str, list[str]]:
    """Turn DRF's nested error detail into ``{"items[0].sku": ["..."]}``."""
    if isinstance(detail, dict):
        flat: dict[str, list[str]] = {}
        for key, value in detail.items():
            # DRF reports the errors of a list's items by position: {0: {...}}.
            where = f"{path}[{key}]" if isinstance(key, int) else _join(path, str(key))
            flat.update(
                flatten_errors(value, path if key == "non_field_errors" else where)
            )
        return flat
    if isinstance(detail, list) and any(isinstance(d, (dict, list)) for d in detail):
        flat = {}
        for index, value in enumerate(detail):
            if value:
                flat.update(flatten_errors(value, f"{path}[{index}]"))
        return flat
    messages = detail if isinstance(detail, list) else [detail]
    return {path or "non_field_errors": [str(m) for m in messages]}


def _join(path: str, name: str) -> str:
    if not name:
        return path
    return f"{path}.{name}" if path else name


def _answer(status_code: int, message: str, extra: dict) -> Response:
    return Response({"message": message, "extra": extra}, status=status_code)
