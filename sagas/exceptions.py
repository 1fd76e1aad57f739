"""Errors of the saga engine, and the ones a participant raises to say what comes next.

    SagaError
     ├── StepError                 raised by a step's action or compensation
     │    ├── BusinessError        cannot be honoured: compensate at once, no retry
     │    ├── TransientError       may succeed later: retried with backoff
     │    └── StepTimeout          the step overran its deadline
     ├── DefinitionError           a saga definition that cannot run
     └── ActionNotAllowed          an operator action the saga's state forbids

Any other exception from a step counts as transient, up to the step's retry limit.
"""


class SagaError(Exception):
    pass


class StepError(SagaError):
    pass


class BusinessError(StepError):
    """A refusal (insufficient stock or balance, an unserved destination). Its words
    are for its customer (``str``: the order's cancel reason) and the saga's staff
    record; its ``repr``, which log lines show (Celery's "raised expected: ..."),
    names the refusal only, so amounts and balances stay out of the logs."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class TransientError(StepError):
    pass


class StepTimeout(StepError):
    pass


class DefinitionError(SagaError):
    pass


class ActionNotAllowed(SagaError):
    pass
