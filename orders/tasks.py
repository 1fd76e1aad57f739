"""Celery entry points of orders: the scheduled reconciliation of purchases."""

import logging

from celery import shared_task

from orders.reconcile import reconcile

logger = logging.getLogger(__name__)


@shared_task(name="orders.reconcile", send_events=False)
def reconcile_purchases() -> int:
    """Report every violation of the purchase invariants; repairs stay with a human."""
    report = reconcile(repair=False)
    for violation in report.violations:
        logger.warning(
            "reconcile: %s",
            violation,
            extra={"kind": str(violation.kind), **violation.ids},
        )
    return len(report.violations)
