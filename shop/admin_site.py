"""The admin site: Django's, with its login attempts throttled like the API's and
the dashboards linked from its index."""

from django.contrib import admin
from django.http import HttpRequest, HttpResponse

from shop.throttling import AnonRateThrottle, LoginRateThrottle


class ShopAdminSite(admin.AdminSite):
    # Django's index, with a link to the saga dashboard above the apps.
    index_template = "admin/shop/index.html"

    def login(self, request: HttpRequest, extra_context=None) -> HttpResponse:
        """Django's login view behind the API login's throttles: LOGIN_RATE_LIMIT per
        address and username, ANON_RATE_LIMIT per address, for each attempt (POST)."""
        if request.method == "POST":
            for throttle in (LoginRateThrottle(), AnonRateThrottle()):
                if not throttle.allow_request(request, None):
                    return too_many_attempts(throttle.wait())
        return super().login(request, extra_context)


def too_many_attempts(wait: float) -> HttpResponse:
    seconds = int(-(-wait // 1))  # whole seconds, rounded up, as DRF's Retry-After
    return HttpResponse(
        f"Too many login attempts. Try again in {seconds} seconds.\n",
        status=429,
        content_type="text/plain; charset=utf-8",
        headers={"Retry-After": str(seconds)},
    )
