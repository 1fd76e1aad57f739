"""Celery entry points of choreographed sagas: one task per app reaction, on the
app's own queue, subscribed to the saga's events."""

from celery import Task, shared_task
from django.conf import settings

from sagas import registry, telemetry
from sagas.choreography import handlers, tracker
from sagas.definitions import Mode, Phase
from sagas.definitions.base import HARD_LIMIT_SLACK
from sagas.definitions.choreography import END, Choreography, Role
from sagas.messaging.subscriptions import Subscription, subscribe


class ReactionTask(Task):
    """Delivered at least once, applied once (the app's inbox and the step's barrier).

    A reaction that fails other than by a business refusal is retried with backoff
    (its transaction rolled back, the message counts as never received); if it keeps
    failing, the recovery sweep finds the saga overdue and sends the event again.
    """

    acks_late = True
    ignore_result = True
    autoretry_for = (Exception,)
    retry_backoff = True
    retry_backoff_max = 60
    max_retries = settings.SAGA_REACTION_RETRIES
    saga_name: str | None = None  # an app's reaction: the saga and step it works on
    saga_step: str | None = None
    saga_phase: str | None = None  # and what it does there: act, undo, or end

    def on_retry(self, exc, task_id, args, kwargs, einfo) -> None:
        if self.saga_step is not None:
            telemetry.reaction_retried(
                self.saga_name,
                Mode.CHOREOGRAPHY,
                self.saga_step,
                exc,
                phase=self.saga_phase,
                refused=isinstance(exc, handlers.RefusedAfterPivot),
            )


# A reaction's role, as the engine's phases name it (metrics and logs say it alike).
PHASES = {Role.ACT: Phase.ACTION, Role.UNDO: Phase.COMPENSATION, Role.END: Phase.END}


@registry.compiler(Mode.CHOREOGRAPHY)
def reaction_tasks(definition: Choreography) -> list[registry.Unit]:
    """Subscribe every app reaction declared for the saga."""
    for handler in handlers.declared(saga=definition.name):
        reaction_task(handler, timeout=_timeout(definition, handler.step))
        for topic in handler.topics:
            subscribe(
                Subscription(
                    consumer=handler.name,
                    topic=topic,
                    task_name=handler.name,
                    queue=handler.app,
                    mode=Mode.CHOREOGRAPHY,
                )
            )
    return []  # nothing of it runs as a step of a chain


def _timeout(definition: Choreography, step: str) -> float:
    own = definition.steps[definition.index_of(step)].timeout if step != END else None
    return own or settings.SAGA_STEP_TIMEOUT


def reaction_task(handler: handlers.Handler, *, timeout: float) -> Task:
    """Create and register the task that runs one app's reaction: past its step's
    timeout it is stopped (its transaction rolled back) and tried again."""

    def run(self: Task, message: dict) -> None:
        handlers.handle(handler, message)

    run.__name__ = handler.function.__name__
    run.__doc__ = f"{handler.app} reacts to {', '.join(handler.topics)}."
    return shared_task(
        run,
        name=handler.name,
        bind=True,
        base=ReactionTask,
        queue=handler.app,
        soft_time_limit=timeout,
        time_limit=timeout + HARD_LIMIT_SLACK,
        saga_name=handler.saga,
        saga_step=handler.step,
        saga_phase=PHASES[handler.role],
    )


@shared_task(name="sagas.track", base=ReactionTask, queue="sagas")
def track(message: dict) -> None:
    """Kept for one release: an event sent to the tracker task before tracking moved
    into the reactions' own transactions, still queued after the upgrade, is followed
    all the same (no event is sent to it any more)."""
    tracker.saga_track_message(message)
