"""The inbox every consuming app keeps: which messages it has already handled.

A consumer records the message id (the outbox row's own UUID, which a redelivery, a
republish and a resend all keep) in the same transaction as its work: a second copy
finds the row and does nothing. One abstract table, one line per consuming app, as
for the outbox. Rows older than INBOX_RETENTION_DAYS are deleted by beat: that long
is the window in which a duplicate is recognised.
"""

import uuid
from datetime import timedelta

from django.apps import apps
from django.db import models
from django.utils import timezone

from sagas import telemetry
from sagas.cleaning import delete_in_batches
from shop import sql


class AbstractInboxMessage(models.Model):
    consumer = models.CharField(max_length=100)  # the handler, e.g. "charge_payment"
    message_id = models.UUIDField()
    topic = models.CharField(max_length=100)
    received_at = models.DateTimeField(default=timezone.now)

    class Meta:
        abstract = True
        ordering = ["id"]
        constraints = [
            models.UniqueConstraint(
                fields=["consumer", "message_id"],
                name="%(app_label)s_inbox_once",
            ),
        ]
        indexes = [
            models.Index(fields=["received_at"], name="%(app_label)s_inbox_age"),
        ]

    def __str__(self) -> str:
        return f"{self.consumer} got {self.topic} {self.message_id}"


def inbox_accept(
    model: type[AbstractInboxMessage],
    *,
    consumer: str,
    message_id: str,
    topic: str,
) -> bool:
    """Record a message as handled by ``consumer``; False if it already was.

    Call it inside the transaction of the handling: if that rolls back, the message
    counts as never received. One statement; a concurrent copy waits for this one's
    transaction and then finds its row.
    """
    table = model._meta.db_table
    accepted = bool(
        sql.fetch(
            f"INSERT INTO {table} (consumer, message_id, topic, received_at) "
            "VALUES (%s, %s, %s, now()) ON CONFLICT DO NOTHING RETURNING id",
            [consumer, uuid.UUID(message_id), topic],
        )
    )
    if not accepted:
        telemetry.inbox_duplicate(
            model, consumer=consumer, message_id=message_id, topic=topic
        )
    return accepted


def inbox_models() -> list[type[AbstractInboxMessage]]:
    return [m for m in apps.get_models() if issubclass(m, AbstractInboxMessage)]


def inbox_clean(*, days: int) -> int:
    """Delete what is older than the window in which duplicates are recognised."""
    cutoff = timezone.now() - timedelta(days=days)
    return sum(
        delete_in_batches(model.objects.filter(received_at__lt=cutoff))
        for model in inbox_models()
    )
