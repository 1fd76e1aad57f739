"""Celery entry points of the engine's upkeep: the relay's sweep, the recovery sweep
and its queue probes, and cleaning what is kept only for a while.

The tasks that run sagas are in sagas.orchestration.tasks and sagas.choreography.tasks
(imported here, so that Celery's autodiscovery finds them). Upkeep sends no task events
(``send_events=False``, and beat sends none): Flower shows the sagas' work, not a sweep
every few seconds."""

from datetime import datetime, timedelta

from celery import shared_task
from django.conf import settings
from django.utils import timezone

from sagas import barriers, probes, recovery
from sagas.choreography import tasks as choreography_tasks  # noqa: F401
from sagas.messaging import relay
from sagas.messaging.inbox import inbox_clean
from sagas.orchestration import tasks as orchestration_tasks  # noqa: F401


@shared_task(name="sagas.relay_outbox", ignore_result=True, send_events=False)
def relay_outbox() -> int:
    """The safety net behind the relay process: publish rows it has not picked up."""
    return relay.outbox_relay(min_age=timedelta(seconds=2))


# Every few seconds: no result row each time (the cleaning tasks and reconciliation,
# hourly or rarer, keep theirs for operators to read).
@shared_task(name="sagas.recover_sagas", ignore_result=True, send_events=False)
def recover_sagas() -> int:
    return recovery.sagas_recover()


@shared_task(name=probes.PROBE_TASK, ignore_result=True, send_events=False)
def probe_queue(queue: str, sent_at: str) -> None:
    """A probe sent down a saga queue by the recovery sweep has reached a worker."""
    probes.probe_arrived(
        queue=queue, sent_at=datetime.fromisoformat(sent_at), now=timezone.now()
    )


@shared_task(name="sagas.clean_outbox", send_events=False)
def clean_outbox() -> int:
    return relay.outbox_clean(days=settings.MESSAGE_RETENTION_DAYS)


@shared_task(name="sagas.clean_inboxes", send_events=False)
def clean_inboxes() -> int:
    """Forget handled messages after the window in which a copy can still come."""
    return inbox_clean(days=settings.INBOX_RETENTION_DAYS)


@shared_task(name="sagas.clean_barriers", send_events=False)
def clean_barriers() -> int:
    """Barriers of sagas ended long enough ago guard nothing any more."""
    ended_before = timezone.now() - timedelta(days=settings.BARRIER_RETENTION_DAYS)
    return barriers.barriers_clean(ended_before=ended_before)
