"""Saga definitions as data, one kind per mode, each checked before it runs.

Mode                            how a saga is run
orchestration.SagaDefinition    steps run in turn by the engine (a Celery chain)
choreography.Choreography       steps as the apps' reactions to each other's events
tcc.TryConfirmCancel            participants tried, then all confirmed or cancelled
"""

from sagas.definitions.base import Mode
from sagas.definitions.orchestration import (
    DEFAULT_RETRY,
    FOREVER,
    Phase,
    RetryPolicy,
    SagaDefinition,
    Step,
)

__all__ = [
    "DEFAULT_RETRY",
    "FOREVER",
    "Mode",
    "Phase",
    "RetryPolicy",
    "SagaDefinition",
    "Step",
]
