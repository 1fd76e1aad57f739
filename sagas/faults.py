"""Fault injection for demos and tests: participant services fail or stall on purpose.

``SAGA_FAULTS`` lists comma-separated ``<point>:<kind>:<rate>`` entries, where kind is
``transient``, ``business``, ``delay=<seconds>s`` or ``hang=<seconds>s`` (a delay
no signal interrupts, as a call stuck in C code: only a hard time limit ends it), e.g.
``payments.charge:transient:0.2,inventory.reserve:delay=3s:0.05``. Empty (the default)
means off; ``/api/health`` shows what is on.
"""

import functools
import random
import re
import signal
import time
from dataclasses import dataclass

from django.conf import settings

from sagas.exceptions import BusinessError, TransientError

_ENTRY = re.compile(
    r"^(?P<point>[a-z_]+\.[a-z_]+):"
    r"(?P<kind>transient|business|(?P<stall>delay|hang)=(?P<delay>[0-9.]+)s)"
    r":(?P<rate>[0-9.]+)$"
)


@dataclass(frozen=True)
class Fault:
    point: str
    kind: str  # transient | business | delay | hang
    rate: float
    delay: float = 0.0

    def __str__(self) -> str:
        stalls = self.kind in ("delay", "hang")
        kind = f"{self.kind}={self.delay:g}s" if stalls else self.kind
        return f"{self.point}:{kind}:{self.rate:g}"


def parse(spec: str) -> list[Fault]:
    faults = []
    for entry in filter(None, (e.strip() for e in spec.split(","))):
        match = _ENTRY.match(entry)
        if match is None or not 0 <= float(match["rate"]) <= 1:
            raise ValueError(
                f"bad SAGA_FAULTS entry {entry!r}: want <app>.<action>:"
                "transient|business|delay=<seconds>s|hang=<seconds>s:"
                "<rate between 0 and 1>"
            )
        kind = match["stall"] or match["kind"]
        faults.append(
            Fault(
                match["point"], kind, float(match["rate"]), float(match["delay"] or 0)
            )
        )
    return faults


@functools.cache
def active() -> dict[str, list[Fault]]:
    by_point: dict[str, list[Fault]] = {}
    for fault in parse(settings.SAGA_FAULTS):
        by_point.setdefault(fault.point, []).append(fault)
    return by_point


def inject(point: str) -> None:
    """Fail or stall here if a fault is configured for ``point`` and the dice say so."""
    for fault in active().get(point, ()):
        if random.random() >= fault.rate:
            continue
        if fault.kind == "delay":
            time.sleep(fault.delay)
        elif fault.kind == "hang":
            _hang(fault.delay)
        elif fault.kind == "business":
            raise BusinessError(f"injected business fault at {point}")
        else:
            raise TransientError(f"injected transient fault at {point}")


def _hang(seconds: float) -> None:
    """Sleep with the time limits' signals held back (a soft limit's SIGALRM in a
    solo worker, SIGUSR1 in a prefork pool process) until it is over."""
    held = {signal.SIGALRM, signal.SIGUSR1}
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, held)
    try:
        time.sleep(seconds)
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


def fault_point(point: str):
    """Mark a participant service as a place where ``SAGA_FAULTS`` can strike."""

    def decorate(service):
        @functools.wraps(service)
        def wrapper(*args, **kwargs):
            inject(point)
            return service(*args, **kwargs)

        return wrapper

    return decorate
