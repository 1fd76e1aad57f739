"""Run the outbox relay: publish events as their transactions commit."""

import logging
import signal
import threading
from argparse import ArgumentTypeError

from django.core.management.base import BaseCommand

from sagas.messaging.relay import relay_forever

logger = logging.getLogger("sagas.messaging.relay")


class Command(BaseCommand):
    help = (
        "Publish outbox rows as they commit (woken by NOTIFY), polling as a fallback."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument(
            "--poll", type=positive(float), default=1.0, help="seconds between polls"
        )
        parser.add_argument(
            "--batch", type=positive(int), default=100, help="rows per transaction"
        )

    def handle(self, *args, poll: float, batch: int, **options) -> None:
        stop = threading.Event()
        for signum in (signal.SIGINT, signal.SIGTERM):
            signal.signal(signum, lambda *_: stop.set())
        # Log lines, in LOG_FORMAT like the rest of the relay's output.
        logger.info("relay: listening (poll every %gs)", poll)
        relay_forever(poll=poll, batch=batch, should_stop=stop.is_set)
        logger.info("relay: stopped")


def positive(cast):
    """An argparse type: a number of ``cast`` greater than zero."""

    def parse(text: str):
        value = cast(text)
        if value <= 0:
            raise ArgumentTypeError(f"must be greater than 0, not {text}")
        return value

    return parse
