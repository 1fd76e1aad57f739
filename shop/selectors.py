"""Reads of the project's health: the database, the broker, the faults switched on."""

import threading
import time

from django.conf import settings
from django.db import connection
from django.utils import timezone
from kombu import Connection

from sagas import faults
from sagas import selectors as saga_selectors
from shop import brokers

# Together under the ~3 s a load balancer waits: a broker that is down answers at once
# (connection refused); one that accepts but never replies is cut off by these.
BROKER_TIMEOUT = 2.0


def health_database() -> str:
    """``"ok"``, or why ``SELECT 1`` failed."""
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
            cursor.fetchone()
    except Exception as exc:
        return _describe(exc)
    return "ok"


# One broker check per web process at a time, its answer shared for a moment: health
# is open to anyone, and each check opens a broker connection (up to BROKER_TIMEOUT on
# a broker that hangs). Without this, a few requests a second would tie up every web
# thread while the broker hangs, and cost a handshake each while it does not.
BROKER_ANSWER_SECONDS = 2.0
_broker_check = threading.Lock()
_broker_answer: dict[str, tuple[float, str]] = {}


def health_broker() -> str:
    """``"ok"``, or why no connection to the broker could be opened, as a check of
    at most BROKER_ANSWER_SECONDS ago found; concurrent callers share one check."""
    url = settings.CELERY_BROKER_URL
    with _broker_check:
        checked_at, answer = _broker_answer.get(url, (0.0, ""))
        if time.monotonic() - checked_at > BROKER_ANSWER_SECONDS:
            answer = _check_broker(url)
            _broker_answer[url] = (time.monotonic(), answer)
    return answer


def _check_broker(url: str) -> str:
    """Connect once, without the retries a worker would make. The URL is read at call
    time (the Celery app caches its configuration)."""
    broker = Connection(
        url,
        connect_timeout=BROKER_TIMEOUT,
        transport_options={
            **settings.CELERY_BROKER_TRANSPORT_OPTIONS,
            **brokers.socket_timeouts(url, timeout=BROKER_TIMEOUT),
        },
    )
    try:
        broker.ensure_connection(
            max_retries=1, interval_start=0, interval_step=0, timeout=BROKER_TIMEOUT
        )
    except Exception as exc:
        return _describe(exc)
    finally:
        broker.release()
    return "ok"


def health_sagas() -> dict[str, int]:
    """Sagas an operator should look at: FAILED ones, and overdue ones not yet
    recovered. Reported, not judged: the service itself is healthy either way."""
    return saga_selectors.sagas_needing_attention(now=timezone.now())


def health_faults() -> list[str]:
    """The SAGA_FAULTS entries in force, e.g. ``["payments.charge:transient:0.2"]``."""
    return [str(fault) for fault in faults.parse(settings.SAGA_FAULTS)]


def _describe(exc: Exception) -> str:
    return f"{exc.__class__.__name__}: {exc}"
