"""One row per request a load test sent: what was asked, what came of it, how long."""

from dataclasses import asdict, dataclass, fields
from datetime import UTC, datetime

from shop.loadtest.plan import CANCELLED, CONFIRMED, REJECTED

# What a request came to, in the order the report stacks them.
FAILED = "FAILED"  # the saga stopped and waits for an operator
UNFINISHED = "UNFINISHED"  # the saga had not ended when the stage's time ran out
THROTTLED = "THROTTLED"  # 429: a rate limit refused it, not a saga failure
SERVER_ERROR = "SERVER_ERROR"  # 5xx
NO_ANSWER = "NO_ANSWER"  # a timeout or a broken connection
OUTCOMES = (
    CONFIRMED,
    CANCELLED,
    REJECTED,
    THROTTLED,
    FAILED,
    UNFINISHED,
    SERVER_ERROR,
    NO_ANSWER,
)
# How each saga status reads as an outcome (the order's status agrees when it ended).
SAGA_OUTCOMES = {"COMPLETED": CONFIRMED, "COMPENSATED": CANCELLED, "FAILED": FAILED}


@dataclass
class Row:
    stage: str
    run: str  # the run's mode, or "mixed"
    mode: str
    scenario: str
    expected: str
    customer: str
    started_at: float  # the request was sent, seconds since the epoch (client clock)
    started_s: float = 0.0  # ... seconds into its run
    http_status: int | None = None
    http_ms: float | None = None
    order_id: int | None = None
    saga_id: int | None = None
    order_status: str = ""
    saga_status: str = ""
    cancel_reason: str = ""
    e2e_ms: float | None = None  # request sent to the saga's end (its finished_at)
    outcome: str = ""
    as_expected: bool = False
    error: str = ""  # the client's, when no answer came

    def settle(self, *, run_started: float) -> None:
        """Fill in the outcome once the saga has ended, or the stage gave up on it."""
        self.started_s = round(self.started_at - run_started, 3)
        self.outcome = self._outcome()
        self.as_expected = self.outcome == self.expected and (
            self.expected != REJECTED or self.http_status == 400
        )

    def _outcome(self) -> str:
        status = self.http_status
        if status is None:
            return NO_ANSWER
        if status == 202:
            return SAGA_OUTCOMES.get(self.saga_status, UNFINISHED)
        if status == 429:
            return THROTTLED
        return SERVER_ERROR if status >= 500 else REJECTED

    def as_record(self) -> dict:
        record = asdict(self)
        record["started_at"] = (
            datetime.fromtimestamp(self.started_at, UTC)
            .isoformat(timespec="milliseconds")
            .replace("+00:00", "Z")
        )
        return record


COLUMNS = [f.name for f in fields(Row)]
