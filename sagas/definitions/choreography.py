"""Choreographed sagas as data: each step is what one app does on another's event.

    Choreography(
        name="purchase",
        steps=(
            Reaction("charge_payment", by="payments", on="OrderPlaced",
                     succeeds="PaymentCaptured", fails="PaymentFailed",
                     undone="PaymentRefunded"),
            Reaction("reserve_stock", by="inventory", on="PaymentCaptured",
                     succeeds="StockReserved", fails="StockReservationFailed",
                     undone="StockReleased"),
            ...
        ),
        ends_undone_with="OrderCancelled", ended_by="orders",
    )

Nobody runs it: the apps' handlers (``<app>/handlers.py``) react to the events, and
each reaction records what its events mean in the saga's records (the tracker) as it
commits. A step's success event sets off
the next step. A failure event makes the apps upstream undo their own work, newest
first: the step before the failed one undoes on the failure, each one before it on
the undone event of the one after, and the app that ends the saga cancels it on the
first step's failure or undone event. Each step also undoes itself on its own failure
event, which fences it: a late copy of the event that would set it off then does
nothing (the recovery sweep publishes that failure for a step whose event was lost).
"""

from dataclasses import dataclass
from enum import StrEnum
from functools import cached_property
from typing import ClassVar

from sagas.definitions.base import Mode, check_names, check_timeout, fail

END = "end"  # the pseudo-step of the app that ends an undone saga


class Meaning(StrEnum):
    """What an event says about a step, as the saga tracker reads it."""

    STARTS = "starts"
    SUCCEEDS = "succeeds"
    FAILS = "fails"
    UNDONE = "undone"
    ENDS_UNDONE = "ends undone"


class Role(StrEnum):
    """What a handler does when its event arrives."""

    ACT = "act"  # the step's own work
    UNDO = "undo"  # undo the step's work (or fence it, on its own failure)
    END = "end"  # end an undone saga


@dataclass(frozen=True)
class Reaction:
    name: str
    by: str  # the app that does it
    on: str  # the event that sets it off
    succeeds: str  # the event announcing it was done
    fails: str | None = None  # ... refused (or timed out)
    undone: str | None = None  # ... undone
    pivot: bool = False
    timeout: float | None = None  # seconds; default SAGA_STEP_TIMEOUT


@dataclass(frozen=True)
class Choreography:
    name: str
    steps: tuple[Reaction, ...]
    ends_undone_with: str
    ended_by: str
    subject: tuple[str, ...] = ()  # as SagaDefinition.subject

    mode: ClassVar[Mode] = Mode.CHOREOGRAPHY

    def __post_init__(self) -> None:
        object.__setattr__(self, "steps", tuple(self.steps))

    @property
    def step_names(self) -> list[str]:
        return [step.name for step in self.steps]

    @property
    def starts_with(self) -> str:
        return self.steps[0].on

    @cached_property
    def pivot_index(self) -> int | None:
        return next((i for i, s in enumerate(self.steps) if s.pivot), None)

    def is_after_pivot(self, index: int) -> bool:
        return self.pivot_index is not None and index > self.pivot_index

    def index_of(self, step_name: str) -> int:
        return self.step_names.index(step_name)

    def undo_triggers(self, index: int) -> tuple[str, ...]:
        """The events on which step ``index`` undoes itself: the next step's failure
        and undone events, and its own failure (a fence)."""
        after = self.steps[index + 1] if index + 1 < len(self.steps) else None
        triggers = [after.fails, after.undone] if after else []
        return tuple(t for t in (*triggers, self.steps[index].fails) if t)

    def end_triggers(self) -> tuple[str, ...]:
        first = self.steps[0]
        return tuple(t for t in (first.fails, first.undone) if t)

    def meanings(self, topic: str) -> list[tuple[int, Meaning]]:
        """What ``topic`` says about which steps (index -1: the saga's end)."""
        found = []
        for index, step in enumerate(self.steps):
            for meaning, event in (
                (Meaning.STARTS, step.on),
                (Meaning.SUCCEEDS, step.succeeds),
                (Meaning.FAILS, step.fails),
                (Meaning.UNDONE, step.undone),
            ):
                if event == topic:
                    found.append((index, meaning))
        if topic == self.ends_undone_with:
            found.append((-1, Meaning.ENDS_UNDONE))
        return found

    def topics(self) -> set[str]:
        """Every event of the saga."""
        events = {self.ends_undone_with}
        for step in self.steps:
            events |= {
                e for e in (step.on, step.succeeds, step.fails, step.undone) if e
            }
        return events

    def expected_handlers(self) -> set[tuple[str, str, str, Role]]:
        """(app, event, step, role) for every reaction the saga needs of an app."""
        expected = set()
        for index, step in enumerate(self.steps):
            expected.add((step.by, step.on, step.name, Role.ACT))
            if step.undone:
                for trigger in self.undo_triggers(index):
                    expected.add((step.by, trigger, step.name, Role.UNDO))
        for trigger in self.end_triggers():
            expected.add((self.ended_by, trigger, END, Role.END))
        return expected

    def validate(self) -> None:
        check_names(self, self.step_names)
        if END in self.step_names:
            fail(self, f"{END!r} is kept for the end of an undone saga", END)
        pivots = [s.name for s in self.steps if s.pivot]
        if len(pivots) > 1:
            fail(self, "at most one step can be the pivot", pivots[1])
        last_undoable = (
            self.pivot_index if self.pivot_index is not None else len(self.steps)
        ) - 1
        for index, step in enumerate(self.steps):
            if index and step.on != self.steps[index - 1].succeeds:
                fail(
                    self, "it must be set off by the previous step's success", step.name
                )
            if index <= last_undoable and not (step.fails and step.undone):
                fail(
                    self,
                    "a step before the pivot needs a failure and an undone event",
                    step.name,
                )
            if index > last_undoable and step.undone:
                fail(
                    self,
                    "the pivot and the steps after it cannot be undone",
                    step.name,
                )
            if index == self.pivot_index and not step.fails:
                fail(self, "the pivot needs a failure event", step.name)
            if index > last_undoable and index != self.pivot_index and step.fails:
                fail(
                    self,
                    "a step after the pivot cannot fail: it is retried until done",
                    step.name,
                )
            check_timeout(self, step.timeout, step.name)
        roles = [
            e
            for s in self.steps
            for e in (s.succeeds, s.fails, s.undone)
            if e is not None
        ]
        if len(set(roles)) != len(roles) or self.ends_undone_with in roles:
            fail(self, "each event may say one thing about one step only")
