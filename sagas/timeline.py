"""A saga's timeline as SVG: its units of work as bars on a time axis.

One lane per unit (each step, then each compensation in the order it ran, then the
end of an undone saga) under a lane of the saga's own events. A solid bar is a run
whose start and end were recorded; a hatched one, a run whose start was not (it began
at or after the bar's left edge, when its work was sent); a dotted line, work sent and
waiting to start. A cross marks each failed attempt, a vertical line each moment the
saga turned (the undoing began, it gave up, it ended). Every bar and mark carries its
exact times as a tooltip. Drawn on the server with the definition diagrams' palette
(sagas.diagrams): no JavaScript, no CDN.
"""

import itertools
from datetime import datetime, timedelta
from html import escape

from sagas import diagrams
from sagas.history import Attempt, Lane, Outcome, SagaPath, duration, instant
from sagas.models import SagaEventKind

WIDTH = 1000
LABELS = 220  # the lanes' names end here, right-aligned
LEFT, RIGHT = LABELS + 12, 900  # the axis; past its end, room for a duration
AXIS = 44  # the cuts' and the ticks' labels, above the lanes
ROW, BAR = 22, 12
MIN_BAR = 2.0  # a step of a few ms on an axis of minutes still shows
TURN_ROW = 14
TICK_PX = 70  # at least this far apart
# Idle gaps cut out of the axis: this long at least, and over this share of the rest.
BREAK_MIN_MS, BREAK_SHARE, BREAK_WIDTH, MAX_BREAKS = 1000, 0.2, 28, 4

SECOND, MINUTE, HOUR = 1000, 60_000, 3_600_000
# Tick spacings in ms: 1-2-5 up to seconds, then what a clock reads.
TICK_STEPS = [m * 10.0**e for e in range(-2, 4) for m in (1, 2, 5)] + [
    10 * SECOND,
    15 * SECOND,
    30 * SECOND,
    MINUTE,
    2 * MINUTE,
    5 * MINUTE,
    10 * MINUTE,
    15 * MINUTE,
    30 * MINUTE,
    HOUR,
    2 * HOUR,
    3 * HOUR,
    6 * HOUR,
    12 * HOUR,
    24 * HOUR,
    48 * HOUR,
    168 * HOUR,
]

COLOURS = {
    Outcome.DONE: diagrams.DONE,
    Outcome.FAILED: diagrams.FAILED,
    Outcome.UNDONE: diagrams.COMPENSATING,
    Outcome.RUNNING: diagrams.ACTIVE,
}
TURN_COLOURS = {
    "undo": diagrams.FAILED[1],
    "failed": diagrams.FAILED[1],
    "completed": diagrams.DONE[1],
    "compensated": diagrams.COMPENSATING[1],
    "now": diagrams.ACTIVE[1],
}
# The saga's own events: (shape, colour).
EVENT_SHAPES = {
    SagaEventKind.COMPENSATION_STARTED: ("circle", diagrams.FAILED[1]),
    SagaEventKind.FAILED: ("square", diagrams.FAILED[1]),
    SagaEventKind.ATTENTION: ("triangle", diagrams.COMPENSATING[1]),
    SagaEventKind.OPERATOR_RETRY: ("diamond", diagrams.ACTIVE[1]),
    SagaEventKind.OPERATOR_CANCEL: ("diamond", diagrams.ACTIVE[1]),
}


def svg(path: SagaPath, *, title: str) -> str:
    """The timeline of ``path`` as an SVG drawing that scales down to its container."""
    axis = _Axis(path.start, path.end, _moments(path), _runs(path))
    top = AXIS
    parts = [_patterns(), *axis.ticks(top, top + ROW * len(path.lanes))]
    for row, lane in enumerate(path.lanes):
        parts.append(_lane(lane, axis, top + row * ROW, path, shaded=row % 2 == 1))
    bottom = top + ROW * len(path.lanes)
    turns = list(path.turns)
    if path.active:
        turns.append(_Now(path.end))
    parts += _turns(turns, axis, top, bottom)
    height = bottom + 2 * TURN_ROW + 6
    return diagrams.document(
        WIDTH,
        height,
        title,
        parts,
        class_="saga-timeline",
        style="max-width: 100%; height: auto",
        data_start=instant(path.start),
        data_end=instant(path.end),
    )


class _Axis:
    """Time to x: linear, except that each long idle gap (a second or more, and over
    a fifth of the time left) is cut to a fixed width and marked with how long it
    was. So the steps of a few ms of a saga that waited minutes (a backoff, a queue)
    still show side by side; a saga without such gaps is drawn to one scale."""

    def __init__(self, start: datetime, end: datetime, moments, runs) -> None:
        self.start = start
        total = max(self._ms(end), 0.01)
        points = sorted(
            {0.0, total} | {min(max(self._ms(m), 0), total) for m in moments}
        )
        busy = [(self._ms(a), self._ms(b)) for a, b in runs]
        idle = [
            (a, b)
            for a, b in itertools.pairwise(points)
            if not any(x < (a + b) / 2 < y for x, y in busy)  # not a recorded run
        ]
        self.breaks: list[tuple[float, float]] = []
        shown = total
        for a, b in sorted(idle, key=lambda gap: gap[0] - gap[1])[:MAX_BREAKS]:
            if b - a < BREAK_MIN_MS or b - a <= BREAK_SHARE * shown:
                break
            self.breaks.append((a, b))
            shown -= b - a
        self.breaks.sort()
        self.total = total
        self.scale = (RIGHT - LEFT - BREAK_WIDTH * len(self.breaks)) / shown

    def _ms(self, moment: datetime) -> float:
        return (moment - self.start).total_seconds() * 1000

    def x(self, moment: datetime) -> float:
        return round(self._x(self._ms(moment)), 1)

    def _x(self, offset: float) -> float:
        x, done = LEFT, 0.0
        for a, b in self.breaks:
            if offset <= a:
                break
            if offset < b:  # inside a cut: across its width, so bars stay whole
                return (
                    x + (a - done) * self.scale + (offset - a) / (b - a) * BREAK_WIDTH
                )
            x += (a - done) * self.scale + BREAK_WIDTH
            done = b
        return x + (offset - done) * self.scale

    def ticks(self, top: float, bottom: float) -> list[str]:
        """Ticks every "nice" interval of the linear parts, and each cut marked."""
        step = next(
            (s for s in TICK_STEPS if s * self.scale >= TICK_PX), TICK_STEPS[-1]
        )
        parts, last = ['<g class="axis">'], -TICK_PX
        cuts = [0.0, *(x for cut in self.breaks for x in cut), self.total]
        for a, b in zip(cuts[::2], cuts[1::2], strict=True):
            k = -(-a // step)  # the first multiple of step in [a, b]
            while k * step <= b:
                at = round(self._x(k * step), 1)
                if at - last >= TICK_PX * 0.6:
                    parts.append(
                        f'<line x1="{at}" y1="{top - 6}" x2="{at}" y2="{bottom}" '
                        'stroke="#ddd"/>'
                        f'<text x="{at}" y="{top - 10}" text-anchor="middle" '
                        f'font-size="11" fill="#666">{_tick_label(k * step)}</text>'
                    )
                    last = at
                k += 1
        labelled = -TICK_PX
        for a, b in self.breaks:
            x1, x2 = self._x(a), self._x(b)
            gap = duration(timedelta(milliseconds=b - a))
            parts.append(
                f'<g class="cut" data-ms="{round(b - a, 1)}">'
                f'<rect x="{x1}" y="{top}" width="{round(x2 - x1, 1)}" '
                f'height="{bottom - top}" fill="#888" fill-opacity="0.12"/>'
                f'<path d="M {x1 + 4} {top - 2} l 4 -8 M {x2 - 8} {top - 2} l 4 -8" '
                f'stroke="#888"/><title>{gap} left out of the axis: nothing ran '
                "then that was recorded</title></g>"
            )
            if x1 - labelled >= 44:  # else the tooltip tells
                parts.append(
                    f'<text class="cut-label" x="{(x1 + x2) / 2}" y="{top - 26}" '
                    f'text-anchor="middle" font-size="10" fill="#666">{gap}</text>'
                )
                labelled = x1
        parts.append("</g>")
        return parts


def _moments(path: SagaPath) -> list[datetime]:
    """Every instant the timeline draws something at."""
    moments = [turn.at for turn in path.turns]
    for lane in path.lanes:
        moments += [mark.at for mark in lane.marks]
        for attempt in lane.attempts:
            moments += [t for t in (attempt.sent, attempt.started, attempt.ended) if t]
    return moments


def _runs(path: SagaPath) -> list[tuple[datetime, datetime]]:
    """The recorded runs (start and end known): time the axis never cuts."""
    return [
        (attempt.started, attempt.ended or path.end)
        for lane in path.lanes
        for attempt in lane.attempts
        if attempt.started
    ]


def _tick_label(ms: float) -> str:
    """A tick's time since the saga was created: ``0``, ``250 ms``, ``1.5 s``,
    ``12 s``, and from a minute on as a clock reads, ``1:04.5``, ``1:02:05``."""
    ms = round(ms, 3)
    if ms == 0:
        return "0"
    if ms < SECOND:
        return f"{ms:g} ms"
    if ms < MINUTE:
        return f"{ms / SECOND:g} s"
    minutes, rest = divmod(ms, MINUTE)
    seconds = f"{rest / SECOND:06.3f}".rstrip("0").rstrip(".")
    seconds = seconds if "." in seconds else f"{int(rest // SECOND):02d}"
    if minutes < 60:
        return f"{int(minutes)}:{seconds}"
    return f"{int(minutes // 60)}:{int(minutes % 60):02d}:{seconds}"


def _patterns() -> str:
    """Hatching, one per outcome: the runs whose start was not recorded."""
    patterns = [
        f'<pattern id="tl-hatch-{outcome}" width="6" height="6" '
        'patternUnits="userSpaceOnUse" patternTransform="rotate(45)">'
        f'<rect width="6" height="6" fill="{fill}"/>'
        f'<rect width="3" height="6" fill="{stroke}" fill-opacity="0.55"/></pattern>'
        for outcome, (fill, stroke) in COLOURS.items()
    ]
    return f"<defs>{''.join(patterns)}</defs>"


def _lane(lane: Lane, axis: _Axis, y: float, path: SagaPath, *, shaded: bool) -> str:
    kind = "saga" if lane.phase is None else str(lane.phase)
    middle = y + ROW / 2
    label = lane.label if lane.phase is not None else "saga events"
    attempts = sum(1 for attempt in lane.attempts if attempt.number)
    if attempts > 1:
        label += f" ({attempts} attempts)"
    parts = [
        f'<g class="lane {kind}" data-unit="{escape(lane.label)}" data-row="{y}">',
        f'<rect x="0" y="{y}" width="{WIDTH}" height="{ROW}" '
        f'fill="{"#f6f6f6" if shaded else "#ffffff"}"/>',
        f'<text x="{LABELS}" y="{middle + 4}" text-anchor="end">{escape(label)}</text>',
    ]
    for attempt in lane.attempts:
        parts += _attempt(lane, attempt, axis, middle, path.end)
    if lane.last is not None:
        parts.append(_duration_label(lane.last, axis, middle, path.end))
    parts += [_event_mark(mark, axis, middle) for mark in lane.marks]
    parts.append("</g>")
    return "".join(parts)


def _attempt(
    lane: Lane, attempt: Attempt, axis: _Axis, middle: float, end: datetime
) -> list[str]:
    parts = []
    begun, ended = attempt.begun, attempt.ended or end
    if begun is None:
        # Only its end is known (a compensation that gave up, with no time): a mark.
        return [_cross(attempt, axis.x(ended), middle, lane)] if attempt.ended else []
    if attempt.exact and attempt.sent and attempt.sent < begun:
        parts.append(
            f'<line class="wait" x1="{axis.x(attempt.sent)}" y1="{middle}" '
            f'x2="{axis.x(begun)}" y2="{middle}" stroke="#888" stroke-width="1.5" '
            'stroke-dasharray="2 3"/>'
        )
    x1, x2 = axis.x(begun), axis.x(ended)
    width = max(x2 - x1, MIN_BAR)
    stroke = COLOURS[attempt.outcome][1]
    tooltip = f"<title>{escape(_describe(lane, attempt, end))}</title>"
    if attempt.exact:
        exact, paint, height = "exact", stroke, BAR
    else:
        # Only the end is known: a thin hatched band up to it, the end drawn full.
        exact, paint, height = "inexact", f"url(#tl-hatch-{attempt.outcome})", BAR / 2
    parts.append(
        f'<rect class="span {attempt.outcome} {exact}" data-attempt="{attempt.number}" '
        f'x="{x1}" y="{middle - height / 2}" width="{round(width, 1)}" '
        f'height="{height}" fill="{paint}" stroke="{stroke}" stroke-width="1">'
        f"{tooltip}</rect>"
    )
    if attempt.outcome is Outcome.FAILED and attempt.ended:
        parts.append(_cross(attempt, x2, middle, lane))
    elif not attempt.exact and attempt.ended:
        parts.append(
            f'<rect class="end" x="{round(x1 + width - MIN_BAR, 1)}" '
            f'y="{middle - BAR / 2}" width="{MIN_BAR}" height="{BAR}" '
            f'fill="{stroke}">{tooltip}</rect>'
        )
    return parts


def _cross(attempt: Attempt, x: float, middle: float, lane: Lane) -> str:
    """A failed attempt: retried if an event scheduled another, else the failure."""
    kind = "retry" if attempt.event is not None else "failure"
    number = attempt.number or ""
    return (
        f'<g class="mark {kind}" data-attempt="{attempt.number}">'
        f'<path d="M {x - 4} {middle - 4} L {x + 4} {middle + 4} M {x - 4} '
        f'{middle + 4} L {x + 4} {middle - 4}" stroke="{diagrams.FAILED[1]}" '
        f'stroke-width="2"/><text x="{x}" y="{middle - 6}" text-anchor="middle" '
        f'font-size="9" fill="{diagrams.FAILED[1]}">{number}</text>'
        f"<title>{escape(_describe(lane, attempt, attempt.ended))}</title></g>"
    )


def _duration_label(attempt: Attempt, axis: _Axis, middle: float, end) -> str:
    if attempt.begun is None:
        return ""
    ended = attempt.ended or end
    text = duration(ended - attempt.begun)
    if not attempt.exact:
        text = f"≤ {text}"
    if attempt.ended is None:
        text = f"running, {text}"
    x_end = max(axis.x(ended), axis.x(attempt.begun) + MIN_BAR)
    if x_end + 8 + 7 * len(text) > WIDTH:
        x, anchor = axis.x(attempt.begun) - 4, "end"
    else:
        x, anchor = x_end + 4, "start"
    return (
        f'<text class="duration" x="{x}" y="{middle + 4}" text-anchor="{anchor}" '
        f'font-size="11" fill="#333">{escape(text)}</text>'
    )


def _event_mark(mark, axis: _Axis, middle: float) -> str:
    x = axis.x(mark.at)
    shape, colour = EVENT_SHAPES.get(mark.kind, ("circle", diagrams.ACTIVE[1]))
    if shape == "square":
        figure = f'<rect x="{x - 4}" y="{middle - 4}" width="8" height="8"'
    elif shape == "diamond":
        figure = (
            f'<path d="M {x} {middle - 6} L {x + 6} {middle} L {x} {middle + 6} '
            f'L {x - 6} {middle} z"'
        )
    elif shape == "triangle":
        figure = (
            f'<path d="M {x} {middle - 6} L {x + 6} {middle + 5} '
            f'L {x - 6} {middle + 5} z"'
        )
    else:
        figure = f'<circle cx="{x}" cy="{middle}" r="4"'
    what = f"{mark.kind} at {instant(mark.at)} by {mark.actor}: {mark.detail}"
    return (
        f'<g class="mark event" data-kind="{escape(mark.kind)}">{figure} '
        f'fill="{colour}" fill-opacity="0.85" stroke="{colour}"/>'
        f"<title>{escape(what[:600])}</title></g>"
    )


class _Now:
    kind, label = "now", "now"

    def __init__(self, at: datetime) -> None:
        self.at = at


def _turns(turns, axis: _Axis, top: float, bottom: float) -> list[str]:
    """A line down every lane at each turn, its words below them; one turn's words
    under the other's when they are close."""
    parts = []
    for n, turn in enumerate(sorted(turns, key=lambda t: t.at)):
        x = axis.x(turn.at)
        colour = TURN_COLOURS.get(turn.kind, "#666")
        dash = ' stroke-dasharray="5 3"' if turn.kind in ("undo", "now") else ""
        anchor = "start" if x < (LEFT + RIGHT) / 2 else "end"
        offset = 3 if anchor == "start" else -3
        y = bottom + TURN_ROW * (1 + n % 2) - 2
        parts.append(
            f'<g class="turn {turn.kind}"><line x1="{x}" y1="{top}" x2="{x}" '
            f'y2="{y - 10}" stroke="{colour}" stroke-width="1.5"{dash}/>'
            f'<text x="{x + offset}" y="{y}" text-anchor="{anchor}" font-size="11" '
            f'fill="{colour}">{escape(turn.label)} {escape(instant(turn.at)[11:])}'
            f"</text></g>"
        )
    return parts


def _describe(lane: Lane, attempt: Attempt, end: datetime | None) -> str:
    """A bar's tooltip: what ran, when exactly, how long, and why it failed."""
    number = f", attempt {attempt.number}" if attempt.number else ""
    lines = [f"{lane.label}{number}: {attempt.outcome}"]
    if attempt.started:
        lines.append(f"started {instant(attempt.started)}")
    elif attempt.sent:
        lines.append(f"sent {instant(attempt.sent)} (its start is not recorded)")
    if attempt.ended:
        lines.append(f"ended {instant(attempt.ended)}")
    if attempt.begun and (attempt.ended or end):
        bound = "" if attempt.exact else "at most "
        lines.append(bound + duration((attempt.ended or end) - attempt.begun))
    if attempt.task_id:
        lines.append(f"task {attempt.task_id}")
    if attempt.detail:
        lines.append(attempt.detail[:500])
    return "\n".join(lines)
