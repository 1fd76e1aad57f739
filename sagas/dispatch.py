"""From a dispatch event in the engine's outbox to the Celery chain that does the work.

The engine never sends a chain itself: it writes a dispatch event in the transaction
of the state change that calls for it, and the relay sends the chain once it commits.
"""

from celery import chain
from celery.canvas import Signature
from kombu import Producer

from sagas import registry
from sagas.definitions import Phase
from sagas.exceptions import DefinitionError
from sagas.models import OutboxMessage, Saga
from sagas.outbox import AbstractOutboxMessage, outbox_emit
from sagas.relay import Undeliverable, route


class Topic:
    STARTED = "SagaStarted"
    RETRY = "SagaStepRetry"
    COMPENSATING = "SagaCompensating"
    RECOVERED = "SagaRecovered"
    CONTINUED = "SagaStepContinued"  # a step done, then its task failed: what follows
    OPERATOR_RETRY = "SagaRetriedByOperator"


FORWARD, BACKWARD = "forward", "backward"


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
        "generation": saga.generation,
        "countdown": countdown,
        **plan,
    }
    outbox_emit(OutboxMessage, topic=topic, aggregate_id=saga.pk, payload=payload)


def dispatch_signature(payload: dict) -> Signature:
    """The chain for one dispatch, with the engine's errback on every task in it."""
    from sagas.tasks import step_failed

    definition = registry.definition(payload["saga"])  # DefinitionError if removed
    if payload["direction"] == FORWARD:
        units = [
            (i, Phase.ACTION)
            for i in range(payload["from_step"], len(definition.steps))
        ]
    else:
        units = [(i, Phase.COMPENSATION) for i in payload["steps"]] + [(-1, Phase.END)]
    args = (payload["saga_id"], payload["generation"])
    steps = [
        registry.unit_for(definition, i, phase).task.si(*args) for i, phase in units
    ]
    return chain(*steps).on_error(step_failed.s(*args))


@route(
    Topic.STARTED,
    Topic.RETRY,
    Topic.COMPENSATING,
    Topic.RECOVERED,
    Topic.CONTINUED,
    Topic.OPERATOR_RETRY,
)
def publish_dispatch(
    message: AbstractOutboxMessage, producer: Producer, **publish_options
) -> None:
    try:
        signature = dispatch_signature(message.payload)
    except (DefinitionError, KeyError, TypeError) as exc:
        # Its definition was removed, or the payload is not one: sending it again
        # later changes nothing.
        raise Undeliverable(str(exc)) from exc
    countdown = message.payload.get("countdown") or None
    signature.apply_async(producer=producer, countdown=countdown, **publish_options)
