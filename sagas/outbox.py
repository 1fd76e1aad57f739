"""The transactional outbox all apps share: one abstract table, one line per app.

A service writes its domain rows and its outbox row in one transaction, so an event
exists if and only if the change it announces committed. The relay (sagas.relay)
publishes pending rows afterwards, woken by a NOTIFY PostgreSQL delivers at commit.
"""

import uuid

from django.db import migrations, models
from django.db.models import Q

NOTIFY_CHANNEL = "outbox"


class AbstractOutboxMessage(models.Model):
    message_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    topic = models.CharField(max_length=100)
    aggregate_id = models.CharField(max_length=100)
    payload = models.JSONField(default=dict)
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
) -> AbstractOutboxMessage:
    """Write one event; call it inside the transaction of the change it announces."""
    return model.objects.create(
        topic=topic, aggregate_id=str(aggregate_id), payload=payload
    )


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
