"""What a load test runs (stages, modes, the scenario mix) and the options choosing it.

Plain Python, no Django: `make loadtest` checks its arguments with it before it brings
the system up, so a bad argument starts nothing.
"""

import argparse
import random
import re
from dataclasses import dataclass, replace
from pathlib import Path

# sagas.definitions.Mode's values (a test holds them equal).
MODES = ("orchestration", "choreography", "tcc")
MIXED = "mixed"  # a run whose orders take the modes in turn

# The outcomes an order can end with, as the report names them.
CONFIRMED, CANCELLED, REJECTED = "CONFIRMED", "CANCELLED", "REJECTED"


@dataclass(frozen=True)
class Scenario:
    name: str
    label: str
    expected: str  # CONFIRMED, CANCELLED or REJECTED (a 400 at the door)


SCENARIOS = {
    s.name: s
    for s in (
        Scenario("normal", "normal purchase", CONFIRMED),
        Scenario("balance", "insufficient balance", CANCELLED),
        Scenario("stock", "insufficient stock", CANCELLED),
        Scenario("inactive", "inactive payment method", REJECTED),
        Scenario("unserved", "unserved destination (AQ)", CANCELLED),
    )
}
DEFAULT_STAGES = "light=50,medium=200,heavy=1000"
DEFAULT_MIX = "normal=70,balance=10,stock=10,inactive=5,unserved=5"
MAX_REQUESTS = 100_000  # per stage: a load test's loop is bounded
_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_-]*\Z")


class OptionsError(ValueError):
    """An argument the load test cannot run with, said in one line."""


@dataclass(frozen=True)
class Options:
    url: str | None
    stages: dict[str, int]
    modes: tuple[str, ...]
    mixed: bool
    mix: dict[str, int]
    clients: int
    customers: int
    timeout: float
    seed: int
    out: Path | None
    pids: Path | None

    def runs(self) -> list[tuple[str, str]]:
        """``(stage, mode or MIXED)`` in the order they run: at each stage's load,
        every mode in turn, so they meet the machine in the same state."""
        labels = (MIXED,) if self.mixed else self.modes
        return [(stage, label) for stage in self.stages for label in labels]

    def with_url(self, url: str) -> "Options":
        return replace(self, url=url.rstrip("/"))

    def as_dict(self) -> dict:
        return {
            "url": self.url,
            "stages": self.stages,
            "modes": list(self.modes),
            "mixed": self.mixed,
            "mix": self.mix,
            "clients": self.clients,
            "customers": self.customers,
            "timeout": self.timeout,
            "seed": self.seed,
        }


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options, read as text: ``options_from`` checks them all at once."""
    add = parser.add_argument
    add("--url", help="the system's web address (default: from WEB_PORT, 8000)")
    add("--stages", help=f"name=orders,... run in turn (default {DEFAULT_STAGES})")
    add("--modes", help="comma-separated modes, or all (default: all three in turn)")
    add(
        "--mixed",
        action="store_true",
        default=None,
        help="run each stage once, its orders taking the modes in turn",
    )
    add("--mix", help=f"scenario=weight,... (default {DEFAULT_MIX})")
    add("--clients", help="concurrent HTTP clients, each on its own connection (8)")
    add("--customers", help="customers the orders are spread over (50)")
    add("--timeout", help="seconds a stage's sagas may take to end after (600)")
    add("--seed", help="seed of the order in which scenarios are shuffled (1)")
    add("--out", help="report folder (default loadtest-results/<UTC time>/)")
    add("--pids", help="pid files of the system's processes (default .run/pids)")


def options_from(values: dict) -> Options:
    """Check every option given (others take their defaults); OptionsError if bad."""

    def get(name: str):
        return values.get(name)

    return Options(
        url=_url(get("url")),
        stages=_pairs("--stages", get("stages") or DEFAULT_STAGES, minimum=1),
        modes=_modes(get("modes")),
        mixed=bool(get("mixed")),
        mix=_mix(get("mix") or DEFAULT_MIX),
        clients=_whole("--clients", get("clients"), 8, 1, 256),
        customers=_whole("--customers", get("customers"), 50, 1, 10_000),
        timeout=_seconds("--timeout", get("timeout"), 600.0),
        seed=_whole("--seed", get("seed"), 1, 0, 2**31),
        out=_out(get("out")),
        pids=Path(get("pids")) if get("pids") else None,
    )


def parse(argv: list[str]) -> Options:
    """``options_from`` of a command line, for callers without Django's parser."""
    parser = _OneLineParser(prog="loadtest", add_help=False)
    add_arguments(parser)
    return options_from(vars(parser.parse_args(argv)))


class _OneLineParser(argparse.ArgumentParser):
    def error(self, message: str):
        raise OptionsError(f"{message} (see manage.py loadtest --help)")


def scenario_sequence(stage: str, count: int, mix: dict[str, int], seed: int):
    """The scenarios of a stage's ``count`` orders: each scenario's share of the mix
    (largest remainders), shuffled the same way for every mode of the stage."""
    total = sum(mix.values())
    exact = {name: count * weight / total for name, weight in mix.items()}
    counts = {name: int(share) for name, share in exact.items()}
    by_remainder = sorted(exact, key=lambda n: (counts[n] - exact[n], n))
    for name in by_remainder[: count - sum(counts.values())]:
        counts[name] += 1
    sequence = [name for name in SCENARIOS for _ in range(counts.get(name, 0))]
    random.Random(f"{seed}:{stage}").shuffle(sequence)
    return sequence


# CHECKS ------------------------------------------------------------------------------


def _url(value: str | None) -> str | None:
    if value is not None and not re.match(r"https?://[^/\s]+/?\Z", value):
        raise OptionsError(f"--url: {value!r} is not like http://127.0.0.1:8000")
    return value.rstrip("/") if value else None


def _pairs(option: str, text: str, *, minimum: int) -> dict[str, int]:
    """``name=count,...`` as an ordered dict, each count a whole number."""
    pairs: dict[str, int] = {}
    for item in text.split(","):
        name, equals, number = item.strip().partition("=")
        if not equals or not _NAME.match(name):
            raise OptionsError(f"{option}: {item!r} is not like name=number")
        if name in pairs:
            raise OptionsError(f"{option}: {name!r} is given twice")
        if not re.fullmatch(r"[0-9]+", number) or not (
            minimum <= int(number) <= MAX_REQUESTS
        ):
            raise OptionsError(
                f"{option}: {item!r}: the number must be a whole number from "
                f"{minimum} to {MAX_REQUESTS}"
            )
        pairs[name] = int(number)
    return pairs


def _modes(text: str | None) -> tuple[str, ...]:
    if not text or text == "all":
        return MODES
    modes = tuple(dict.fromkeys(m.strip() for m in text.split(",")))
    for mode in modes:
        if mode not in MODES:
            raise OptionsError(
                f"--modes: unknown mode {mode!r} (choose from {', '.join(MODES)}, all)"
            )
    return modes


def _mix(text: str) -> dict[str, int]:
    mix = _pairs("--mix", text, minimum=0)
    for name in mix:
        if name not in SCENARIOS:
            raise OptionsError(
                f"--mix: unknown scenario {name!r} (choose from {', '.join(SCENARIOS)})"
            )
    if not any(mix.values()):
        raise OptionsError("--mix: at least one scenario needs a weight above 0")
    return {name: weight for name, weight in mix.items() if weight}


def _whole(option: str, value, default: int, low: int, high: int) -> int:
    if value is None:
        return default
    text = str(value).strip()
    if not re.fullmatch(r"-?[0-9]+", text) or not low <= int(text) <= high:
        raise OptionsError(
            f"{option}: {value!r} is not a whole number from {low} to {high}"
        )
    return int(text)


def _seconds(option: str, value, default: float) -> float:
    if value is None:
        return default
    try:
        seconds = float(value)
    except ValueError:
        seconds = -1.0
    if not 0 < seconds <= 86_400:
        raise OptionsError(f"{option}: {value!r} is not a number of seconds above 0")
    return seconds


def _out(value: str | None) -> Path | None:
    if value is None:
        return None
    path = Path(value)
    if path.exists() and (not path.is_dir() or any(path.iterdir())):
        raise OptionsError(f"--out: {value} exists and is not an empty folder")
    return path
