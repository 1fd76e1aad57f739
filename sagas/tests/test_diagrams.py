"""Definitions drawn: the graph follows the definition, and the README shows it."""

import io
import re
from pathlib import Path
from types import SimpleNamespace

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from sagas import diagrams, registry
from sagas.definitions import SagaDefinition, Step
from sagas.definitions.choreography import Choreography, Reaction
from sagas.definitions.tcc import Participant, TryConfirmCancel

README = Path(__file__).resolve().parents[2] / "README.md"


def act(context):
    return None


def undo(context):
    return None


def end(context, reason):
    return None


def test_an_orchestration_fails_back_to_the_undo_of_the_step_before():
    definition = SagaDefinition(
        name="trip",
        steps=(
            Step("book_hotel", act, compensate=undo),
            Step("book_flight", act, pivot=True),
            Step("send_mail", act),
        ),
        on_compensated=end,
    )

    assert diagrams.mermaid(definition).splitlines() == [
        "flowchart TD",
        '    start(["start"])',
        '    undone(["end"])',
        '    done(["completed"])',
        '    s0["book_hotel"]',
        '    s1["book_flight"]',
        '    s2["send_mail"]',
        '    u0["undo"]',
        "    start --> s0",
        "    s0 --> s1",
        "    s1 --> s2",
        "    s2 --> done",
        "    u0 -.-> undone",
        '    s0 -.->|"fails"| undone',
        '    s1 -.->|"fails"| u0',  # the pivot can fail; send_mail is retried
    ]


def test_a_tcc_try_failing_cancels_every_participant_newest_first():
    definition = TryConfirmCancel(
        name="trip",
        participants=(
            Participant("hotel", try_=act, confirm=act, cancel=undo),
            Participant("flight", try_=act, confirm=act, cancel=undo),
        ),
    )
    lines = diagrams.mermaid(definition).splitlines()

    assert "    s0 -.-> u1" in lines and '    s1 -.->|"any try fails"| u1' in lines
    assert "    u1 -.-> u0" in lines and "    u0 -.-> undone" in lines
    assert "    s1 --> s2" in lines  # the last try, then the first confirm
    assert '    s3["confirm_flight"]' in lines


def test_a_choreography_names_each_arrow_by_its_event():
    definition = Choreography(
        name="trip",
        steps=(
            Reaction(
                "book_hotel",
                by="hotels",
                on="TripPlanned",
                succeeds="HotelBooked",
                fails="HotelFull",
                undone="HotelFreed",
            ),
            Reaction(
                "book_flight",
                by="flights",
                on="HotelBooked",
                succeeds="FlightBooked",
                fails="FlightFull",
                pivot=True,
            ),
        ),
        ends_undone_with="TripCancelled",
        ended_by="trips",
    )
    lines = diagrams.mermaid(definition).splitlines()

    assert '    start -->|"TripPlanned"| s0' in lines
    assert '    s0 -->|"HotelBooked"| s1' in lines
    assert '    s1 -->|"FlightBooked"| done' in lines
    assert '    s1 -.->|"FlightFull"| u0' in lines
    assert '    u0 -.->|"HotelFreed"| undone' in lines
    assert '    s0 -.->|"HotelFull"| undone' in lines
    assert '    undone(["trips: TripCancelled"])' in lines


def test_the_drawing_colours_each_box_by_the_sagas_records():
    definition = registry.definition("purchase", "orchestration")
    saga = SimpleNamespace(status="COMPENSATED")
    steps = [
        SimpleNamespace(index=0, status="COMPENSATED", compensated_at="then"),
        SimpleNamespace(index=1, status="FAILED", compensated_at=None),
    ]

    drawing = diagrams.svg(definition, saga=saga, steps=steps)

    def fill_of(label):
        box = re.search(
            rf'<rect [^>]*fill="(#\w+)"[^>]*/><text [^>]*>{label}<', drawing
        )
        return box.group(1)

    assert fill_of("reserve_stock") == diagrams.FAILED[0]
    assert fill_of("charge_payment") == fill_of("refund_payment") == diagrams.UNDONE[0]
    assert fill_of("cancel_order") == diagrams.UNDONE[0]
    assert fill_of("create_shipment") == fill_of("completed") == diagrams.IDLE[0]


def test_labels_are_escaped_in_the_drawing():
    definition = SagaDefinition(name="x", steps=(Step("a", act),))
    graph = diagrams.graph(definition)
    graph.boxes[0] = diagrams.Box("start", "<script>", 0, 0, diagrams.Part.START)

    assert "<script>" not in diagrams._svg_box(graph.boxes[0], diagrams.IDLE)


def test_the_readme_shows_the_diagrams_of_the_definitions_that_run():
    out = io.StringIO()
    call_command("saga_diagrams", "purchase", stdout=out)

    assert out.getvalue().strip() in README.read_text(), (
        "README.md's diagrams are stale: paste `manage.py saga_diagrams purchase`"
    )


def test_a_saga_that_does_not_exist_is_refused_by_name():
    with pytest.raises(CommandError, match="no saga named purchse"):
        call_command("saga_diagrams", "purchse", stdout=io.StringIO())
