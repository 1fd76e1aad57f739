"""Old inbox rows go in batches; the ones still inside the window stay."""

import uuid
from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from orders.models import InboxMessage
from sagas.cleaning import delete_in_batches
from sagas.messaging.inbox import inbox_clean

pytestmark = pytest.mark.django_db


def received(days_ago: float) -> InboxMessage:
    row = InboxMessage.objects.create(
        consumer="tracker", message_id=uuid.uuid4(), topic="Something"
    )
    at = timezone.now() - timedelta(days=days_ago)
    InboxMessage.objects.filter(pk=row.pk).update(received_at=at)
    return row


def test_inbox_rows_past_the_window_are_deleted_and_the_rest_kept():
    old = [received(8) for _ in range(3)]
    kept = received(6)

    assert inbox_clean(days=7) == len(old)
    assert list(InboxMessage.objects.values_list("pk", flat=True)) == [kept.pk]


def test_rows_are_deleted_a_batch_at_a_time_until_none_is_left():
    rows = [received(8) for _ in range(5)]

    with CaptureQueriesContext(connection) as queries:
        deleted = delete_in_batches(InboxMessage.objects.all(), batch=2)
    statements = [q["sql"] for q in queries if q["sql"].startswith("DELETE")]

    assert deleted == len(rows)
    assert len(statements) == 3  # 2 + 2 + 1
    assert not InboxMessage.objects.exists()
