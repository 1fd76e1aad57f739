"""Celery entry points of orchestrated (and try-confirm-cancel) sagas: one generated
task per step's action, compensation and end, their errback, and failure recording."""

import logging

from billiard.exceptions import TimeLimitExceeded, WorkerLostError
from celery import Task, chain, shared_task
from celery.canvas import Signature
from celery.exceptions import Ignore
from django.db import InterfaceError, OperationalError
from django.utils import timezone
from kombu import Producer

from sagas import registry, telemetry
from sagas.definitions import Mode, Phase, SagaDefinition
from sagas.definitions.base import HARD_LIMIT_SLACK
from sagas.exceptions import BusinessError, DefinitionError
from sagas.failures import Failure, FailureKind, failure_of
from sagas.messaging import subscriptions
from sagas.messaging.correlation import correlated
from sagas.messaging.outbox import AbstractOutboxMessage
from sagas.messaging.relay import Undeliverable
from sagas.orchestration import dispatch, engine

logger = logging.getLogger(__name__)

SAGA_QUEUE = "sagas"
# Failures whose errback Celery calls in the worker's main process, not in the pool
# process that ran the task: a lost pool process, a hard time limit.
IN_THE_MAIN_PROCESS = (WorkerLostError, TimeLimitExceeded)


class SagaStepTask(Task):
    """One unit of a saga: delivered at least once, applied once (saga_step_run).

    Failures are not retried by Celery: the chain's errback records each attempt and
    decides between retrying, compensating and giving up.
    """

    queue = SAGA_QUEUE
    acks_late = True
    ignore_result = True  # the saga's own tables are the record
    max_retries = 0
    throws = (BusinessError,)  # expected: logged without a traceback


@registry.compiler(Mode.ORCHESTRATION)
@registry.compiler(Mode.TCC)
def step_tasks(definition: SagaDefinition) -> list[registry.Unit]:
    """The tasks that run a definition: one per action, compensation and end."""
    return [
        registry.Unit(definition, index, phase, step_task(definition, index, phase))
        for index, phase in definition.tasks()
    ]


def step_task(definition: SagaDefinition, index: int, phase: Phase) -> Task:
    """Create and register the task that runs one action, compensation or end."""
    timeout = engine.unit_timeout(definition, index, phase)

    def run(self: Task, saga_id: int, generation: int) -> None:
        outcome = engine.saga_step_run(
            saga_id=saga_id,
            generation=generation,
            definition=definition,
            index=index,
            phase=phase,
            task_id=self.request.id,
        )
        if outcome is engine.StepOutcome.STALE:
            raise Ignore()  # stops this chain without calling the errback

    run.__name__ = definition.task_name(index, phase).replace(".", "__")
    run.__doc__ = (
        f"Saga {definition.name}: {phase} of {definition.task_name(index, phase)}."
    )
    return shared_task(
        run,
        name=definition.task_name(index, phase),
        bind=True,
        base=SagaStepTask,
        # The soft limit interrupts a stalled step, which then rolls back and counts as
        # timed out; the hard limit replaces a process that ignores it.
        soft_time_limit=timeout,
        time_limit=timeout + HARD_LIMIT_SLACK,
        saga_step=telemetry.step_of(definition, index, phase),  # on its log lines
    )


@shared_task(name="sagas.step_failed")
def step_failed(request, exc, traceback, saga_id: int, generation: int) -> None:
    """The errback of every saga chain: hand the failure over to record_failure.

    Celery calls an errback of this signature inline, in the pool process whose task
    failed (in the main process after a lost child), under that task's time limits,
    and swallows what it raises. So it only classifies the error, which needs the
    exception itself, and sends the rest on; if that message is lost, the recovery
    sweep finds the saga overdue and sends its work again. Once sent, the report is
    the saga's work in flight (behind a backlog it may wait long), so its send time
    is recorded for the sweep to prove against; not from the worker's main process
    (after a lost pool process or a hard time limit), whose loop must not wait on
    the database, and not past REPORT_WAIT_MS: there, as when that record fails, a
    report still queued may be taken for lost work and its unit sent again, a copy
    the saga lock makes harmless.
    """
    unit = registry.unit(request.task)
    failure = failure_of(exc, unit_name=unit.name)
    record_failure.apply_async(
        kwargs={
            "saga_id": saga_id,
            "generation": generation,
            "task_name": unit.name,
            "kind": failure.kind,
            "reason": failure.reason,
            "public": failure.public,
            "error_class": failure.error_class,
            "task_id": request.id or "",
        }
    )
    if isinstance(exc, IN_THE_MAIN_PROCESS):
        return  # the worker's own loop must not wait on the database
    try:
        engine.saga_report_sent(
            saga_id=saga_id,
            generation=generation,
            definition=unit.definition,
            index=unit.index,
            phase=unit.phase,
            at=timezone.now(),  # after the send: never earlier than the report
        )
    except Exception as error:  # an outage, a held row, the time limit: it went
        logger.warning(
            "saga %s: when its failure report was sent is not recorded: %r",
            saga_id,
            error,
            extra={"saga_id": saga_id},
        )


@shared_task(
    name="sagas.record_failure",
    base=SagaStepTask,
    autoretry_for=(OperationalError, InterfaceError),
    retry_backoff=True,
    max_retries=5,
)
def record_failure(
    *,
    saga_id: int,
    generation: int,
    task_name: str,
    kind: str,
    reason: str,
    task_id: str,
    public: str = "",
    error_class: str = "",
) -> None:
    """Record a failed attempt and decide: retry, compensate, or give up (FAILED)."""
    unit = registry.unit(task_name)
    engine.saga_step_failed(
        saga_id=saga_id,
        generation=generation,
        definition=unit.definition,
        index=unit.index,
        phase=unit.phase,
        failure=Failure(FailureKind(kind), reason, public, error_class),
        task_id=task_id,
    )


# DISPATCH ----------------------------------------------------------------------------


def dispatch_signature(payload: dict) -> Signature:
    """The chain for one dispatch, with the engine's errback on every task in it."""
    # DefinitionError if its definition was removed meanwhile.
    definition = registry.definition(
        payload["saga"], payload.get("mode", Mode.ORCHESTRATION)
    )
    if payload["direction"] == dispatch.FORWARD:
        units = [
            (i, Phase.ACTION)
            for i in range(payload["from_step"], len(definition.steps))
        ]
    else:
        units = [(i, Phase.COMPENSATION) for i in payload["steps"]] + [(-1, Phase.END)]
    args = (payload["saga_id"], payload["generation"])
    # By keyword: Flower shows each step task as saga_id=..., generation=...
    ids = {"saga_id": args[0], "generation": args[1]}
    steps = [
        registry.unit_for(definition, i, phase).task.si(**ids) for i, phase in units
    ]
    return chain(*steps).on_error(step_failed.s(*args))


@subscriptions.route(*dispatch.TOPICS)
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
    with correlated(**message.headers):  # the chain's messages carry them
        signature.apply_async(producer=producer, countdown=countdown, **publish_options)
