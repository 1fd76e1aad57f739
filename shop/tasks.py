"""Celery entry points of the project: cleaning the rate limits' old counts."""

from datetime import timedelta

from celery import shared_task
from django.utils import timezone

from shop.services import request_counts_clean


@shared_task(name="shop.clean_request_counts", ignore_result=True, send_events=False)
def clean_request_counts() -> int:
    """Windows that ended a minute ago or more count for nothing any more."""
    return request_counts_clean(before=timezone.now() - timedelta(minutes=1))
