"""Request rates: orders per customer, logins per address and username, anonymous
requests per address.

Each rate is a Django setting in DRF's syntax (``"60/min"``), read when a request is
checked, so a change to the setting (a test's override included) applies at once.
Requests are counted in fixed windows of the rate's period, in PostgreSQL, with one
atomic upsert per counted request (shop.services.request_count_increment): every web
process sees the same counts, and requests arriving together cannot slip through
together. A refused request counts too, so hammering does not reopen the window.
"""

import hashlib
import math
import time
from datetime import UTC, datetime

from django.conf import settings
from rest_framework import throttling
from rest_framework.request import Request

from shop.services import request_count_increment


class CountingRateThrottle(throttling.BaseThrottle):
    """Allows ``n`` requests per key per window, as the setting ``setting`` says."""

    setting = ""
    scope = ""

    def __init__(self) -> None:
        self.num_requests, self.duration = self.rate()
        self.retry_at = 0.0

    def rate(self) -> tuple[int, int]:
        # DRF's parser: "60/min" -> (60, 60); an unknown period raises KeyError.
        return throttling.SimpleRateThrottle.parse_rate(
            None, getattr(settings, self.setting)
        )

    def key(self, request, view) -> str | None:
        raise NotImplementedError

    def allow_request(self, request, view) -> bool:
        key = self.key(request, view)
        if key is None:
            return True
        now = time.time()
        window_end = (math.floor(now / self.duration) + 1) * self.duration
        self.retry_at = window_end
        count = request_count_increment(
            key=f"{self.scope}:{key}",
            window_end=datetime.fromtimestamp(window_end, tz=UTC),
        )
        return count <= self.num_requests

    def wait(self) -> float:
        # At least a second: Retry-After is whole seconds, and DRF omits a 0.
        return max(1.0, self.retry_at - time.time())


class OrderRateThrottle(CountingRateThrottle):
    """Orders placed per customer: ``ORDER_RATE_LIMIT``."""

    scope = "orders"
    setting = "ORDER_RATE_LIMIT"

    def key(self, request, view) -> str | None:
        if not request.user.is_authenticated:
            return None  # refused as anonymous before it could order anything
        return str(request.user.pk)


class LoginRateThrottle(CountingRateThrottle):
    """Login attempts (POSTs) per client address and username: ``LOGIN_RATE_LIMIT``.

    One guesser cannot lock a user out from everywhere, and AnonRateThrottle bounds
    what one address tries over many usernames. Works on the admin's plain Django
    request as on an API request.
    """

    scope = "login"
    setting = "LOGIN_RATE_LIMIT"

    def key(self, request, view) -> str | None:
        if request.method != "POST":
            return None  # showing the login form is not an attempt
        username = _username(request).encode(errors="surrogatepass")
        # Hashed: a key must be short and printable, a username need not be.
        return f"{self.get_ident(request)}:{hashlib.sha256(username).hexdigest()[:32]}"


class AnonRateThrottle(CountingRateThrottle):
    """Requests without credentials per client address: ``ANON_RATE_LIMIT``."""

    scope = "anon"
    setting = "ANON_RATE_LIMIT"

    def key(self, request, view) -> str | None:
        if request.user and request.user.is_authenticated:
            return None
        return self.get_ident(request)


def _username(request) -> str:
    data = request.data if isinstance(request, Request) else request.POST
    username = data.get("username", "") if hasattr(data, "get") else ""
    return username if isinstance(username, str) else ""
