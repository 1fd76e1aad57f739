"""One URL served by one APIView per HTTP method (``GET`` lists, ``POST`` creates)."""

from django.http import HttpRequest
from rest_framework.views import APIView


def method_view(**views: type[APIView]):
    """A view that hands each request to the APIView registered for its method.

    ``method_view(get=OrderListApi, post=OrderCreateApi)`` keeps one operation per
    APIView while both live at ``/api/orders/``. A method none of them serves goes to
    the first, which answers 405 in the API's error shape.
    """
    callbacks = {method.upper(): view.as_view() for method, view in views.items()}
    first = next(iter(callbacks.values()))

    def view(request: HttpRequest, *args, **kwargs):
        method = "GET" if request.method == "HEAD" else request.method
        return callbacks.get(method, first)(request, *args, **kwargs)

    # Each APIView is exempt from Django's CSRF middleware; DRF's SessionAuthentication
    # enforces CSRF itself for session users.
    view.csrf_exempt = True
    # drf-spectacular enumerates views by `cls`; shop.schema.expand_method_views then
    # lists each method with its own APIView.
    view.cls, view.initkwargs = first.cls, first.initkwargs
    view.method_views = callbacks
    return view
