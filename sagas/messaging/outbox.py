"""The transactional outbox all apps share: one abstract table, one line per app.

A service writes its domain rows and its outbox row in one transaction, so an event
exists if and only if the change it announces committed. The relay
(sagas.messaging.relay) publishes pending rows afterwards, woken by a NOTIFY
PostgreSQL delivers at commit. An event nobody subscribes to is not written at all
(no row, no relay, no broker), unless OUTBOX_KEEP_UNSUBSCRIBED keeps it as a record,
written as already handled: the relay never reads it and its commit wakes no one.
"""

import uuid

from django.apps import apps
from django.conf import settings
from django.db import migrations, models
from django.db.models import Q
from django.utils import timezone

from sagas.messaging import subscriptions
from sagas.messaging.correlation import current, note_emitted
from shop import sql

NOTIFY_CHANNEL = "outbox"


class AbstractOutboxMessage(models.Model):
    message_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    topic = models.CharField(max_length=100)
    aggregate_id = models.CharField(max_length=100)
    payload = models.JSONField(default=dict)
    # Travels with the message: the saga it belongs to, its mode, the step at work.
    headers = models.JSONField(default=dict)
    saga_id = models.PositiveBigIntegerField(null=True, blank=True)  # from headers
    created_at = models.DateTimeField(auto_now_add=True)
    published_at = models.DateTimeField(null=True, blank=True)
    attempts = models.PositiveIntegerField(default=0)
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    last_error = models.TextField(blank=True)
    # Given up on: the row can never be published (not a broker outage, which is
    # retried for as long as it lasts). Kept, out of the relay's way, for an operator.
    dead_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        abstract = True
        ordering = ["id"]
        indexes = [
            # The relay only ever reads pending rows; this index stays small.
            models.Index(
                fields=["id"],
                name="%(app_label)s_outbox_due",
                condition=Q(published_at__isnull=True, dead_at__isnull=True),
            ),
            models.Index(
                fields=["aggregate_id"], name="%(app_label)s_outbox_aggregate"
            ),
            # A saga's own events, found again by the recovery sweep.
            models.Index(
                fields=["saga_id", "topic"],
                name="%(app_label)s_outbox_saga",
                condition=Q(saga_id__isnull=False),
            ),
        ]

    def __str__(self) -> str:
        return f"{self.topic} {self.aggregate_id}"

    @property
    def is_published(self) -> bool:
        return self.published_at is not None

    @property
    def is_dead(self) -> bool:
        return self.dead_at is not None


def outbox_emit(
    model: type[AbstractOutboxMessage],
    *,
    topic: str,
    aggregate_id: object,
    payload: dict,
    headers: dict | None = None,
) -> AbstractOutboxMessage | None:
    """Write one event; call it inside the transaction of the change it announces.

    It carries the headers of the saga at work (sagas.messaging.correlation). None
    when nobody subscribes to it and it is not kept (OUTBOX_KEEP_UNSUBSCRIBED).
    """
    headers = {**current(), **(headers or {})}
    note_emitted(topic, payload, headers)
    wanted = subscriptions.wanted(topic, headers)
    if not wanted and not settings.OUTBOX_KEEP_UNSUBSCRIBED:
        return None
    row = model(
        topic=topic,
        aggregate_id=str(aggregate_id),
        payload=payload,
        headers=headers,
        saga_id=headers.get("saga_id"),
        published_at=None if wanted else timezone.now(),
    )
    sql.insert(row)  # a prepared statement: most steps that change anything write one
    return row


def outbox_notify_trigger(table: str) -> migrations.RunSQL:
    """A migration operation: NOTIFY the relay at commit when a pending row is written.

    PostgreSQL folds identical notifications of one transaction into one, so a
    transaction that writes several events wakes the relay once.
    """
    function = f"{table}_notify"
    return migrations.RunSQL(
        sql=f"""
            CREATE FUNCTION {function}() RETURNS trigger AS $$
            BEGIN
                PERFORM pg_notify('{NOTIFY_CHANNEL}', TG_TABLE_NAME);
                RETURN NULL;
            END $$ LANGUAGE plpgsql;
            CREATE TRIGGER {function} AFTER INSERT ON {table}
                FOR EACH ROW WHEN (NEW.published_at IS NULL)
                EXECUTE FUNCTION {function}();
        """,
        reverse_sql=f"""
            DROP TRIGGER IF EXISTS {function} ON {table};
            DROP FUNCTION IF EXISTS {function}();
        """,
    )


def outbox_models() -> list[type[AbstractOutboxMessage]]:
    return [m for m in apps.get_models() if issubclass(m, AbstractOutboxMessage)]


def outbox_republish(rows: list[AbstractOutboxMessage]) -> None:
    """Send rows again (a loss the recovery sweep proved): the relay takes them as it
    takes new ones; every consumer drops a copy it already handled (its inbox)."""
    for row in rows:
        type(row).objects.filter(pk=row.pk).update(
            published_at=None, next_attempt_at=None, dead_at=None
        )
