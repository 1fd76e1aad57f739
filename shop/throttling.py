"""Request rates: orders per customer, logins per address and username, anonymous
requests per address.

Each rate is a Django setting in DRF's syntax (``"60/min"``), read when a request is
checked (DRF's own classes read theirs once, at import), so a change to the setting,
a test's override included, applies at once. The counts are kept in the default
cache, which every web process must share: the database's by default (see CACHES).
"""

import hashlib

from django.conf import settings
from rest_framework import throttling
from rest_framework.request import Request


class SettingRateThrottle(throttling.SimpleRateThrottle):
    """A rate from the setting named by ``setting``; an answer always says when to
    come back (DRF has none to give after the rate was lowered below the count)."""

    setting = ""

    def get_rate(self) -> str:
        return getattr(settings, self.setting)

    def wait(self) -> float:
        wait = super().wait()
        # At least a second: Retry-After is whole seconds, and DRF omits a 0.
        return max(1.0, self.duration if wait is None else wait)


class OrderRateThrottle(SettingRateThrottle):
    """Orders placed per customer: ``ORDER_RATE_LIMIT``."""

    scope = "orders"
    setting = "ORDER_RATE_LIMIT"

    def get_cache_key(self, request, view) -> str | None:
        if not request.user.is_authenticated:
            return None  # refused as anonymous before it could order anything
        return self.cache_format % {"scope": self.scope, "ident": request.user.pk}


class LoginRateThrottle(SettingRateThrottle):
    """Login attempts (POSTs) per client address and username: ``LOGIN_RATE_LIMIT``.

    One guesser cannot lock a user out from everywhere, and AnonRateThrottle bounds
    what one address tries over many usernames. Works on the admin's plain Django
    request as on an API request.
    """

    scope = "login"
    setting = "LOGIN_RATE_LIMIT"

    def get_cache_key(self, request, view) -> str | None:
        if request.method != "POST":
            return None  # showing the login form is not an attempt
        username = _username(request).encode(errors="surrogatepass")
        # Hashed: a cache key must be short and printable, a username need not be.
        digest = hashlib.sha256(username).hexdigest()[:32]
        ident = f"{self.get_ident(request)}_{digest}"
        return self.cache_format % {"scope": self.scope, "ident": ident}


class AnonRateThrottle(SettingRateThrottle, throttling.AnonRateThrottle):
    """Requests without credentials per client address: ``ANON_RATE_LIMIT``."""

    setting = "ANON_RATE_LIMIT"


def _username(request) -> str:
    data = request.data if isinstance(request, Request) else request.POST
    username = data.get("username", "") if hasattr(data, "get") else ""
    return username if isinstance(username, str) else ""
