"""The outbox relay on the real broker: what it publishes and what it sets aside."""

import contextlib
import time

import pytest
from django.db import transaction
from django.utils import timezone

from sagas.messaging import relay, subscriptions
from sagas.messaging.outbox import outbox_emit
from sagas.messaging.relay import outbox_relay
from sagas.models import OutboxMessage

pytestmark = pytest.mark.django_db


# A saga id no test creates: the session's worker, if one runs, may take the chain
# this test publishes, and must find nothing to do.
NO_SUCH_SAGA = 2**62


def dispatch_payload(saga_name: str) -> dict:
    return {
        "saga_id": NO_SUCH_SAGA,
        "saga": saga_name,
        "generation": 1,
        "countdown": 0,
        "direction": "forward",
        "from_step": 0,
    }


def dispatch(saga_name: str) -> OutboxMessage:
    return OutboxMessage.objects.create(
        topic="SagaStarted",
        aggregate_id=str(NO_SUCH_SAGA),
        payload=dispatch_payload(saga_name),
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


# SENT AT COMMIT ----------------------------------------------------------------------


@pytest.fixture
def refused_by_the_broker():
    """A topic whose publishing fails as a broker that is away fails it."""
    topic = "TestBrokerAway"
    calls = []

    @subscriptions.route(topic)
    def publish(row, producer, **options):
        calls.append(row.pk)
        raise ConnectionRefusedError("the broker is away")

    yield topic, calls
    subscriptions._routes.pop(topic)
    relay._send_at_commit_paused_until = 0.0


def emit(topic: str = "SagaStarted", payload: dict | None = None):
    return outbox_emit(
        OutboxMessage,
        topic=topic,
        aggregate_id=str(NO_SUCH_SAGA),
        payload=payload or dispatch_payload("purchase"),
    )


@pytest.mark.django_db(transaction=True)
def test_a_row_is_sent_by_its_writer_once_its_transaction_commits():
    with transaction.atomic():
        row = emit()
        # Not before the commit: a consumer must find what the event announces.
        assert OutboxMessage.objects.get(pk=row.pk).published_at is None

    row.refresh_from_db()
    assert row.published_at is not None and row.attempts == 1
    assert outbox_relay(models=[OutboxMessage]) == 0  # nothing left for the relay


@pytest.mark.django_db(transaction=True)
def test_a_rolled_back_row_is_never_sent():
    with contextlib.suppress(ZeroDivisionError), transaction.atomic():
        emit()
        1 / 0  # noqa: B018

    assert not OutboxMessage.objects.exists()


def test_a_row_its_writer_did_not_send_is_the_relays_after_the_grace(settings):
    """As after a crash between the commit and the send (here the commit, and so the
    send, never comes: the test's transaction is rolled back at its end)."""
    settings.OUTBOX_SEND_GRACE = 0.3
    row = emit()

    assert outbox_relay(models=[OutboxMessage]) == 0  # its writer's, for now
    time.sleep(0.4)
    assert outbox_relay(models=[OutboxMessage]) == 1
    row.refresh_from_db()
    assert row.published_at is not None


@pytest.mark.django_db(transaction=True)
def test_a_send_the_broker_fails_leaves_the_row_to_the_relay_and_pauses(
    refused_by_the_broker, settings
):
    topic, calls = refused_by_the_broker
    settings.OUTBOX_SEND_PAUSE = 30

    with transaction.atomic():
        first = emit(topic, {"n": 1})
    with transaction.atomic():
        second = emit(topic, {"n": 2})  # within the pause: not even tried

    assert calls == [first.pk]
    first.refresh_from_db()
    assert first.published_at is None and first.attempts == 1
    assert "the broker is away" in first.last_error
    assert first.next_attempt_at > timezone.now()  # the relay's, with its backoff
    second.refresh_from_db()
    assert second.published_at is None and second.attempts == 0
