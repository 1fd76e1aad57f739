"""What every saga definition shares, whatever runs it: its mode and its name."""

import re

from django.db import models

from sagas.exceptions import DefinitionError

NAME = re.compile(r"^[a-z][a-z0-9_]*$")

# Seconds between a unit's soft and hard time limits, whatever runs it: the soft limit
# interrupts stalled work, the hard one replaces a process that ignores it.
HARD_LIMIT_SLACK = 10.0


class Mode(models.TextChoices):
    """How a saga is run: the three styles of the same purchase."""

    # the engine runs the steps in turn
    ORCHESTRATION = "orchestration", "orchestration"
    # the apps react to each other's events
    CHOREOGRAPHY = "choreography", "choreography"
    # every participant tried, then all confirmed or all cancelled
    TCC = "tcc", "try-confirm-cancel"


def fail(definition, problem: str, step: str = "") -> None:
    """Refuse a definition, naming the saga (and the step) the problem is in."""
    where = f"saga {definition.name!r} ({definition.mode})"
    if step:
        where += f", step {step!r}"
    raise DefinitionError(f"{where}: {problem}")


def check_names(definition, names: list[str]) -> None:
    if not NAME.match(definition.name):
        fail(definition, "the name must be lower_snake_case")
    if not names:
        fail(definition, "it needs at least one step")
    seen: set[str] = set()
    for name in names:
        if not NAME.match(name):
            fail(definition, "step names must be lower_snake_case", name)
        if name in seen:
            fail(definition, "two steps have this name", name)
        seen.add(name)


def check_timeout(definition, timeout: float | None, step: str) -> None:
    # "not > 0" refuses NaN too, which every comparison calls false.
    if timeout is not None and not timeout > 0:
        fail(definition, "its timeout must be a positive number of seconds", step)
