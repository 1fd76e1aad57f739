"""`manage.py check` refuses a saga that cannot run, naming the saga and the step."""

import pytest
from celery import current_app
from django.core.checks import run_checks
from django.core.management import call_command
from django.core.management.base import SystemCheckError

from sagas import registry
from sagas.choreography import handlers, reacts_to
from sagas.definitions import RetryPolicy, SagaDefinition, Step
from sagas.definitions.choreography import Choreography, Reaction
from sagas.definitions.tcc import Participant, TryConfirmCancel


def act(context):
    return None


def undo(context):
    return None


@pytest.fixture
def registered():
    """Register definitions for one test, and forget them after it."""
    added = []

    def register(definition):
        added.append(registry.register(definition))
        return definition

    yield register
    for definition in added:
        registry.unregister(definition)


def check_fails(*expected: str) -> str:
    with pytest.raises(SystemCheckError) as refused:
        call_command("check")
    message = str(refused.value)
    for text in expected:
        assert text in message
    return message


def test_the_shipped_definitions_pass():
    call_command("check")  # raises SystemCheckError if any does not


@pytest.mark.parametrize(
    ("steps", "expected"),
    [
        (
            (Step("charge", act, compensate=undo), Step("charge", act)),
            ["two steps have this name", "step 'charge'"],
        ),
        (
            (Step("charge", act), Step("ship", act, pivot=True)),
            ["a step before the pivot needs a compensation", "step 'charge'"],
        ),
        (
            (
                Step("ship", act, pivot=True),
                Step("confirm", act, retry=RetryPolicy()),
            ),
            ["needs a retry policy without a limit", "step 'confirm'"],
        ),
        (
            (Step("slow", act, timeout=-1),),
            ["positive number of seconds", "step 'slow'"],
        ),
        (
            (Step("odd", act, timeout=float("nan")),),
            ["positive number of seconds", "step 'odd'"],
        ),
    ],
)
def test_a_broken_orchestrated_saga_fails_the_check(registered, steps, expected):
    registered(SagaDefinition(name="test_broken", steps=steps))
    check_fails("sagas.E003", "saga 'test_broken' (orchestration)", *expected)


def test_a_tcc_participant_without_all_three_phases_fails_the_check(registered):
    registered(
        TryConfirmCancel(
            name="test_broken",
            participants=(
                Participant("payment", try_=act, confirm=act, cancel=undo),
                Participant("stock", try_=act, confirm=None, cancel=None),
            ),
        )
    )
    check_fails(
        "saga 'test_broken' (tcc)",
        "step 'stock'",
        "needs all three phases; confirm, cancel missing",
    )


@pytest.mark.parametrize(
    ("definition", "expected"),
    [
        (
            TryConfirmCancel(name="test_broken", participants=()),
            ["it needs at least one participant"],
        ),
        (
            TryConfirmCancel(
                name="test_broken",
                participants=(
                    Participant("stock", try_=act, confirm=act, cancel=undo, timeout=0),
                ),
            ),
            ["step 'stock'", "positive number of seconds"],
        ),
        (
            TryConfirmCancel(
                name="test_broken",
                participants=(
                    Participant("stock", try_=act, confirm=act, cancel=undo),
                ),
                then=(Step("mail", act, timeout=-5),),
            ),
            ["step 'mail'", "positive number of seconds"],
        ),
    ],
)
def test_a_broken_tcc_saga_fails_the_check(registered, definition, expected):
    registered(definition)
    check_fails("sagas.E003", "saga 'test_broken' (tcc)", *expected)


FLOW = Choreography(
    name="test_flow",
    steps=(
        Reaction(
            "hold",
            by="sagas",
            on="FlowStarted",
            succeeds="Held",
            fails="HoldFailed",
            undone="Released",
        ),
        Reaction(
            "finish",
            by="sagas",
            on="Held",
            succeeds="Finished",
            pivot=True,
            fails="FinishFailed",
        ),
    ),
    ends_undone_with="FlowUndone",
    ended_by="sagas",
)


def test_a_choreography_event_nobody_reacts_to_fails_the_check(registered, monkeypatch):
    monkeypatch.setattr(handlers, "_handlers", list(handlers._handlers))
    registered(FLOW)

    message = check_fails("sagas.E004", "saga 'test_flow' (choreography)")

    assert "step 'hold': nothing in sagas reacts to FlowStarted (act)" in message
    assert "step 'finish': nothing in sagas reacts to Held (act)" in message
    assert "nothing in sagas reacts to FinishFailed (undo)" in message


def test_a_reaction_to_an_event_nobody_publishes_fails_the_check(
    registered, monkeypatch
):
    monkeypatch.setattr(handlers, "_handlers", list(handlers._handlers))
    registered(FLOW)

    @reacts_to("NoSuchEvent", saga="test_flow", step="hold")
    def react_to_nothing(context):
        return None

    message = check_fails("sagas.E005")

    assert (
        "step 'hold': sagas reacts to NoSuchEvent (act), an event the saga never "
        "publishes" in message
    )


def test_a_broken_choreography_names_its_step(registered):
    registered(
        Choreography(
            name="test_broken",
            steps=(
                Reaction("hold", by="sagas", on="Start", succeeds="Held"),
                Reaction("ship", by="sagas", on="Other", succeeds="Shipped"),
            ),
            ends_undone_with="Undone",
            ended_by="sagas",
        )
    )
    check_fails(
        "saga 'test_broken' (choreography)",
        "step 'hold'",
        "needs a failure and an undone event",
    )


def test_a_choreography_step_after_the_pivot_cannot_fail(registered):
    registered(
        Choreography(
            name="test_broken",
            steps=(
                *FLOW.steps,
                Reaction(
                    "mail", by="sagas", on="Finished", succeeds="Mailed", fails="X"
                ),
            ),
            ends_undone_with="FlowUndone",
            ended_by="sagas",
        )
    )
    check_fails("step 'mail'", "a step after the pivot cannot fail")


def test_a_reaction_for_a_saga_that_does_not_run_fails_the_check(monkeypatch):
    monkeypatch.setattr(handlers, "_handlers", list(handlers._handlers))

    @reacts_to("OrderPlaced", saga="purchse", step="charge_payment")
    def charge_payment(context):
        return None

    check_fails("sagas.E007", "saga 'purchse', which is no registered choreography")


def test_two_reactions_of_one_name_in_one_app_fail_the_check(registered, monkeypatch):
    monkeypatch.setattr(handlers, "_handlers", list(handlers._handlers))
    registered(FLOW)
    for topic in ("FlowStarted", "Held"):

        @reacts_to(topic, saga="test_flow", step="hold")
        def hold(context):
            return None

    check_fails("sagas.E007", "another reaction of sagas has the name 'sagas.hold'")


def test_an_unknown_default_mode_fails_the_check(settings):
    settings.SAGA_DEFAULT_MODE = "saga-ish"

    with pytest.raises(SystemCheckError, match="SAGA_DEFAULT_MODE is 'saga-ish'"):
        call_command("check")


def heartbeat_warnings() -> list[str]:
    return [str(m) for m in run_checks() if m.id == "sagas.W001"]


@pytest.mark.parametrize(
    ("broker_url", "heartbeat", "warned"),
    [
        ("amqp://guest:guest@127.0.0.1:5672//", 30, True),  # 40 s limit + 10.25 s
        ("amqp://guest:guest@127.0.0.1:5672//", 37, True),
        ("amqp://guest:guest@127.0.0.1:5672//", 38, False),
        ("amqp://guest:guest@127.0.0.1:5672//", 60, False),  # the default
        ("amqp://guest:guest@127.0.0.1:5672//", 0, False),  # no heartbeats at all
        ("redis://127.0.0.1:6379/0", 30, False),  # Redis has none
    ],
)
def test_a_heartbeat_shorter_than_the_steps_is_warned_of_on_rabbitmq(
    settings, broker_url, heartbeat, warned
):
    settings.CELERY_BROKER_URL = broker_url
    settings.CELERY_BROKER_HEARTBEAT = heartbeat

    found = heartbeat_warnings()

    assert bool(found) == warned, found
    if warned:
        assert "hard time limit (40s) and its report (10.25s)" in found[0]
        assert f"BROKER_HEARTBEAT ({heartbeat}s)" in found[0]
        assert "at least 38" in found[0]


@pytest.fixture
def slow_task():
    """A task of a longer limit than the steps', as a choreographed reaction with a
    timeout of its own has (its task is not a saga unit)."""
    task = current_app.task(name="test.slow_reaction", time_limit=100)(act)
    yield task
    current_app.tasks.pop(task.name)


def test_every_tasks_limit_counts_for_the_heartbeat(settings, slow_task):
    settings.CELERY_BROKER_URL = "amqp://guest:guest@127.0.0.1:5672//"
    settings.CELERY_BROKER_HEARTBEAT = 60  # the default, enough for the steps' 40 s

    [found] = heartbeat_warnings()

    assert "hard time limit (100s)" in found
    assert "at least 83" in found  # (100 + 10.25) * 3 / 4 = 82.7
