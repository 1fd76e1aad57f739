"""A saga's page in the admin: times to the millisecond, each step's duration, its
timeline (retries and the way back marked), its full history, the links out."""

import re
import xml.etree.ElementTree as ET
from datetime import datetime

import pytest
from django.urls import reverse

from orders.models import Order
from sagas import history, lifecycle, registry
from sagas.definitions import Mode, Phase
from sagas.exceptions import TransientError
from sagas.models import Saga, SagaStatus, SagaStep, StepStatus
from sagas.tests.factories import (
    REFUSAL,
    purchase_place,
    saga_made,
    step_fail,
    step_run,
)

pytestmark = pytest.mark.django_db

SVG = "{http://www.w3.org/2000/svg}"
MILLISECONDS = r"\d{4}-\d\d-\d\d</span> <span class=\"clock\">\d\d:\d\d:\d\d\.\d{3}"
MODES = [pytest.param(mode, id=mode) for mode in Mode.values]


def _page(client, saga: Saga) -> str:
    response = client.get(reverse("admin:sagas_saga_change", args=[saga.pk]))
    assert response.status_code == 200
    return response.content.decode()


def _section(html: str, element_id: str) -> str:
    start = html.index(f'id="{element_id}"')
    return html[start : html.index("</fieldset>", start)]


def _timeline(html: str) -> ET.Element:
    start = html.index("<svg", html.index('id="saga-timeline"'))
    return ET.fromstring(html[start : html.index("</svg>", start) + len("</svg>")])


def _classes(element: ET.Element) -> set[str]:
    return set(element.get("class", "").split())


def _lanes(drawing: ET.Element) -> list[tuple[str, str]]:
    """(kind, unit) of every lane, top to bottom."""
    return [
        (sorted(_classes(g) - {"lane"})[0], g.get("data-unit"))
        for g in drawing.iter(f"{SVG}g")
        if "lane" in _classes(g)
    ]


def _lane(drawing: ET.Element, unit: str) -> ET.Element:
    return next(
        g
        for g in drawing.iter(f"{SVG}g")
        if "lane" in _classes(g) and g.get("data-unit") == unit
    )


def _found(element: ET.Element, tag: str, *classes: str) -> list[ET.Element]:
    return [e for e in element.iter(f"{SVG}{tag}") if set(classes) <= _classes(e)]


def _turns(drawing: ET.Element) -> list[str]:
    return [sorted(_classes(g) - {"turn"})[0] for g in _found(drawing, "g", "turn")]


HISTORY_ROW = re.compile(
    r'<tr class="saga-entry[^"]*" data-happening="([^"]+)" data-unit="([^"]+)"'
    r'(?: data-kind="([^"]+)")?>\s*<td class="when">(?:&ge; )?'
    r'<time datetime="([^"]+)">.*?<td class="actor">([^<]*)</td>',
    re.S,
)


def _history(html: str) -> list[dict]:
    rows = []
    for happening, unit, kind, at, actor in HISTORY_ROW.findall(
        _section(html, "saga-history")
    ):
        rows.append(
            {
                "what": happening,
                "unit": unit,
                "kind": kind,
                "at": datetime.fromisoformat(at),
                "actor": actor,
            }
        )
    return rows


def _step_row(html: str, index: int) -> str:
    start = html.index(f'id="saga-step-{index}"')
    return html[start : html.index("</tbody>", start)]


def _took(row: str) -> str:
    return re.search(r'<td class="took">([^<]*)</td>', row).group(1)


def _undo_units(saga: Saga) -> list[str]:
    """The compensations' names, in the order they ran."""
    definition = registry.definition_of(saga)
    steps = saga.steps.exclude(compensated_at=None).order_by("compensated_at")
    if saga.mode == Mode.CHOREOGRAPHY:
        return [f"{definition.steps[s.index].by}: undo {s.name}" for s in steps]
    return [definition.compensation_name(s.index) for s in steps]


# OUTCOMES, IN EVERY MODE -------------------------------------------------------------


@pytest.mark.parametrize("mode", MODES)
def test_a_completed_saga_shows_each_step_to_the_millisecond_with_its_duration(
    admin_client, mode
):
    saga = saga_made("completed", mode=mode)

    html = _page(admin_client, saga)

    assert "All times are UTC, to the millisecond." in html
    timing = html[html.index("Timing (UTC)") : html.index('id="saga-timeline"')]
    for moment in (saga.created_at, saga.finished_at):
        assert f'<time datetime="{moment.isoformat()}">' in timing
        assert history.instant(moment).split()[1] in timing  # to the ms
    drawing = _timeline(html)
    for step in saga.steps.order_by("index"):
        row = _step_row(html, step.index)
        assert len(re.findall(MILLISECONDS, row)) == 2  # started, finished
        assert history.instant(step.started_at).split()[1] in row
        assert _took(row) == history.duration(step.finished_at - step.started_at)
        [bar] = _found(_lane(drawing, step.name), "rect", "span")
        assert _classes(bar) == {"span", "done", "exact"}
    assert [unit for kind, unit in _lanes(drawing)] == [
        "saga",
        *registry.definition_of(saga).step_names,
    ]
    assert _turns(drawing) == ["completed"]


@pytest.mark.parametrize("mode", MODES)
def test_a_compensated_saga_shows_its_way_back_newest_step_first(admin_client, mode):
    saga = saga_made("compensated", mode=mode)
    undone = _undo_units(saga)

    html = _page(admin_client, saga)

    drawing = _timeline(html)
    lanes = _lanes(drawing)
    assert [unit for kind, unit in lanes if kind == "compensation"] == undone
    assert len(undone) >= 2  # orchestration and choreography 2, TCC 3
    assert lanes[-1][0] == "end"
    for unit in undone:
        [bar] = _found(_lane(drawing, unit), "rect", "span")
        assert {"undone"} <= _classes(bar)  # the compensations' own colour
    refused = saga.steps.get(index=2)
    assert refused.status == StepStatus.FAILED
    assert _found(_lane(drawing, refused.name), "g", "mark", "failure")
    assert _turns(drawing) == ["undo", "compensated"]
    assert REFUSAL in _step_row(html, 2)
    compensated = [r for r in _history(html) if r["what"] == "compensated"]
    assert [r["unit"] for r in compensated] == undone
    for index in (0, 1):  # their compensations' durations
        took = re.search(
            r'<span class="undo-took">([^<]*)</span>', _step_row(html, index)
        )
        assert took.group(1).startswith("≤ ")


@pytest.mark.parametrize("mode", MODES)
def test_a_retried_saga_marks_its_retries(admin_client, mode):
    saga = saga_made("retried", mode=mode)
    first = saga.steps.get(index=0)

    html = _page(admin_client, saga)

    lane = _lane(_timeline(html), first.name)
    entries = [r for r in _history(html) if r["unit"] == first.name]
    if mode == Mode.CHOREOGRAPHY:
        # A reaction's own retries leave no record; the sweep's resend does.
        [resent] = _found(lane, "g", "mark", "event")
        assert resent.get("data-kind") == "RECOVERED"
        assert [r["what"] for r in entries] == [
            "started",
            "lost, sent again",
            "succeeded",
        ]
        return
    assert first.attempts == 2
    assert f"{first.name} (2 attempts)" in ET.tostring(lane, encoding="unicode")
    [retry] = _found(lane, "g", "mark", "retry")
    assert retry.get("data-attempt") == "1"
    assert [b.get("data-attempt") for b in _found(lane, "rect", "span")] == ["1", "2"]
    assert [r["what"] for r in entries] == [
        "started",
        "failed, retry scheduled",
        "started",
        "succeeded",
    ]
    assert '<td class="number">2</td>' in _step_row(html, 0)


@pytest.mark.parametrize("mode", MODES)
def test_a_failed_saga_shows_where_it_gave_up(admin_client, mode):
    saga = saga_made("failed", mode=mode)
    assert saga.status == SagaStatus.FAILED

    html = _page(admin_client, saga)

    drawing = _timeline(html)
    assert _turns(drawing)[-1] == "failed"
    entries = _history(html)
    assert entries[-1]["what"] == "saga FAILED"
    assert "Retry this saga?" in html  # the operator's way out
    if mode == Mode.ORCHESTRATION:  # its compensation gave up after 3 retries
        lane = _lane(drawing, "refund_payment")
        assert len(_found(lane, "g", "mark", "retry")) == 3
        assert len(_found(lane, "g", "mark", "failure")) == 1
        assert "compensation error:" in _step_row(html, 0)
    elif mode == Mode.TCC:  # its first confirm was refused, past the pivot
        confirm = saga.steps.get(status=StepStatus.FAILED)
        assert _found(_lane(drawing, confirm.name), "g", "mark", "failure")
        assert "the capture was refused" in _step_row(html, confirm.index)
    else:  # the work after its pivot was lost, again and again
        assert "still lost after" in _section(html, "saga-history")


@pytest.mark.parametrize("mode", MODES)
def test_every_step_that_ran_has_a_duration(admin_client, mode):
    sagas = [saga_made(outcome, mode=mode) for outcome in ("compensated", "failed")]

    for saga in sagas:
        html = _page(admin_client, saga)
        for step in saga.steps.all():
            took = _took(_step_row(html, step.index))
            if step.finished_at is None:
                assert took == "-", step
            else:  # "≤": a failed attempt whose start is not recorded
                assert re.fullmatch(r"(≤ )?[0-9.]+ (ms|s)", took), (step, took)


# HISTORY -----------------------------------------------------------------------------


def test_the_history_tells_the_whole_path_in_order(admin_client):
    saga = purchase_place()
    step_run(saga, 0)
    step_fail(saga, 1, TransientError("stock service down"))
    step_run(saga, 1)
    lifecycle.saga_cancel(saga_id=saga.pk, actor="ops-ann", reason="fraud check")
    for index in (1, 0):
        step_run(saga, index, Phase.COMPENSATION)
    step_run(saga, -1, Phase.END)

    entries = _history(_page(admin_client, saga))

    assert [(r["what"], r["unit"]) for r in entries] == [
        ("created", "saga"),
        ("started", "charge_payment"),
        ("succeeded", "charge_payment"),
        ("started", "reserve_stock"),
        ("failed, retry scheduled", "reserve_stock"),
        ("started", "reserve_stock"),
        ("succeeded", "reserve_stock"),
        ("cancelled by an operator", "saga"),
        ("undoing began", "saga"),
        ("started", "release_stock"),
        ("compensated", "release_stock"),
        ("started", "refund_payment"),
        ("compensated", "refund_payment"),
        ("started", "cancel_order"),
        ("succeeded", "cancel_order"),
        ("ended", "saga"),
    ]
    times = [r["at"] for r in entries]
    assert times == sorted(times)
    assert entries[7]["actor"] == "ops-ann"


def test_an_operators_retry_is_in_the_history_and_the_timeline(admin_client):
    saga = saga_made("failed")
    lifecycle.saga_retry(saga_id=saga.pk, actor="ops-bob")
    step_run(saga, 0, Phase.COMPENSATION)
    step_run(saga, -1, Phase.END)

    html = _page(admin_client, saga)

    entries = _history(html)
    retried = [r for r in entries if r["kind"] == "OPERATOR_RETRY"]
    assert [r["actor"] for r in retried] == ["ops-bob"]
    assert entries.index(retried[0]) < [r["what"] for r in entries].index("compensated")
    marks = _found(_lane(_timeline(html), "saga"), "g", "mark", "event")
    assert "OPERATOR_RETRY" in [m.get("data-kind") for m in marks]


def test_a_start_that_was_not_recorded_is_shown_as_such(admin_client):
    saga = saga_made("compensated")  # its third step failed: no start recorded

    html = _page(admin_client, saga)

    row = re.search(
        r'<tr class="saga-entry inexact" data-happening="started" '
        r'data-unit="create_shipment">\s*<td class="when">&ge; ',
        html,
    )
    assert row is not None
    assert "(start not recorded: when its work was sent)" in html
    [bar] = _found(_lane(_timeline(html), "create_shipment"), "rect", "span")
    assert _classes(bar) == {"span", "failed", "inexact"}


# LINKS -------------------------------------------------------------------------------


def test_each_step_links_to_its_tasks_in_flower(admin_client, settings):
    settings.FLOWER_URL = "http://flower.example:5555/"
    saga = saga_made("compensated")

    html = _section(_page(admin_client, saga), "saga-steps")

    tasks = SagaStep.objects.filter(saga=saga).values_list(
        "task_id", "compensation_task_id"
    )
    ids = [task_id for pair in tasks for task_id in pair if task_id]
    assert len(ids) == 5  # three steps ran, two were compensated
    for task_id in ids:
        assert f'href="http://flower.example:5555/task/{task_id}"' in html


def test_the_saga_links_to_its_order(admin_client):
    saga = purchase_place()
    order = Order.objects.get(saga_id=saga.pk)

    html = _page(admin_client, saga)

    url = reverse("admin:orders_order_change", args=[order.pk])
    assert f'<a href="{url}">order {order.pk}</a>' in html


def test_a_long_error_is_cut_short_with_the_whole_of_it_a_click_away(admin_client):
    saga = saga_made("compensated")
    long_error = "ShipmentRefused: " + "the carrier said no; " * 200
    SagaStep.objects.filter(saga=saga, index=2).update(error=long_error)

    row = _step_row(_page(admin_client, saga), 2)

    summary = re.search(r"<summary>([^<]*)</summary>", row).group(1)
    assert len(summary) <= 120
    assert f'<div class="full">{long_error}</div>' in row


def test_labels_and_errors_are_escaped(admin_client):
    saga = saga_made("compensated")
    SagaStep.objects.filter(saga=saga, index=2).update(error="<script>x()</script>")

    html = _page(admin_client, saga)

    assert "<script>x()" not in html
    assert "&lt;script&gt;x()" in html


def test_the_page_reads_the_saga_once_however_long_its_history(
    admin_client, django_assert_max_num_queries
):
    short = saga_made("completed")
    long = saga_made("failed")  # retries, a failure, compensations
    pages = []
    for saga in (short, long):
        with django_assert_max_num_queries(8) as captured:
            _page(admin_client, saga)
        pages.append(len(captured))

    assert pages[0] == pages[1]


def test_a_saga_whose_definition_is_gone_still_shows_its_path(admin_client):
    saga = saga_made("compensated")
    Saga.objects.filter(pk=saga.pk).update(name="retired")

    html = _page(admin_client, saga)

    lanes = _lanes(_timeline(html))
    assert ("compensation", "undo reserve_stock") in lanes
    assert "no saga" in html.lower() or "retired" in html
