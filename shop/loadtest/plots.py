"""The load test's plots, drawn with matplotlib's Agg renderer straight to PNG files.

Figures are made with ``Figure`` rather than pyplot: no global state and no display,
so a plot is the same on a server, in a test and on a laptop.
"""

from pathlib import Path

from matplotlib.figure import Figure

from shop.loadtest.plan import CANCELLED, CONFIRMED, MODES, REJECTED
from shop.loadtest.rows import (
    FAILED,
    NO_ANSWER,
    OUTCOMES,
    SERVER_ERROR,
    THROTTLED,
    UNFINISHED,
    Row,
)
from shop.loadtest.stats import ALL_MODES, Run

COLOURS = {
    CONFIRMED: "#2e7d32",
    CANCELLED: "#90a4ae",
    REJECTED: "#5c6bc0",
    THROTTLED: "#ffa000",
    FAILED: "#c62828",
    UNFINISHED: "#6a1b9a",
    SERVER_ERROR: "#d84315",
    NO_ANSWER: "#000000",
}
MODE_COLOURS = dict(zip((*MODES, ALL_MODES), ("C0", "C1", "C2", "C7"), strict=True))
DPI = 100

# File name and what it shows, in the order the report presents them.
PLOTS = {
    "success_failure_by_stage.png": "Outcomes per stage and mode, stacked; above each "
    "bar the share of requests that ended as their scenario expects.",
    "latency_histogram_by_stage.png": "How end-to-end latency (order sent to saga "
    "ended) and HTTP response time are spread, per stage, one line per mode.",
    "latency_over_time_by_stage.png": "End-to-end latency of each order by when it "
    "was sent within its run, per stage; a cross marks an outcome not as expected.",
    "modes_side_by_side.png": "The modes side by side at each stage: median and p95 "
    "end-to-end latency, sagas ended per second, CPU seconds per saga.",
}


def draw_all(folder: Path, runs: list[Run], summary: list[dict]) -> list[Path]:
    stages = list(dict.fromkeys(run.stage for run in runs))
    drawings = (
        _success_failure(runs, stages),
        _latency_histograms(runs, stages),
        _latency_over_time(runs, stages),
        _modes_side_by_side(summary, stages),
    )
    paths = []
    for name, figure in zip(PLOTS, drawings, strict=True):
        figure.savefig(folder / name, dpi=DPI)
        paths.append(folder / name)
    return paths


def _figure(rows: int, columns: int, *, height: float = 3.6) -> tuple[Figure, list]:
    figure = Figure(
        figsize=(max(6.4, 4.6 * columns), height * rows), layout="constrained"
    )
    axes = figure.subplots(rows, columns, squeeze=False)
    return figure, axes


def _rows_of(runs: list[Run], stage: str) -> list[Row]:
    return [row for run in runs if run.stage == stage for row in run.rows]


def _modes_of(rows: list[Row]) -> list[str]:
    present = {row.mode for row in rows}
    return [m for m in MODES if m in present]


def _success_failure(runs: list[Run], stages: list[str]) -> Figure:
    figure, axes = _figure(1, len(stages))
    figure.suptitle("Outcome of every request, per stage and mode")
    for ax, stage in zip(axes[0], stages, strict=True):
        rows = _rows_of(runs, stage)
        bars = [(mode, [r for r in rows if r.mode == mode]) for mode in _modes_of(rows)]
        names = [mode for mode, _ in bars]
        bottom = [0] * len(bars)
        for outcome in OUTCOMES:
            counts = [sum(r.outcome == outcome for r in rows) for _, rows in bars]
            if any(counts):
                ax.bar(
                    names, counts, bottom=bottom, label=outcome, color=COLOURS[outcome]
                )
                bottom = [b + c for b, c in zip(bottom, counts, strict=True)]
        for x, (_, rows) in enumerate(bars):
            share = sum(r.as_expected for r in rows) / len(rows) if rows else 0
            ax.annotate(
                f"{share:.0%} as expected",
                (x, bottom[x]),
                ha="center",
                va="bottom",
                fontsize=8,
                xytext=(0, 2),
                textcoords="offset points",
            )
        ax.set_title(f"{stage} ({len(bars[0][1]) if bars else 0} per mode)")
        ax.set_ylabel("requests")
        ax.margins(y=0.12)
    _legend(figure, axes)
    return figure


def _latency_histograms(runs: list[Run], stages: list[str]) -> Figure:
    figure, axes = _figure(2, len(stages))
    figure.suptitle("Latency distribution per stage")
    for column, stage in enumerate(stages):
        rows = _rows_of(runs, stage)
        for line, (value, what) in enumerate(
            ((_e2e_s, "end-to-end latency (s)"), (_http_ms, "HTTP response (ms)"))
        ):
            ax = axes[line][column]
            values = {
                mode: [value(r) for r in rows if r.mode == mode]
                for mode in _modes_of(rows)
            }
            values = {m: [v for v in vs if v is not None] for m, vs in values.items()}
            everything = [v for vs in values.values() for v in vs]
            if everything:
                low, high = min(everything), max(everything)
                bins = (
                    [low + (high - low) * i / 30 for i in range(31)]
                    if high > low
                    else 10
                )
                for mode, vs in values.items():
                    if vs:
                        ax.hist(
                            vs,
                            bins=bins,
                            histtype="step",
                            linewidth=1.6,
                            label=mode,
                            color=MODE_COLOURS[mode],
                        )
            ax.set_title(stage if line == 0 else "")
            ax.set_xlabel(what)
            ax.set_ylabel("requests")
    _legend(figure, axes)
    return figure


def _latency_over_time(runs: list[Run], stages: list[str]) -> Figure:
    figure, axes = _figure(1, len(stages))
    figure.suptitle("End-to-end latency by when each order was sent")
    for ax, stage in zip(axes[0], stages, strict=True):
        rows = _rows_of(runs, stage)
        for mode in _modes_of(rows):
            mine = [r for r in rows if r.mode == mode and r.e2e_ms is not None]
            ax.scatter(
                [r.started_s for r in mine],
                [_e2e_s(r) for r in mine],
                s=8,
                alpha=0.7,
                label=mode,
                color=MODE_COLOURS[mode],
            )
            odd = [r for r in mine if not r.as_expected]
            if odd:
                ax.scatter(
                    [r.started_s for r in odd],
                    [_e2e_s(r) for r in odd],
                    marker="x",
                    s=30,
                    color=COLOURS[FAILED],
                    label="not as expected",
                )
        ax.set_title(stage)
        ax.set_xlabel("seconds into the run")
        ax.set_ylabel("end-to-end latency (s)")
    _legend(figure, axes)
    return figure


def _modes_side_by_side(summary: list[dict], stages: list[str]) -> Figure:
    figure, axes = _figure(2, 2, height=3.4)
    figure.suptitle("The modes side by side, per stage")
    panels = (
        ("p50 end-to-end latency (s, log scale)", lambda s: _s(s["e2e_ms"]["p50"])),
        ("p95 end-to-end latency (s, log scale)", lambda s: _s(s["e2e_ms"]["p95"])),
        ("sagas ended per second", lambda s: s["throughput"]),
        ("CPU seconds per saga", lambda s: s["cpu_per_saga"]),
    )
    for ax, (title, value) in zip(
        [a for row in axes for a in row], panels, strict=True
    ):
        values = {
            mode: {s["stage"]: value(s) for s in summary if s["mode"] == mode}
            for mode in (*MODES, ALL_MODES)
        }
        # Only the modes this panel has numbers for (a mixed run's CPU is all modes').
        drawn = [m for m, found in values.items() if any(found.values())]
        width = 0.8 / max(1, len(drawn))
        for n, mode in enumerate(drawn):
            offset = (n - (len(drawn) - 1) / 2) * width
            ax.bar(
                [i + offset for i in range(len(stages))],
                [values[mode].get(stage) or 0 for stage in stages],
                width=width,
                label=mode,
                color=MODE_COLOURS[mode],
            )
        ax.set_xticks(range(len(stages)), stages)
        ax.set_title(title)
        if "log scale" in title:
            # Seconds at light load and minutes at heavy load: both stay readable.
            ax.set_yscale("log")
    _legend(figure, axes)
    return figure


def _e2e_s(row: Row) -> float | None:
    return _s(row.e2e_ms)


def _http_ms(row: Row) -> float | None:
    return row.http_ms


def _s(ms: float | None) -> float | None:
    """Seconds: end-to-end latencies run to minutes under load, too wide for ms."""
    return None if ms is None else ms / 1000


def _legend(figure: Figure, axes) -> None:
    """One legend for the figure, from every panel's labels, each once."""
    labelled: dict[str, object] = {}
    for row in axes:
        for ax in row:
            for handle, label in zip(*ax.get_legend_handles_labels(), strict=True):
                labelled.setdefault(label, handle)
    if labelled:
        figure.legend(
            labelled.values(),
            labelled.keys(),
            loc="outside lower center",
            ncols=min(len(labelled), 8),
            frameon=False,
        )
