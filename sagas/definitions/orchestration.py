"""Orchestrated sagas as data: ordered steps, each an action with an optional undo.

The engine runs the steps in turn (sagas.orchestration). A definition reads top-down
like the business process it runs::

    SagaDefinition(
        name="purchase",
        steps=(
            Step("reserve_stock", reserve_stock, compensate=release_stock),
            Step("charge_payment", charge_payment, compensate=refund_payment),
            Step("create_shipment", create_shipment, pivot=True),
            Step("confirm_order", confirm_order),
        ),
        on_compensated=cancel_order,
    )

Steps before the pivot are compensatable: when one fails, the compensations of the
steps that succeeded run in reverse order, then ``on_compensated``. The pivot is the
point of no return: once it succeeds, the steps after it are retried until they do.
"""

import random
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from functools import cached_property
from typing import ClassVar

from sagas.definitions.base import Mode, check_names, check_timeout, fail

Action = Callable[[dict], dict | None]
Compensation = Callable[[dict], None]
EndHook = Callable[[dict, str], None]


class Phase(StrEnum):
    """What a step task does for its step."""

    ACTION = "action"
    COMPENSATION = "compensation"
    END = "end"  # the definition's on_compensated hook, after the last compensation


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff with jitter: by default 1 s, 2 s, 4 s, then give up."""

    max_retries: int | None = 3  # None: retry until it succeeds
    backoff: float = 1.0
    factor: float = 2.0
    max_backoff: float = 60.0
    jitter: float = 0.1  # each delay is spread by this fraction either way

    def allows(self, attempts: int) -> bool:
        """May another attempt follow ``attempts`` failed ones?"""
        return self.max_retries is None or attempts <= self.max_retries

    def countdown(self, attempts: int) -> float:
        """Seconds to wait before the attempt that follows ``attempts`` failed ones."""
        # The exponent is capped: a step retried for days must not overflow a float.
        exponent = min(max(attempts - 1, 0), 64)
        delay = min(self.max_backoff, self.backoff * self.factor**exponent)
        return round(delay * random.uniform(1 - self.jitter, 1 + self.jitter), 3)


DEFAULT_RETRY = RetryPolicy()
FOREVER = RetryPolicy(max_retries=None, max_backoff=300.0)


@dataclass(frozen=True)
class Step:
    name: str
    action: Action
    compensate: Compensation | None = None
    pivot: bool = False
    retry: RetryPolicy | None = None  # default: DEFAULT_RETRY, FOREVER after the pivot
    timeout: float | None = None  # seconds; default: settings.SAGA_STEP_TIMEOUT


@dataclass(frozen=True)
class SagaDefinition:
    name: str
    steps: tuple[Step, ...]
    on_compensated: EndHook | None = None
    compensation_retry: RetryPolicy = field(default=DEFAULT_RETRY)
    # The context keys that name what the saga is about (``("order_id",)``): they
    # travel with its messages and stand on its log lines (sagas.registry.headers_of).
    subject: tuple[str, ...] = ()

    mode: ClassVar[Mode] = Mode.ORCHESTRATION

    def __post_init__(self) -> None:
        object.__setattr__(self, "steps", tuple(self.steps))

    @cached_property
    def pivot_index(self) -> int | None:
        return next((i for i, s in enumerate(self.steps) if s.pivot), None)

    def is_after_pivot(self, index: int) -> bool:
        return self.pivot_index is not None and index > self.pivot_index

    def retry_policy(self, index: int, phase: Phase) -> RetryPolicy:
        if phase is not Phase.ACTION:
            return self.compensation_retry
        step = self.steps[index]
        if step.retry is not None:
            return step.retry
        return FOREVER if self.is_after_pivot(index) else DEFAULT_RETRY

    def to_compensate(
        self, *, succeeded: list[bool], compensated: list[bool]
    ) -> list[int]:
        """The steps still to undo, newest first: the succeeded ones that can be."""
        return [
            i
            for i in reversed(range(len(self.steps)))
            if succeeded[i] and self.steps[i].compensate
        ]

    def barrier(self, index: int, phase: Phase) -> tuple[str, str] | None:
        """The (branch, op) barrier a unit passes before its work: none here."""
        return None

    def task_name(self, index: int, phase: Phase) -> str:
        """The task name shown in Flower, e.g. ``purchase.refund_payment``."""
        if phase is Phase.END:
            hook = self.on_compensated
            unit = hook.__name__ if hook else self.end_name
        elif phase is Phase.COMPENSATION:
            unit = self.compensation_name(index)
        else:
            unit = self.steps[index].name
        return f"{self.task_prefix}.{unit}"

    @property
    def task_prefix(self) -> str:
        return self.name

    end_name: ClassVar[str] = "compensated"  # the END task's name without a hook

    def compensation_name(self, index: int) -> str:
        return self.steps[index].compensate.__name__

    def tasks(self) -> list[tuple[int, Phase]]:
        """Every (step index, phase) that runs as a task; END (index -1) always runs,
        with or without an ``on_compensated`` hook: it is what ends a compensation."""
        units = [(i, Phase.ACTION) for i in range(len(self.steps))]
        units += [
            (i, Phase.COMPENSATION) for i, s in enumerate(self.steps) if s.compensate
        ]
        return [*units, (-1, Phase.END)]

    @property
    def step_names(self) -> list[str]:
        return [step.name for step in self.steps]

    def validate(self) -> None:
        """Raise DefinitionError, naming the saga and the step, if it cannot run."""
        check_names(self, self.step_names)
        pivots = [s.name for s in self.steps if s.pivot]
        if len(pivots) > 1:
            fail(self, "at most one step can be the pivot", pivots[1])
        self._check_compensations()
        self._check_policies()
        task_names = [self.task_name(i, p) for i, p in self.tasks()]
        if len(set(task_names)) != len(task_names):
            fail(self, f"task names collide: {sorted(task_names)}")

    def _check_compensations(self) -> None:
        # Before the pivot every step can be undone, or a failure after it would
        # leave its work in place; with no pivot, the last step is the point of no
        # return. The pivot and the steps after it only go forward.
        pivot = self.pivot_index
        last_undoable = (pivot if pivot is not None else len(self.steps) - 1) - 1
        for index, step in enumerate(self.steps):
            if index <= last_undoable and step.compensate is None:
                fail(self, "a step before the pivot needs a compensation", step.name)
            if index > last_undoable and step.compensate is not None:
                fail(
                    self,
                    "the pivot and the steps after it cannot be compensated",
                    step.name,
                )

    def _check_policies(self) -> None:
        for index, step in enumerate(self.steps):
            check_timeout(self, step.timeout, step.name)
            # After the pivot there is no going back: giving up would leave the
            # purchase half done, so such a step must be retried until it succeeds.
            if (
                self.is_after_pivot(index)
                and self.retry_policy(index, Phase.ACTION).max_retries is not None
            ):
                fail(
                    self,
                    "a step after the pivot needs a retry policy without a limit",
                    step.name,
                )
