"""Saga lifecycle writes of every mode: start a saga, and the operators' actions.

What a mode does differently lives with its runner: sagas.orchestration.engine for
orchestrated and try-confirm-cancel sagas, sagas.choreography.runner for
choreographed ones. Each action here locks the saga's row first, so it never races
a step, a sweep or another operator.
"""

from django.db import transaction

from sagas import bookkeeping, registry, selectors, telemetry
from sagas.choreography import runner as choreography
from sagas.definitions import Mode
from sagas.exceptions import ActionNotAllowed
from sagas.failures import Failure, FailureKind
from sagas.models import Saga, SagaEventKind, SagaStatus, SagaStep
from sagas.orchestration import engine as orchestration
from shop import sql

RUNNERS = {
    Mode.ORCHESTRATION: orchestration,
    Mode.TCC: orchestration,  # its steps are the tries and then the confirms
    Mode.CHOREOGRAPHY: choreography,
}


def runner_of(saga: Saga):
    return RUNNERS[saga.mode]


def saga_start(
    *,
    name: str,
    context: dict,
    mode: str = Mode.ORCHESTRATION,
    idempotency_key: str | None = None,
    owner_id: int | None = None,
) -> Saga:
    """Record a saga and what launches it, inside the caller's transaction.

    Nothing is sent here: the relay sends the first work once the caller commits,
    so a rolled-back caller never starts a saga and a committed one always does.
    ``idempotency_key`` (per saga name) is unique: a second saga with a key already
    taken is refused by the database (IntegrityError), with the caller's transaction.
    """
    definition = registry.definition(name, mode)
    # No savepoint: if any of this fails, the caller's whole transaction must roll back.
    with transaction.atomic(savepoint=False):
        saga = Saga(
            name=name,
            mode=mode,
            context=context,
            idempotency_key=idempotency_key,
            owner_id=owner_id,
            generation=1,  # starting it is the first decision that sends work
        )
        bookkeeping.mark_sent(saga, runner_of(saga).first_timeout(definition))
        # Prepared statements (shop.sql): every order placed writes these.
        sql.insert(saga)
        sql.insert(
            *(
                SagaStep(saga=saga, index=i, name=step_name)
                for i, step_name in enumerate(definition.step_names)
            )
        )
        runner_of(saga).saga_launch(saga, definition)
    telemetry.saga_started(saga)  # counted once the caller commits
    return saga


def saga_retry(*, saga_id: int, actor: str) -> Saga:
    """Take a FAILED saga up where it stopped: forward past the pivot, else back."""
    with transaction.atomic(durable=True):
        saga = _lock_or_raise(saga_id)
        if saga.status != SagaStatus.FAILED:
            raise ActionNotAllowed(
                f"only a FAILED saga can be retried; this one is {saga.status}"
            )
        definition = registry.definition_of(saga)
        steps = _steps_or_raise(saga, definition)
        detail = f"retried by {actor} after: {saga.error}"
        detail += runner_of(saga).saga_retry_locked(saga, definition, steps)
        bookkeeping.log(saga, SagaEventKind.OPERATOR_RETRY, "", detail, actor=actor)
    return saga


def saga_cancel(*, saga_id: int, actor: str, reason: str = "") -> Saga:
    """Compensate a saga that has not passed its pivot, on purpose."""
    with transaction.atomic(durable=True):
        saga = _lock_or_raise(saga_id)
        if saga.status not in (SagaStatus.PENDING, SagaStatus.RUNNING):
            raise ActionNotAllowed(
                f"only a running saga can be cancelled; this one is {saga.status}"
            )
        definition = registry.definition_of(saga)
        steps = _steps_or_raise(saga, definition)
        detail = f"cancelled by {actor}" + (f": {reason}" if reason else "")
        # The customer learns that the shop cancelled it (and why), not who did.
        public = "cancelled by the shop" + (f": {reason}" if reason else "")
        failure = Failure(FailureKind.BUSINESS, detail, public)
        bookkeeping.log(saga, SagaEventKind.OPERATOR_CANCEL, "", detail, actor=actor)
        runner_of(saga).saga_cancel_locked(saga, definition, steps, failure)
    return saga


def _lock_or_raise(saga_id: int) -> Saga:
    saga = selectors.saga_lock(saga_id=saga_id)
    if saga is None:
        raise ActionNotAllowed(f"no saga {saga_id}")
    return saga


def _steps_or_raise(saga: Saga, definition) -> list[SagaStep]:
    steps = selectors.saga_steps(saga=saga)
    if why := bookkeeping.changed_steps(steps, definition):
        raise ActionNotAllowed(why)
    return steps
