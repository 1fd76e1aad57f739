"""What a saga's path is made of: the attempts of each unit on its lane, the marks
off them, the moments the saga turned, and the history's entries."""

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum

from sagas.definitions import Phase
from sagas.models import SagaEvent

SAGA_LANE = "saga"


class Outcome(StrEnum):
    DONE = "done"  # the step's work succeeded
    FAILED = "failed"
    UNDONE = "undone"  # a compensation (or the end of an undone saga) done
    RUNNING = "running"  # sent, and nothing heard of it yet


class Happening(StrEnum):
    """What a history entry says happened."""

    CREATED = "created"
    STARTED = "started"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    RETRYING = "failed, retry scheduled"
    RESENT = "lost, sent again"
    COMPENSATION_STARTED = "undoing began"
    COMPENSATED = "compensated"
    GAVE_UP = "saga FAILED"
    ATTENTION = "needs attention"
    OPERATOR_RETRY = "retried by an operator"
    OPERATOR_CANCEL = "cancelled by an operator"
    ENDED = "ended"


@dataclass(frozen=True)
class Attempt:
    """One try of a unit: sent, perhaps started (if recorded), ended some way."""

    sent: datetime | None
    started: datetime | None  # None: not recorded
    ended: datetime | None  # None: still in flight
    outcome: Outcome
    number: int = 0  # 1 for the first try; 0 when unknown
    task_id: str = ""
    detail: str = ""  # a failure's reason
    event: SagaEvent | None = None  # the retry event that reported it

    @property
    def begun(self) -> datetime | None:
        return self.started or self.sent

    @property
    def exact(self) -> bool:
        return self.started is not None

    @property
    def duration(self) -> timedelta | None:
        if self.ended is None or self.begun is None:
            return None
        return max(self.ended - self.begun, timedelta(0))


@dataclass(frozen=True)
class Mark:
    """Something that happened at an instant, off the lanes' attempts."""

    at: datetime
    kind: str  # a SagaEventKind
    detail: str
    actor: str = "system"


@dataclass
class Lane:
    """One row of the timeline: a step's work, its compensation, or the saga's end."""

    key: str  # "s0", "u0", "end", "saga"
    label: str
    phase: Phase | None  # None: the saga itself
    index: int | None = None
    attempts: list[Attempt] = field(default_factory=list)
    marks: list[Mark] = field(default_factory=list)

    @property
    def last(self) -> Attempt | None:
        return self.attempts[-1] if self.attempts else None


@dataclass(frozen=True)
class Entry:
    """One line of the history."""

    at: datetime
    happening: Happening
    unit: str  # the lane's label
    detail: str = ""
    actor: str = "system"
    exact: bool = True  # False: a start not recorded, the time its work was sent
    task_id: str = ""
    kind: str = ""  # the event's kind, for an audit trail entry
    rank: int = 2  # orders entries of one instant: ends, then events, then starts


@dataclass(frozen=True)
class Turn:
    """A moment the saga changed course: the undoing began, it gave up, it ended."""

    at: datetime
    kind: str  # "undo", "failed", "completed", "compensated"
    label: str


@dataclass
class SagaPath:
    start: datetime
    end: datetime
    lanes: list[Lane]
    entries: list[Entry]
    turns: list[Turn]
    active: bool

    def action(self, index: int) -> Lane | None:
        return self._lane(f"s{index}")

    def undo(self, index: int) -> Lane | None:
        return self._lane(f"u{index}")

    def _lane(self, key: str) -> Lane | None:
        return next((lane for lane in self.lanes if lane.key == key), None)
