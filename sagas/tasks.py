"""Celery entry points of the engine: generated step tasks, their errback, sweeps."""

from datetime import timedelta

from celery import Task, shared_task
from celery.exceptions import Ignore
from django.conf import settings
from django.db import close_old_connections

from sagas import registry, relay, services
from sagas.definitions import Phase, SagaDefinition
from sagas.exceptions import BusinessError

SAGA_QUEUE = "sagas"


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


def step_task(definition: SagaDefinition, index: int, phase: Phase) -> Task:
    """Create and register the task that runs one action, compensation or end."""
    timeout = services.unit_timeout(definition, index, phase)

    def run(self: Task, saga_id: int) -> None:
        outcome = services.saga_step_run(
            saga_id=saga_id,
            definition=definition,
            index=index,
            phase=phase,
            task_id=self.request.id,
        )
        if outcome is services.StepOutcome.STALE:
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
        time_limit=timeout + 10,
    )


@shared_task(name="sagas.step_failed")
def step_failed(request, exc, traceback, saga_id: int) -> None:
    """The errback of every saga chain: record the failed attempt and decide what next.

    Celery calls an errback of this signature inline, in the worker that ran the failed
    task (in its main process after a lost child), and swallows what it raises; if this
    write is lost, the recovery sweep finds the saga overdue and sends the work again.
    """
    close_old_connections()
    unit = registry.unit(request.task)
    services.saga_step_failed(
        saga_id=saga_id,
        definition=unit.definition,
        index=unit.index,
        phase=unit.phase,
        error=exc,
        task_id=request.id or "",
    )


@shared_task(name="sagas.relay_outbox", ignore_result=True)
def relay_outbox() -> int:
    """The safety net behind the relay process: publish rows it has not picked up."""
    return relay.outbox_relay(min_age=timedelta(seconds=2))


@shared_task(name="sagas.recover_sagas")
def recover_sagas() -> int:
    return services.sagas_recover()


@shared_task(name="sagas.clean_outbox")
def clean_outbox() -> int:
    return relay.outbox_clean(days=settings.MESSAGE_RETENTION_DAYS)
