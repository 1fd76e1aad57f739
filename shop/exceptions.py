"""The API error base, and the one DRF handler that gives every error one shape.

Every error answer is ``{"message": str, "extra": {...}}``; validation errors list
each bad field under ``extra.fields`` by its path, e.g. ``items[0].quantity``::

    ShopError                 400 unless a subclass says otherwise
     ├── NotFound             404
     └── Conflict             409
"""

from django.core.exceptions import PermissionDenied
from django.http import Http404
from rest_framework import exceptions as drf_exceptions
from rest_framework import status
from rest_framework.response import Response
from rest_framework.views import exception_handler


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
    response.data = {"message": str(detail), "extra": {}}
    return response


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
