"""What travels with every message of a saga: its id, its mode, the step at work.

A step or a handler runs inside ``correlated(...)``; every outbox row written then
carries those headers, so the relay can route the event to the apps that want it,
the consumers know which saga it belongs to, and one purchase can be followed across
the web, the relay and the workers. ``collecting()`` also notes the events a unit of
work emitted, in order (a choreographed reaction checks that its outcome was
announced, and records what its events mean for its saga).
"""

import contextlib
from collections.abc import Iterator
from contextvars import ContextVar
from dataclasses import dataclass


@dataclass(frozen=True)
class Emitted:
    topic: str
    payload: dict
    headers: dict


_headers: ContextVar[dict] = ContextVar("saga_headers", default={})  # noqa: B039
_emitted: ContextVar[list[Emitted] | None] = ContextVar("saga_emitted", default=None)


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
