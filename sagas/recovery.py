"""The recovery sweep: find sagas whose work in flight was lost, and send it again.

Overdue is not lost: under a backlog a saga's work waits in the broker long past its
deadline. Work is resent only once a queue probe proves the queues have been consumed
past it (sagas.probes); each mode's runner then decides what "again" means. A saga a
worker is executing holds its row lock and is skipped.
"""

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from sagas import bookkeeping, probes, registry, selectors
from sagas.definitions.base import HARD_LIMIT_SLACK
from sagas.failures import describe
from sagas.lifecycle import runner_of

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Consumed:
    """How far the saga queues are known consumed, each minus a margin for the moment
    between a step's commit and its next message, and for clocks that differ between
    hosts (SAGA_RECOVERY_GRACE)."""

    promptly: datetime | None  # work a worker starts as it takes it
    after_countdown: datetime | None  # work a worker holds until it is due

    def proves_lost(self, sent: datetime, *, countdown: bool = False) -> bool:
        """Was work sent at ``sent`` (due then, after a countdown) taken long enough
        ago that it would have started by now, had it arrived?"""
        mark = self.after_countdown if countdown else self.promptly
        return mark is not None and sent < mark


def sagas_recover(*, limit: int = 100) -> int:
    """Send again the work of every saga whose work in flight was lost; return how
    many overdue sagas were looked at."""
    now = timezone.now()
    consumed = queues_consumed(now)
    with transaction.atomic(durable=True):
        overdue = selectors.sagas_overdue_lock(
            now=now, sent_before=consumed.promptly, limit=limit
        )
        for saga in overdue:
            try:
                with transaction.atomic():  # a savepoint: one bad saga stops no other
                    runner_of(saga).saga_recover(saga, now, consumed)
            except Exception as exc:
                logger.exception("saga %s could not be recovered", saga.pk)
                why = f"the recovery sweep cannot handle it: {describe(exc)}"
                bookkeeping.flag_broken(saga, now, why)
    if selectors.sagas_overdue_unproven(now=now, sent_before=consumed.promptly):
        probes.probes_send(now=now)  # after the commit: no lock waits on the broker
    return len(overdue)


def queues_consumed(now: datetime) -> Consumed:
    grace = settings.SAGA_RECOVERY_GRACE
    margin = timedelta(seconds=grace)

    def consumed(settle: float) -> datetime | None:
        mark = probes.queues_consumed_up_to(now=now, settle=settle)
        return None if mark is None else mark - margin

    return Consumed(consumed(grace), consumed(grace + longest_run()))


def longest_run() -> float:
    """The longest any saga task may hold a worker process: its hard time limit."""
    timeouts = [u.task.soft_time_limit or 0 for u in registry.units()]
    return HARD_LIMIT_SLACK + max([*timeouts, settings.SAGA_STEP_TIMEOUT])
