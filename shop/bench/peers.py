"""The peer systems (../shared/peers: a hand-written Celery chain, DBOS, ...) run on
the same workload just before sagashop, and the ratios between them."""

import json
import os
import subprocess
from pathlib import Path

DEFAULT_PEERS = "celery dbos-queue"


def peers_run(directory: Path, *, n: int, serial: int, peers: str, out: Path) -> list:
    """Run the peers' own script; return its result rows (one per peer and kind)."""
    script = directory / "run_all.sh"
    if not script.exists():
        raise FileNotFoundError(f"{script} not found")
    results = out.resolve()
    env = {
        **os.environ,
        "N": str(n),
        "SERIAL": str(serial),
        "PEERS": peers,
        "RESULTS": str(results),
    }
    subprocess.run([str(script)], cwd=directory, env=env, check=False)
    if not results.exists():
        return []
    return [json.loads(line) for line in results.read_text().splitlines() if line]


def ratio_table(peer_rows: list[dict], runs: list[dict]) -> list[str]:
    """sagashop's burst throughput and one-at-a-time p50 against each peer's."""
    peers = {}
    for row in peer_rows:
        if not row.get("n"):
            continue
        name = row["peer"].removesuffix(" 1-at-a-time")
        kind = "serial" if row["peer"].endswith("1-at-a-time") else "burst"
        peers.setdefault(name, {})[kind] = row
    lines = [
        f"{'system':<28} {'burst sagas/s':>14} {'one at a time p50':>18}",
    ]
    for name, kinds in peers.items():
        lines.append(_row(name, kinds.get("burst"), kinds.get("serial")))
    ours: dict[str, dict] = {}
    for run in runs:
        ours.setdefault(run["mode"], {})[run["kind"]] = run
    for mode, kinds in ours.items():
        burst, serial = kinds.get("burst"), kinds.get("one at a time")
        lines.append(
            _row(
                f"sagashop {mode}",
                burst and {"throughput": burst["sagas_per_second"]},
                serial and {"p50_ms": serial["p50_ms"]},
            )
        )
        for name, kinds in peers.items():
            lines.append(_ratio(name, burst, kinds.get("burst"), serial, kinds))
    return lines


def _row(name: str, burst: dict | None, serial: dict | None) -> str:
    rate = f"{burst['throughput']:.1f}" if burst else "-"
    p50 = f"{serial['p50_ms']:.1f} ms" if serial else "-"
    return f"{name:<28} {rate:>14} {p50:>18}"


def _ratio(name: str, burst, peer_burst, serial, kinds) -> str:
    """How sagashop compares: throughput as a multiple of the peer's (higher is
    better), one-at-a-time p50 as a multiple of the peer's (lower is better)."""
    rate = "-"
    if burst and peer_burst and peer_burst.get("throughput"):
        rate = f"x{burst['sagas_per_second'] / peer_burst['throughput']:.2f}"
    p50 = "-"
    peer_serial = kinds.get("serial")
    if serial and peer_serial and peer_serial.get("p50_ms"):
        p50 = f"x{serial['p50_ms'] / peer_serial['p50_ms']:.2f}"
    return f"{'  vs ' + name:<28} {rate:>14} {p50:>18}"
