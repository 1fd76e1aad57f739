"""The outbox relay on the real broker: what it publishes and what it sets aside."""

import threading
import time
from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from payments.models import OutboxMessage as PaymentsOutbox
from sagas import selectors
from sagas.messaging.relay import outbox_relay, relay_forever
from sagas.models import OutboxMessage

pytestmark = pytest.mark.django_db


# A saga id no test creates: the session's worker, if one runs, may take the chain
# this test publishes, and must find nothing to do.
NO_SUCH_SAGA = 2**62


def dispatch(saga_name: str) -> OutboxMessage:
    payload = {
        "saga_id": NO_SUCH_SAGA,
        "saga": saga_name,
        "generation": 1,
        "countdown": 0,
        "direction": "forward",
        "from_step": 0,
    }
    return OutboxMessage.objects.create(
        topic="SagaStarted", aggregate_id=str(NO_SUCH_SAGA), payload=payload
    )


def test_a_row_that_can_never_be_published_is_set_aside_and_the_rest_go_out():
    gone = dispatch("no_longer_defined")  # its definition was removed
    good = dispatch("purchase")

    assert outbox_relay(models=[OutboxMessage]) == 1

    gone.refresh_from_db()
    assert gone.published_at is None and gone.dead_at is not None
    assert "no saga named 'no_longer_defined'" in gone.last_error
    good.refresh_from_db()
    assert good.published_at is not None
    # Set aside for good: the relay does not claim it again.
    assert outbox_relay(models=[OutboxMessage]) == 0
    gone.refresh_from_db()
    assert gone.attempts == 1


def test_a_row_without_a_subscriber_is_marked_published_without_a_broker_call():
    row = OutboxMessage.objects.create(topic="NobodyListens", aggregate_id="1")
    assert outbox_relay(models=[OutboxMessage]) == 1
    row.refresh_from_db()
    assert row.published_at <= timezone.now()


def test_an_announced_outbox_is_claimed_from_without_looking_first():
    def relay_one(announced: bool) -> int:
        """Round trips to relay one new row."""
        row = OutboxMessage.objects.create(topic="NobodyListens", aggregate_id="1")
        with CaptureQueriesContext(connection) as queries:
            assert outbox_relay(models=[OutboxMessage], announced=announced) == 1
        row.refresh_from_db()
        assert row.published_at is not None
        return len(queries)

    relay_one(False)  # its statements prepared on this connection
    relay_one(True)
    # The look (which outboxes have a row due) costs a round trip on every saga's
    # launch; a wake-up by the commit that wrote the row knows the answer.
    assert relay_one(True) == relay_one(False) - 1


def test_an_announced_outbox_still_waits_for_a_postponed_row():
    later = timezone.now() + timedelta(minutes=1)
    OutboxMessage.objects.create(
        topic="NobodyListens", aggregate_id="1", next_attempt_at=later
    )
    assert outbox_relay(models=[OutboxMessage], announced=True) == 0


def keep_writing(model, *, until: float, errors: list) -> None:
    """Commit a pending row of ``model`` every 20 ms (a NOTIFY each) until ``until``."""
    try:
        while time.monotonic() < until:
            model.objects.create(topic="NobodyListens", aggregate_id="busy")
            time.sleep(0.02)
    except Exception as exc:  # the test fails on it: without it, the relay polls
        errors.append(exc)
    finally:
        connection.close()  # this thread's own


@pytest.mark.django_db(transaction=True)  # the relay's commits and NOTIFYs are real
def test_a_row_no_commit_announces_goes_out_while_another_outbox_keeps_it_busy(
    monkeypatch,
):
    # A postponed row comes due, which no commit announces, while another outbox's
    # commits wake the relay every 20 ms, more often than it polls.
    looks = []
    look = selectors.outboxes_due
    monkeypatch.setattr(
        selectors, "outboxes_due", lambda **kw: looks.append(1) or look(**kw)
    )
    quiet = PaymentsOutbox.objects.create(
        topic="NobodyListens",
        aggregate_id="1",
        next_attempt_at=timezone.now() + timedelta(seconds=0.3),
    )
    stop, errors = time.monotonic() + 2.5, []
    # Writing on past the relay's stop: its last wake-ups are notifications too.
    busy = threading.Thread(
        target=keep_writing,
        args=(OutboxMessage,),
        kwargs={"until": stop + 0.6, "errors": errors},
    )
    busy.start()
    try:
        relay_forever(poll=0.5, batch=100, should_stop=lambda: time.monotonic() > stop)
    finally:
        busy.join()
    assert not errors and OutboxMessage.objects.count() > 60  # it kept it busy
    quiet.refresh_from_db()
    assert quiet.published_at is not None
    # A look everywhere about once a poll interval, not at every wake-up.
    assert 3 <= len(looks) <= 8


@pytest.mark.django_db(transaction=True)
def test_a_backlog_in_one_outbox_holds_up_none_of_the_others():
    OutboxMessage.objects.bulk_create(
        OutboxMessage(topic="NobodyListens", aggregate_id="backlog") for _ in range(300)
    )
    other = PaymentsOutbox.objects.create(topic="NobodyListens", aggregate_id="1")

    assert outbox_relay(batch=10) == 301

    other.refresh_from_db()
    last = OutboxMessage.objects.order_by("-published_at").first()
    assert other.published_at < last.published_at  # in the first round, not the last
