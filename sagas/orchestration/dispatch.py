"""Dispatch events: what work of an orchestrated saga the relay is to send next.

The engine never sends a chain itself: it writes a dispatch event in the transaction
of the state change that calls for it, and the relay sends the chain once it commits
(sagas.orchestration.tasks turns the event into the chain).
"""

from sagas import registry
from sagas.messaging.outbox import outbox_emit
from sagas.models import OutboxMessage, Saga


class Topic:
    """The dispatch events; each sends the chain of work its payload names."""

    STARTED = "SagaStarted"
    RETRY = "SagaStepRetry"
    COMPENSATING = "SagaCompensating"
    RECOVERED = "SagaRecovered"
    CONTINUED = "SagaStepContinued"  # a step done, then its task failed: what follows
    OPERATOR_RETRY = "SagaRetriedByOperator"


FORWARD, BACKWARD = "forward", "backward"
TOPICS = (
    Topic.STARTED,
    Topic.RETRY,
    Topic.COMPENSATING,
    Topic.RECOVERED,
    Topic.CONTINUED,
    Topic.OPERATOR_RETRY,
)


def dispatch_forward(
    saga: Saga, *, topic: str, countdown: float = 0.0, renew: bool = True
) -> None:
    """Send the steps from the saga's current one to the end."""
    plan = {"direction": FORWARD, "from_step": saga.current_step}
    _emit(saga, topic, plan, countdown, renew)


def dispatch_backward(
    saga: Saga,
    *,
    pending: list[int],
    topic: str,
    countdown: float = 0.0,
    renew: bool = True,
) -> None:
    """Send the compensations of ``pending`` (newest first), then the end."""
    _emit(saga, topic, {"direction": BACKWARD, "steps": pending}, countdown, renew)


def _emit(saga: Saga, topic: str, plan: dict, countdown: float, renew: bool) -> None:
    """``renew``: a new decision, so whatever an earlier dispatch still has in flight
    becomes stale. A resend of the same work (recovery) keeps the generation: the copy
    that may still be queued stays valid, and of two copies the later one stops."""
    if renew:
        saga.generation += 1
        saga.save(update_fields=["generation"])
    payload = {
        "saga_id": saga.pk,
        "saga": saga.name,
        "mode": saga.mode,
        "generation": saga.generation,
        "countdown": countdown,
        **plan,
    }
    outbox_emit(
        OutboxMessage,
        topic=topic,
        aggregate_id=saga.pk,
        payload=payload,
        headers=registry.headers_of(saga),
    )
