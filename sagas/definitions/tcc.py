"""Try-confirm-cancel sagas as data: participants that hold, then commit or let go.

    TryConfirmCancel(
        name="purchase",
        participants=(
            Participant("payment", try_=authorize, confirm=capture, cancel=void),
            Participant("stock", try_=reserve, confirm=commit, cancel=release),
        ),
        on_compensated=cancel_order,  # once every participant is cancelled
    )

Every participant is tried in turn. Once every try succeeded, all are confirmed,
retried until they succeed: nothing can be undone any more. If a try fails or times
out, every participant is cancelled, newest first, whether its try ran or not. Each
phase passes a barrier (sagas.barriers) in its own transaction, so a phase happens
once, a cancel before its try does nothing, and a try after its cancel does nothing.

The engine runs it as an orchestrated saga whose steps are the tries, then the
confirms, then the steps ``then`` names (completing the business), the last try
being the point of no return.
"""

from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property
from typing import ClassVar

from sagas.definitions.base import Mode, check_names, check_timeout, fail
from sagas.definitions.orchestration import (
    DEFAULT_RETRY,
    FOREVER,
    Phase,
    RetryPolicy,
    SagaDefinition,
    Step,
)

PhaseFunction = Callable[[dict], dict | None]


@dataclass(frozen=True)
class Participant:
    name: str
    try_: PhaseFunction | None
    confirm: PhaseFunction | None
    cancel: PhaseFunction | None
    timeout: float | None = None  # seconds, each phase; default SAGA_STEP_TIMEOUT


@dataclass(frozen=True)
class TryConfirmCancel(SagaDefinition):
    steps: tuple[Step, ...] = ()  # made from the participants
    participants: tuple[Participant, ...] = ()
    then: tuple[Step, ...] = ()  # after every confirm: forward only, retried forever
    try_retry: RetryPolicy = DEFAULT_RETRY

    mode: ClassVar[Mode] = Mode.TCC

    def __post_init__(self) -> None:
        participants = tuple(self.participants)
        object.__setattr__(self, "participants", participants)
        tries = [
            Step(
                f"try_{p.name}",
                p.try_,
                compensate=p.cancel,
                retry=self.try_retry,
                timeout=p.timeout,
            )
            for p in participants
        ]
        confirms = [
            Step(f"confirm_{p.name}", p.confirm, retry=FOREVER, timeout=p.timeout)
            for p in participants
        ]
        after = [
            Step(step.name, step.action, retry=FOREVER, timeout=step.timeout)
            for step in self.then
        ]
        object.__setattr__(self, "steps", (*tries, *confirms, *after))

    @cached_property
    def pivot_index(self) -> int | None:
        # Once the last try succeeded, confirming is all that is left.
        return len(self.participants) - 1

    def to_compensate(
        self, *, succeeded: list[bool], compensated: list[bool]
    ) -> list[int]:
        """Every try not yet cancelled, newest first, whether it ran or not: a try
        that never ran records its cancel, so a late copy of it does nothing."""
        tries = range(len(self.participants))
        return [i for i in reversed(tries) if not compensated[i]]

    def barrier(self, index: int, phase: Phase) -> tuple[str, str] | None:
        """The (branch, op) barrier the unit passes before its business work."""
        count = len(self.participants)
        if phase is Phase.END or index >= 2 * count:
            return None  # the end, and the steps after the confirms, need none
        participant = self.participants[index % count].name
        if phase is Phase.COMPENSATION:
            return participant, "cancel"
        return participant, "try" if index < count else "confirm"

    # Task names: ``purchase.tcc.try_payment``, ``purchase.tcc.cancel_stock``, ...
    end_name: ClassVar[str] = "cancelled"

    @property
    def task_prefix(self) -> str:
        return f"{self.name}.tcc"

    def compensation_name(self, index: int) -> str:
        return f"cancel_{self.participants[index].name}"

    def validate(self) -> None:
        if not self.participants:
            fail(self, "it needs at least one participant")
        check_names(self, self.step_names)
        for participant in self.participants:
            missing = [
                phase
                for phase in ("try_", "confirm", "cancel")
                if getattr(participant, phase) is None
            ]
            if missing:
                phases = ", ".join(m.rstrip("_") for m in missing)
                fail(
                    self,
                    f"a participant needs all three phases; {phases} missing",
                    participant.name,
                )
            check_timeout(self, participant.timeout, participant.name)
        for step in self.then:
            check_timeout(self, step.timeout, step.name)
