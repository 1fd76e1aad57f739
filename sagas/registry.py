"""The registered saga definitions, and which step each generated Celery task runs."""

from dataclasses import dataclass

from celery import Task

from sagas.definitions import Phase, SagaDefinition
from sagas.exceptions import DefinitionError

_definitions: dict[str, SagaDefinition] = {}
_units: dict[str, "Unit"] = {}


@dataclass(frozen=True)
class Unit:
    """What one task runs: a step's action or compensation, or the saga's end."""

    definition: SagaDefinition
    index: int
    phase: Phase
    task: Task

    @property
    def name(self) -> str:
        return self.definition.task_name(self.index, self.phase)


def register(definition: SagaDefinition) -> SagaDefinition:
    """Make a definition runnable: one Celery task per action, compensation and end."""
    known = _definitions.get(definition.name)
    if known is definition:
        return definition
    if known is not None:
        raise DefinitionError(f"a saga named {definition.name!r} is already registered")

    from sagas.tasks import (
        step_task,
    )  # the tasks module needs the engine, built on this one

    _definitions[definition.name] = definition
    for index, phase in definition.tasks():
        task = step_task(definition, index, phase)
        _units[task.name] = Unit(definition, index, phase, task)
    return definition


def definition(name: str) -> SagaDefinition:
    try:
        return _definitions[name]
    except KeyError:
        raise DefinitionError(f"no saga named {name!r} is registered") from None


def definitions() -> list[SagaDefinition]:
    return list(_definitions.values())


def units() -> list[Unit]:
    return list(_units.values())


def unit(task_name: str) -> Unit:
    try:
        return _units[task_name]
    except KeyError:
        raise DefinitionError(f"task {task_name!r} is not a saga step") from None


def unit_for(definition: SagaDefinition, index: int, phase: Phase) -> Unit:
    return unit(definition.task_name(index, phase))
