"""Production mode (``SHOP_ENV=production``): the settings it refuses to start with.

Refused when the settings are read, not by a system check: gunicorn, the Celery
worker, beat and the relay never run system checks, and each of them must refuse.
"""

from django.core.checks.security.base import (
    SECRET_KEY_INSECURE_PREFIX,
    SECRET_KEY_MIN_LENGTH,
    SECRET_KEY_MIN_UNIQUE_CHARACTERS,
)
from django.core.exceptions import ImproperlyConfigured

MODES = ("development", "production")


def is_production(mode: str) -> bool:
    if mode not in MODES:
        # A typo ("prod") must not quietly run a deployment in development mode.
        raise ImproperlyConfigured(f"SHOP_ENV is {mode!r}; it must be one of {MODES}")
    return mode == "production"


# A scraper's token, as long as Django asks a SECRET_KEY to be, less the variety.
METRICS_TOKEN_MIN_LENGTH = 32


def refuse_weak_metrics_token(token: str) -> None:
    """No token is no metrics (fine); a short one would be guessed."""
    if token and len(token) < METRICS_TOKEN_MIN_LENGTH:
        raise ImproperlyConfigured(
            f"METRICS_TOKEN is too short for production mode: it needs at least "
            f"{METRICS_TOKEN_MIN_LENGTH} characters; make one with: python -c "
            "'import secrets; print(secrets.token_urlsafe(32))'"
        )


def refuse_unsafe_settings(*, debug: bool, secret_key: str) -> None:
    """Raise ImproperlyConfigured for DEBUG on, or a SECRET_KEY that `manage.py check
    --deploy` would call weak (Django's own limits: security.W009)."""
    if debug:
        raise ImproperlyConfigured(
            "DEBUG is on in production mode (SHOP_ENV=production): its error pages "
            "show settings and source to anyone; unset DEBUG"
        )
    if (
        len(secret_key) < SECRET_KEY_MIN_LENGTH
        or len(set(secret_key)) < SECRET_KEY_MIN_UNIQUE_CHARACTERS
        or secret_key.startswith(SECRET_KEY_INSECURE_PREFIX)
    ):
        raise ImproperlyConfigured(
            f"SECRET_KEY is too weak for production mode: it needs at least "
            f"{SECRET_KEY_MIN_LENGTH} characters, {SECRET_KEY_MIN_UNIQUE_CHARACTERS} "
            f"of them different, and not Django's {SECRET_KEY_INSECURE_PREFIX!r} "
            f"default; make one with: python -c 'import secrets; "
            f"print(secrets.token_urlsafe(50))'"
        )
