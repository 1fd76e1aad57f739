"""Limit/offset pages for list APIs: ``?limit=&offset=``, 50 by default."""

import re
from collections.abc import Callable

from django.db.models import QuerySet
from rest_framework.exceptions import ValidationError
from rest_framework.pagination import LimitOffsetPagination
from rest_framework.response import Response
from rest_framework.serializers import Serializer
from rest_framework.views import APIView

from shop.routing import MAX_BIGINT
from shop.serializers import once_each

_DIGITS = re.compile("[0-9]{1,19}")  # ASCII only: int() would also take "٣" or "1_0"


class LimitOffsetPage(LimitOffsetPagination):
    """Pages whose parameters are checked: a limit from 1 to ``max_limit``, an offset
    that fits PostgreSQL's bigint, each given at most once, else a 400 naming the
    parameter. (DRF alone would quietly use its defaults for a limit of "abc", "" or
    an offset of -1, and the last of repeated ones.) A page past the end is empty: DRF
    never slices beyond the count."""

    default_limit = 50
    max_limit = 200

    def paginate_queryset(self, queryset, request, view=None):
        self.check_parameters(request)
        return super().paginate_queryset(queryset, request, view)

    def check_parameters(self, request) -> None:
        ranges = {
            self.limit_query_param: (1, self.max_limit),
            self.offset_query_param: (0, MAX_BIGINT),
        }
        errors = once_each(request.query_params, ranges)
        for name, (low, high) in ranges.items():
            value = request.query_params.get(name)
            if value is None or name in errors:
                continue  # absent: the default
            if not (_DIGITS.fullmatch(value) and low <= int(value) <= high):
                errors[name] = [f"Must be an integer from {low} to {high}."]
        if errors:
            raise ValidationError(errors)

    def get_schema_operation_parameters(self, view):
        parameters = super().get_schema_operation_parameters(view)
        bounds = {
            self.limit_query_param: {"minimum": 1, "maximum": self.max_limit},
            self.offset_query_param: {"minimum": 0, "maximum": MAX_BIGINT},
        }
        for parameter in parameters:
            parameter["schema"].update(bounds.get(parameter["name"], {}))
        return parameters


def paginated_response(
    *,
    queryset: QuerySet,
    serializer_class: type[Serializer],
    request,
    view: APIView,
    context: Callable[[list], dict] | None = None,
) -> Response:
    """One page of ``queryset`` with the view's ``pagination_class``:
    ``{"count", "next", "previous", "results"}``.

    ``context``, given the page's rows, returns the serializer context (for what is
    read in bulk for just those rows).
    """
    paginator = view.pagination_class()
    page = paginator.paginate_queryset(queryset, request, view=view)
    serializer = serializer_class(
        page, many=True, context=context(page) if context else {}
    )
    return paginator.get_paginated_response(serializer.data)
