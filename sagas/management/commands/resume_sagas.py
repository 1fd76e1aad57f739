"""Recover now: publish stranded outbox rows and resend the work of stalled sagas."""

from django.core.management.base import BaseCommand

from sagas.messaging.relay import outbox_relay
from sagas.recovery import sagas_recover


class Command(BaseCommand):
    help = (
        "Publish unpublished outbox rows and drive every overdue saga forward or back."
    )

    def handle(self, *args, **options) -> None:
        published = outbox_relay()
        total, batch = 0, 500
        # Each recovery moves a saga's deadline on; a short batch means none is left.
        while (recovered := sagas_recover(limit=batch)) == batch:
            total += recovered
        total += recovered
        published += outbox_relay()
        self.stdout.write(f"published {published} outbox rows, recovered {total} sagas")
