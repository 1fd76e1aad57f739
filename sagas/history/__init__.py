"""A saga's path, read back from its records: its history and its timeline's lanes.

Nothing is written for this page. A step row holds the start and end of the attempt
that succeeded (or the end of the last one that failed), when its compensation ended,
its attempts and errors; the audit trail (SagaEvent) holds what went off the happy
path (a retry scheduled, the undoing begun, a recovery, an operator); the saga row its
creation and end. Where a start was never recorded (a failed attempt's, a
compensation's), the time its work was sent stands in, marked inexact: the work began
at or after it, so a duration from it is an upper bound.
"""

from sagas.history.path import saga_path, unit_names
from sagas.history.records import (
    Attempt,
    Entry,
    Happening,
    Lane,
    Mark,
    Outcome,
    SagaPath,
    Turn,
)
from sagas.history.text import duration, instant

__all__ = [
    "Attempt",
    "Entry",
    "Happening",
    "Lane",
    "Mark",
    "Outcome",
    "SagaPath",
    "Turn",
    "duration",
    "instant",
    "saga_path",
    "unit_names",
]
