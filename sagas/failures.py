"""What a failed step means: its kind, the technical reason, and words for a customer.

business     the participant refused (BusinessError): compensate at once
timeout      the step ran past its deadline: compensate, or retry after the pivot
transient    the database, the broker or a service was away: retry with backoff
unexpected   anything else (a bug: IntegrityError, an invalid transition, ...):
             retried a few times only (SAGA_UNEXPECTED_RETRIES), then the saga
             compensates before its pivot and needs an operator after it
"""

from dataclasses import dataclass
from enum import StrEnum

import amqp.exceptions
import kombu.exceptions
import psycopg2
import psycopg2.errors
import redis.exceptions
from billiard.exceptions import (
    SoftTimeLimitExceeded,
    TimeLimitExceeded,
    WorkerLostError,
)
from django.db import InterfaceError, OperationalError

from sagas.exceptions import BusinessError, StepTimeout, TransientError
from shop import sql


class FailureKind(StrEnum):
    BUSINESS = "business"
    TIMEOUT = "timeout"
    TRANSIENT = "transient"
    UNEXPECTED = "unexpected"


# Errors that go away by themselves: an outage of the database, the broker or the
# network, a deadlock or serialization failure (OperationalError), a killed process.
TRANSIENT_ERRORS = (
    TransientError,
    OperationalError,
    InterfaceError,
    psycopg2.OperationalError,
    psycopg2.InterfaceError,
    kombu.exceptions.OperationalError,
    amqp.exceptions.ConnectionError,
    redis.exceptions.ConnectionError,
    redis.exceptions.TimeoutError,
    ConnectionError,
    TimeoutError,
    WorkerLostError,
)
TIMEOUT_ERRORS = (StepTimeout, SoftTimeLimitExceeded, TimeLimitExceeded)

# What a customer is told when the cause is not a business refusal (whose own
# message is meant for them): never a class, task or operator name.
PUBLIC_REASONS = {
    FailureKind.TIMEOUT: "the purchase could not be completed in time",
    FailureKind.TRANSIENT: "a service needed for the purchase was unavailable",
    FailureKind.UNEXPECTED: "the purchase could not be completed",
}


@dataclass(frozen=True)
class Failure:
    kind: FailureKind
    reason: str  # technical, for staff: "purchase.charge_payment: InsufficientFunds: …"
    public: str  # for the customer: "insufficient balance: 37.50 needed, 0.00 …"
    error_class: str = ""  # the exception's class, for logs: "InsufficientFunds"


def failure_of(error: BaseException, *, unit_name: str) -> Failure:
    """The failure a step's exception stands for."""
    kind = classify(error)
    public = str(error) if kind is FailureKind.BUSINESS else PUBLIC_REASONS[kind]
    return Failure(
        kind,
        f"{unit_name}: {describe(error)}",
        public[:2000],
        error.__class__.__name__,
    )


def failure_because(kind: FailureKind, reason: str) -> Failure:
    """A failure the engine itself decides (lost work, for one), in generic words."""
    public = PUBLIC_REASONS.get(kind, PUBLIC_REASONS[FailureKind.UNEXPECTED])
    # Work lost past its recoveries counts as a step that timed out.
    error_class = StepTimeout.__name__ if kind is FailureKind.TIMEOUT else ""
    return Failure(kind, reason, public, error_class)


def classify(error: BaseException) -> FailureKind:
    if isinstance(error, BusinessError):
        return FailureKind.BUSINESS
    if isinstance(error, TIMEOUT_ERRORS):
        return FailureKind.TIMEOUT
    # statement_timeout: Django re-raises psycopg2's QueryCanceled as OperationalError.
    if isinstance(error.__cause__, psycopg2.errors.QueryCanceled):
        return FailureKind.TIMEOUT
    if isinstance(error, TRANSIENT_ERRORS) or sql.is_stale_prepared(error):
        return FailureKind.TRANSIENT
    return FailureKind.UNEXPECTED


def describe(error: BaseException) -> str:
    """An error as one line: its class and message, for step records and logs."""
    text = str(error) or error.__class__.__name__
    return f"{error.__class__.__name__}: {text}"[:2000]
