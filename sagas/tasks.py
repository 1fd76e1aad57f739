"""Celery entry points of the engine: generated step tasks, their errback, sweeps."""

from datetime import datetime, timedelta

from celery import Task, shared_task
from celery.exceptions import Ignore
from django.conf import settings
from django.db import InterfaceError, OperationalError
from django.utils import timezone

from sagas import probes, registry, relay, services
from sagas.definitions import Phase, SagaDefinition
from sagas.exceptions import BusinessError
from sagas.failures import Failure, FailureKind, failure_of

SAGA_QUEUE = "sagas"
HARD_LIMIT_SLACK = 10.0  # seconds between a step's soft and hard time limits


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

    def run(self: Task, saga_id: int, generation: int) -> None:
        outcome = services.saga_step_run(
            saga_id=saga_id,
            generation=generation,
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
        time_limit=timeout + HARD_LIMIT_SLACK,
    )


@shared_task(name="sagas.step_failed")
def step_failed(request, exc, traceback, saga_id: int, generation: int) -> None:
    """The errback of every saga chain: hand the failure over to record_failure.

    Celery calls an errback of this signature inline, in the pool process whose task
    failed (in the main process after a lost child), under that task's time limits,
    and swallows what it raises. So it only classifies the error, which needs the
    exception itself, and sends the rest on; if that message is lost, the recovery
    sweep finds the saga overdue and sends its work again.
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
            "task_id": request.id or "",
        }
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
) -> None:
    """Record a failed attempt and decide: retry, compensate, or give up (FAILED)."""
    unit = registry.unit(task_name)
    services.saga_step_failed(
        saga_id=saga_id,
        generation=generation,
        definition=unit.definition,
        index=unit.index,
        phase=unit.phase,
        failure=Failure(FailureKind(kind), reason, public),
        task_id=task_id,
    )


@shared_task(name="sagas.relay_outbox", ignore_result=True)
def relay_outbox() -> int:
    """The safety net behind the relay process: publish rows it has not picked up."""
    return relay.outbox_relay(min_age=timedelta(seconds=2))


@shared_task(name="sagas.recover_sagas")
def recover_sagas() -> int:
    return services.sagas_recover()


@shared_task(name=probes.PROBE_TASK, ignore_result=True)
def probe_queue(queue: str, sent_at: str) -> None:
    """A probe sent down a saga queue by the recovery sweep has reached a worker."""
    probes.probe_arrived(
        queue=queue, sent_at=datetime.fromisoformat(sent_at), now=timezone.now()
    )


@shared_task(name="sagas.clean_outbox")
def clean_outbox() -> int:
    return relay.outbox_clean(days=settings.MESSAGE_RETENTION_DAYS)
