"""The Celery application, configured from Django settings (CELERY_ namespace)."""

import os

from celery import Celery
from celery.app.events import Events
from celery.events.dispatcher import EventDispatcher
from celery.signals import setup_logging, task_postrun, task_prerun, worker_init

from sagas.messaging import tracing
from shop import brokers, memory, timelimits

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "shop.settings")
brokers.release_prefetch_slot_on_failed_ack()
brokers.reuse_redis_clients()


class BoundedEventDispatcher(EventDispatcher):
    """Sends worker and task events with one try, never retrying forever.

    A worker sends its heartbeat from its main loop with ``retry=True`` and no limit:
    on a broker that accepts connections and never answers, the loop would retry,
    each try cut by the socket timeout, until the broker came back, and handle no time
    limit, result or acknowledgement meanwhile. With one try an event that cannot be
    sent is kept in the dispatcher's buffer and sent later.
    """

    def _publish(self, event, producer, routing_key, retry=False, retry_policy=None):
        return super()._publish(
            event,
            producer,
            routing_key,
            retry=retry,
            retry_policy=retry_policy or {"max_retries": 0},
        )


class BoundedEvents(Events):
    dispatcher_cls = BoundedEventDispatcher


app = Celery("shop", events=BoundedEvents)
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
# Celery's "Task ... received" lines carry the saga of the message.
app.steps["consumer"].add(tracing.BindHeadersOnReceipt)
# A solo worker (one per core: the fastest layout) enforces the steps' time limits.
worker_init.connect(timelimits.enforce_in_solo_workers)
# Failed tasks leave reference cycles: collected at once, so workers stay flat.
worker_init.connect(memory.freeze_what_is_loaded)
task_postrun.connect(memory.note_how_it_ended)
task_prerun.connect(memory.collect_after_a_failure)


@setup_logging.connect
def configure_logging(loglevel=None, **kwargs) -> None:
    """Workers and beat log as every process does (settings.LOGGING, LOG_FORMAT),
    not with handlers of Celery's own, at the level their command line asks for
    (``-l``: `make run` asks for info, the bench for warning)."""
    import logging

    from django.conf import settings

    from shop.observability.logs import configure

    configure(settings.LOGGING)
    if loglevel:
        logging.getLogger().setLevel(loglevel)


@task_prerun.connect
@task_postrun.connect
def close_unusable_connections(sender=None, **kwargs) -> None:
    """Drop a database connection its server ended, or a broken or expired one,
    around every task, as the web process does around every request. Celery's own
    fixup does not while connections are reused (CELERY_DB_REUSE_MAX): after a
    PostgreSQL restart, the first task in each worker process would fail on its
    dead connection. First, one a task left inside an atomic block is let go.
    Not around a task run inline by its caller (``apply``), whose transaction may
    be open, as Celery's fixup leaves those alone."""
    if getattr(getattr(sender, "request", None), "is_eager", False):
        return
    from django.db import close_old_connections

    from shop.connections import close_dead_connections, end_abandoned_transactions

    end_abandoned_transactions()
    close_dead_connections()
    close_old_connections()
