"""Recover now: publish stranded outbox rows and resend the work of stalled sagas."""

from django.core.management.base import BaseCommand

from sagas.relay import outbox_relay
from sagas.services import sagas_recover


class Command(BaseCommand):
    help = (
        "Publish unpublished outbox rows and drive every overdue saga forward or back."
    )

    def handle(self, *args, **options) -> None:
        published = outbox_relay()
        total = 0
        while recovered := sagas_recover():  # each recovery moves the deadline on
            total += recovered
        published += outbox_relay()
        self.stdout.write(f"published {published} outbox rows, recovered {total} sagas")
