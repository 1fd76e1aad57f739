"""The timeline drawing on its own: one scale for a saga of a few ms, long idle gaps
cut out of the axis for a saga of minutes, labels escaped; and how times read."""

import xml.etree.ElementTree as ET
from datetime import UTC, datetime, timedelta, timezone

import pytest

from sagas import timeline
from sagas.definitions import Phase
from sagas.history import Attempt, Lane, Outcome, SagaPath, Turn, duration, instant

SVG = "{http://www.w3.org/2000/svg}"
T0 = datetime(2026, 12, 1, 18, 56, 3, 120000, tzinfo=UTC)


def at(ms: float) -> datetime:
    return T0 + timedelta(milliseconds=ms)


def done(sent: float, started: float, ended: float, number: int = 1) -> Attempt:
    return Attempt(at(sent), at(started), at(ended), Outcome.DONE, number)


def path(*lanes: Lane, end: float) -> SagaPath:
    return SagaPath(
        start=T0,
        end=at(end),
        lanes=[Lane("saga", "saga", None), *lanes],
        entries=[],
        turns=[Turn(at(end), "completed", "completed")],
        active=False,
    )


def drawn(saga_path: SagaPath) -> ET.Element:
    return ET.fromstring(timeline.svg(saga_path, title="a saga"))


def bars(drawing: ET.Element) -> list[tuple[float, float]]:
    """(x, width) of every bar, top to bottom."""
    return [
        (float(r.get("x")), float(r.get("width")))
        for r in drawing.iter(f"{SVG}rect")
        if "span" in r.get("class", "").split()
    ]


def cuts(drawing: ET.Element) -> list[float]:
    return [
        float(g.get("data-ms"))
        for g in drawing.iter(f"{SVG}g")
        if g.get("class") == "cut"
    ]


def test_a_saga_of_a_few_ms_is_drawn_to_one_scale():
    steps = [
        Lane(f"s{i}", name, Phase.ACTION, i, [done(2 * i, 2 * i + 0.2, 2 * i + 1.5)])
        for i, name in enumerate(["charge", "reserve", "ship"])
    ]

    drawing = drawn(path(*steps, end=6))

    assert cuts(drawing) == []
    widths = [width for _, width in bars(drawing)]
    assert widths[0] == pytest.approx(widths[1], abs=0.2)  # 1.3 ms each
    ticks = [t.text for t in drawing.iter(f"{SVG}text") if t.get("fill") == "#666"]
    assert ticks[:2] == ["0", "1 ms"]


def test_the_drawing_carries_its_class_and_its_times_as_attributes():
    drawing = drawn(path(Lane("s0", "charge", Phase.ACTION, 0, [done(0, 1, 2)]), end=3))

    assert drawing.get("class") == "saga-timeline"  # what pages and tests select
    assert drawing.get("data-start") and drawing.get("data-end")
    assert drawing.get("class-") is None


def test_a_long_wait_is_cut_out_so_the_ms_long_steps_still_show():
    minutes = 4 * 60_000
    first = Lane("s0", "charge", Phase.ACTION, 0, [done(0, 1, 6)])
    # The second step waited out a backoff of minutes, then took 5 ms.
    second = Lane("s1", "reserve", Phase.ACTION, 1, [done(6, minutes, minutes + 5)])
    third = Lane(
        "s2", "ship", Phase.ACTION, 2, [done(minutes + 5, minutes + 6, minutes + 9)]
    )

    drawing = drawn(path(first, second, third, end=minutes + 9))

    [cut] = cuts(drawing)
    assert cut == pytest.approx(minutes - 6)
    (x0, w0), (x1, w1), (x2, _) = bars(drawing)
    assert w1 > 20 and w0 > 20  # ms-long bars, drawn wide
    assert x0 + w0 < x1 < x1 + w1 <= x2  # still in order, side by side


def test_a_recorded_run_of_minutes_is_never_cut():
    minutes = 5 * 60_000
    slow = Lane("s0", "charge", Phase.ACTION, 0, [done(0, 1, minutes)])

    drawing = drawn(path(slow, end=minutes + 2))

    assert cuts(drawing) == []


def test_labels_and_tooltips_are_escaped():
    failed = Attempt(at(0), None, at(3), Outcome.FAILED, 1, detail="<b>boom</b> & co")
    lane = Lane("s0", "<script>alert(1)</script>", Phase.ACTION, 0, [failed])

    svg = timeline.svg(path(lane, end=4), title="<t>")

    assert "<script>" not in svg and "<b>" not in svg and "<t>" not in svg
    assert "&lt;b&gt;boom&lt;/b&gt; &amp; co" in svg
    ET.fromstring(svg)  # well formed


@pytest.mark.parametrize(
    ("ms", "text"),
    [
        (0.42, "0.4 ms"),
        (7.26, "7.3 ms"),
        (12.4, "12 ms"),
        (999.4, "999 ms"),
        (1520, "1.52 s"),
        (12_345, "12.3 s"),
        (125_000, "2 min 05 s"),
        (3_725_000, "1 h 02 min"),
    ],
)
def test_durations_read_in_ms_or_s_as_fits(ms, text):
    assert duration(timedelta(milliseconds=ms)) == text


def test_instants_read_in_utc_to_the_millisecond():
    tokyo = T0.astimezone(timezone(timedelta(hours=9)))
    assert instant(tokyo) == "2026-12-01 18:56:03.120"
    assert instant(None) == "-"
