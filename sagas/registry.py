"""The registered saga definitions, by name and mode, and what runs each unit of them.

A definition is registered by the app that owns its process (``orders/sagas.py``),
when Django loads that module. The runner of each mode registers a *compiler* first
(sagas.apps): it turns a definition into the Celery tasks that run it. A definition
that cannot run is kept with its problem, which ``manage.py check`` reports; it is
never run.
"""

from collections.abc import Callable
from dataclasses import dataclass

from celery import Task

from sagas.definitions import Mode, Phase
from sagas.exceptions import DefinitionError
from sagas.messaging import correlation


@dataclass(frozen=True)
class Unit:
    """What one task runs: a step's action or compensation, or the saga's end."""

    definition: object
    index: int
    phase: Phase
    task: Task

    @property
    def name(self) -> str:
        return self.definition.task_name(self.index, self.phase)


Compiler = Callable[[object], list[Unit]]

_definitions: dict[tuple[str, str], object] = {}
_problems: dict[tuple[str, str], str] = {}
_units: dict[str, Unit] = {}
_compilers: dict[str, Compiler] = {}


def compiler(mode: Mode) -> Callable[[Compiler], Compiler]:
    """Register how definitions of ``mode`` become tasks (one per runnable unit)."""

    def register_compiler(compile_units: Compiler) -> Compiler:
        _compilers[mode] = compile_units
        return compile_units

    return register_compiler


def register(definition):
    """Make a definition runnable, or keep why it cannot run for the system checks."""
    key = (definition.name, definition.mode)
    known = _definitions.get(key)
    if known is definition:
        return definition
    if known is not None:
        raise DefinitionError(
            f"a saga named {definition.name!r} ({definition.mode}) is already "
            "registered"
        )
    _definitions[key] = definition
    correlation.trace(definition.subject)
    try:
        definition.validate()
    except DefinitionError as problem:
        _problems[key] = str(problem)
        return definition
    compile_units = _compilers.get(definition.mode)
    if compile_units is not None:
        for unit in compile_units(definition):
            _units[unit.task.name] = unit
    return definition


def unregister(definition) -> None:
    """Forget a definition (tests register broken ones to see them refused)."""
    key = (definition.name, definition.mode)
    _definitions.pop(key, None)
    _problems.pop(key, None)
    for name in [n for n, u in _units.items() if u.definition is definition]:
        del _units[name]


def definition(name: str, mode: str = Mode.ORCHESTRATION):
    key = (name, mode)
    if key in _problems:
        raise DefinitionError(_problems[key])
    try:
        return _definitions[key]
    except KeyError:
        raise DefinitionError(
            f"no saga named {name!r} ({mode}) is registered"
        ) from None


def definition_of(saga):
    """The definition a saga runs by."""
    return definition(saga.name, saga.mode)


def headers_of(saga, **more) -> dict:
    """What a saga's messages and log lines carry: its id, its mode, its subject (the
    context keys its definition names, e.g. ``order_id``), and ``more`` (the step)."""
    known = _definitions.get((saga.name, saga.mode))
    keys = known.subject if known is not None else ()
    subject = {key: saga.context.get(key) for key in keys}
    return {"saga_id": saga.pk, "mode": saga.mode, **subject, **more}


def definitions() -> list:
    """Every definition that can run."""
    return [d for key, d in _definitions.items() if key not in _problems]


def problems() -> list[str]:
    """Why each definition that cannot run cannot."""
    return list(_problems.values())


def units() -> list[Unit]:
    return list(_units.values())


def unit(task_name: str) -> Unit:
    try:
        return _units[task_name]
    except KeyError:
        raise DefinitionError(f"task {task_name!r} is not a saga step") from None


def unit_for(definition, index: int, phase: Phase) -> Unit:
    return unit(definition.task_name(index, phase))
