"""Queue probes: how far each saga queue has been consumed, so lost work is proven lost.

A saga whose deadline passed is either lost (a killed worker, a restarted broker) or
queued behind a backlog, and the deadline alone cannot tell which. A probe can: it is
a tiny task sent down a queue, and when a worker runs it, every message sent to that
queue before it has been taken by a worker (queues are first in, first out). Work sent
before the probe that has still not moved was lost. A probe counts once it has been
seen for long enough that a message taken before it has started meanwhile: the
recovery grace, or for work that waited out a countdown inside a worker (which holds
it until it is due, then needs a free process), the grace plus the longest a step
may run.

At most one probe per queue is on its way at a time, so a backlog of any size costs
one message per queue, not one per saga. Each arrival is kept: a probe may have to
settle for longer than the sweep sends them (for work that waited out a countdown),
so the measure is the newest arrival old enough, not the newest arrival.
"""

import logging
from datetime import datetime, timedelta

from celery import current_app
from django.conf import settings

from sagas import registry
from sagas.messaging import subscriptions
from sagas.models import QueueProbe, QueueProbeArrival

logger = logging.getLogger(__name__)

PROBE_TASK = "sagas.probe_queue"
# Arrivals older than this are dropped, but the newest of them: longer than any
# settling time the sweep asks about (the grace plus the longest step, by default).
ARRIVALS_KEPT = 3600.0


def saga_queues() -> list[str]:
    """Every queue a saga's work travels on: its step tasks' and their failures',
    and every subscriber's (the apps' reactions)."""
    queues = {unit.task.queue for unit in registry.units()}
    queues.add(current_app.tasks["sagas.record_failure"].queue)
    queues |= {s.queue for s in subscriptions.all_subscriptions()}
    return sorted(q for q in queues if q)


def queues_consumed_up_to(*, now: datetime, settle: float) -> datetime | None:
    """Work sent to any saga queue before this has reached a worker and started, if
    a worker starts what it takes within ``settle`` seconds; None: not known yet."""
    settled = now - timedelta(seconds=settle)
    marks = []
    for queue in saga_queues():
        mark = (
            QueueProbeArrival.objects.filter(queue=queue, reached_at__lte=settled)
            .order_by("-sent_at")
            .values_list("sent_at", flat=True)
            .first()
        )
        if mark is None:
            return None
        marks.append(mark)
    return min(marks) if marks else None


def probes_send(*, now: datetime) -> int:
    """Send a probe down every saga queue that has none on its way; return how many.

    Called outside any transaction: a broker that does not answer holds no lock.
    A probe that does not arrive within SAGA_PROBE_RESEND is sent again.
    """
    resend_before = now - timedelta(seconds=settings.SAGA_PROBE_RESEND)
    sent = 0
    for queue in saga_queues():
        probe, _ = QueueProbe.objects.get_or_create(queue=queue)
        if probe.sent_at is not None and probe.sent_at > resend_before:
            continue  # one on its way is enough
        try:
            current_app.send_task(
                PROBE_TASK, args=(queue, now.isoformat()), queue=queue
            )
        except Exception as exc:  # the broker is away: the next sweep tries again
            logger.warning("probe of queue %s not sent: %r", queue, exc)
            continue
        QueueProbe.objects.filter(queue=queue).update(sent_at=now)
        sent += 1
    return sent


def probe_arrived(*, queue: str, sent_at: datetime, now: datetime) -> None:
    """Record that the probe sent at ``sent_at`` reached a worker.

    Arrivals are kept a while (each answers for a different settling time), then
    dropped; the probe on its way is no longer."""
    QueueProbeArrival.objects.create(queue=queue, sent_at=sent_at, reached_at=now)
    QueueProbe.objects.filter(queue=queue, sent_at__lte=sent_at).update(sent_at=None)
    kept_since = now - timedelta(seconds=ARRIVALS_KEPT)
    QueueProbeArrival.objects.filter(queue=queue, reached_at__lt=kept_since).exclude(
        pk__in=QueueProbeArrival.objects.filter(queue=queue, reached_at__lt=kept_since)
        .order_by("-reached_at")
        .values("pk")[:1]
    ).delete()
