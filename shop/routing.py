"""URL pieces: the ``<id:>`` converter, and one URL served by one APIView per method."""

from django.http import HttpRequest
from rest_framework.views import APIView

MAX_BIGINT = 2**63 - 1


class IdConverter:
    """A row id: digits up to PostgreSQL's bigint. Anything else matches no route (a
    404 in the API's shape), so no view or lookup ever sees an id it cannot store."""

    regex = "[0-9]{1,19}"

    def to_python(self, value: str) -> int:
        number = int(value)
        if number > MAX_BIGINT:
            raise ValueError(f"{value} is beyond a bigint")  # Django: no match
        return number

    def to_url(self, value: int) -> str:
        return str(value)


def method_view(**views: type[APIView]):
    """A view that hands each request to the APIView registered for its method.

    ``method_view(get=OrderListApi, post=OrderCreateApi)`` keeps one operation per
    APIView while both live at ``/api/orders/``. A method none of them serves goes to
    the first, which answers 405 in the API's error shape.
    """
    callbacks = {method.upper(): view.as_view() for method, view in views.items()}
    first = next(iter(callbacks.values()))
    # Each APIView's own Allow header names only its methods; the URL has them all.
    allow = ", ".join(
        method.upper()
        for method in APIView.http_method_names
        if method.upper() in callbacks
        or (method == "head" and "GET" in callbacks)
        or method == "options"
    )

    def view(request: HttpRequest, *args, **kwargs):
        method = "GET" if request.method == "HEAD" else request.method
        response = callbacks.get(method, first)(request, *args, **kwargs)
        if response.has_header("Allow"):
            response["Allow"] = allow
        return response

    # Each APIView is exempt from Django's CSRF middleware; DRF's SessionAuthentication
    # enforces CSRF itself for session users.
    view.csrf_exempt = True
    # drf-spectacular enumerates views by `cls`; shop.schema.expand_method_views then
    # lists each method with its own APIView.
    view.cls, view.initkwargs = first.cls, first.initkwargs
    view.method_views = callbacks
    return view
