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
    pass


class TransientError(StepError):
    pass


class StepTimeout(StepError):
    pass


class DefinitionError(SagaError):
    pass


class ActionNotAllowed(SagaError):
    pass
