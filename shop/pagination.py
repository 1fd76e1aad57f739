"""Limit/offset pages for list APIs: ``?limit=&offset=``, 50 by default."""

from collections.abc import Callable

from django.db.models import QuerySet
from rest_framework.pagination import LimitOffsetPagination
from rest_framework.response import Response
from rest_framework.serializers import Serializer
from rest_framework.views import APIView


class LimitOffsetPage(LimitOffsetPagination):
    """A page past the end is empty: DRF never slices beyond the count, so even an
    offset above PostgreSQL's bigint range answers 200, not a database error."""

    default_limit = 50
    max_limit = 200


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
