"""What travels with every message of a saga: its id, its mode, the step at work.

A step or a handler runs inside ``correlated(...)``; every outbox row written then
carries those headers, so the relay can route the event to the apps that want it,
the consumers know which saga it belongs to, and one purchase can be followed across
the web, the relay and the workers. ``collecting()`` also notes the events a unit of
work emitted, in order (a choreographed reaction checks that its outcome was
announced, and records what its events mean for its saga).

Of these headers, the *traced* ones identify the work (saga_id, mode, step, and the
subject keys definitions declare, such as order_id): they also travel in every Celery
task message sent meanwhile (sagas.messaging.tracing) and stand on every log line
(shop.observability.logs). Others (a failure's ``reason``) stay with the events.
"""

import contextlib
from collections.abc import Iterable, Iterator
from contextvars import ContextVar, Token
from dataclasses import dataclass


@dataclass(frozen=True)
class Emitted:
    topic: str
    payload: dict
    headers: dict


_headers: ContextVar[dict] = ContextVar("saga_headers", default={})  # noqa: B039
_emitted: ContextVar[list[Emitted] | None] = ContextVar("saga_emitted", default=None)
_traced: set[str] = {"saga_id", "mode", "step"}


@contextlib.contextmanager
def correlated(**headers) -> Iterator[dict]:
    """Add ``headers`` (saga_id, mode, step, ...) to every message written inside."""
    merged = {**_headers.get(), **{k: v for k, v in headers.items() if v is not None}}
    token = _headers.set(merged)
    try:
        yield merged
    finally:
        _headers.reset(token)


def current() -> dict:
    return dict(_headers.get())


def trace(keys: Iterable[str]) -> None:
    """Trace these keys too (a definition's subject, e.g. ``order_id``)."""
    _traced.update(keys)


def traced(headers: dict | None = None) -> dict:
    """The traced keys of ``headers`` (default: the current ones)."""
    headers = _headers.get() if headers is None else headers
    return {k: v for k, v in headers.items() if k in _traced and v is not None}


def bind(headers: dict) -> Token:
    """Make ``headers`` current until ``unbind`` (a task's whole run; its start and
    end are separate signals, so this cannot be a ``with`` block)."""
    return _headers.set(traced(headers))


def unbind(token: Token) -> None:
    _headers.reset(token)


@contextlib.contextmanager
def collecting() -> Iterator[list[Emitted]]:
    """Note the events emitted inside (in order), written or not (an event nobody
    subscribes to is not written, but it still happened)."""
    emitted: list[Emitted] = []
    token = _emitted.set(emitted)
    try:
        yield emitted
    finally:
        _emitted.reset(token)


def note_emitted(topic: str, payload: dict, headers: dict) -> None:
    emitted = _emitted.get()
    if emitted is not None:
        emitted.append(Emitted(topic, payload, headers))
