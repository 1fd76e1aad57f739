"""``GET /metrics``: every process's metrics in the Prometheus text format, for a
scraper that holds METRICS_TOKEN.

In multiprocess mode (PROMETHEUS_MULTIPROC_DIR, set by `make run` for the web, the
workers, beat and the relay) each process writes its counters to files there and this
view adds them up, so the web's answer includes what every worker process counted.
The outbox gauges are measured as it answers (sagas.telemetry.OutboxBacklog).
"""

import hmac
import os

from django.conf import settings
from django.http import Http404, HttpRequest, HttpResponse
from django.views.decorators.http import require_safe
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    generate_latest,
    multiprocess,
)

from sagas.telemetry import OutboxBacklog


@require_safe
def metrics(request: HttpRequest) -> HttpResponse:
    """404 while no METRICS_TOKEN is set: there is nothing to read then, and a
    scraper is told nothing more. 401 without ``Authorization: Bearer <token>`` (as
    Prometheus's ``authorization`` sends it), compared in constant time."""
    token = settings.METRICS_TOKEN
    if not token:
        raise Http404("no metrics here")
    scheme, _, given = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(
        given.strip().encode(), token.encode()
    ):
        refused = HttpResponse(
            "metrics need Authorization: Bearer <METRICS_TOKEN>\n",
            status=401,
            content_type="text/plain",
        )
        refused["WWW-Authenticate"] = 'Bearer realm="metrics"'
        return refused
    return HttpResponse(exposition(), content_type=CONTENT_TYPE_LATEST)


def exposition() -> bytes:
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        processes = CollectorRegistry()
        multiprocess.MultiProcessCollector(processes)
    else:  # one process (runserver, a test): its own metrics
        processes = REGISTRY
    measured = CollectorRegistry(auto_describe=False)
    measured.register(OutboxBacklog())
    return generate_latest(processes) + generate_latest(measured)
