"""Saga definitions: what a definition may say, retry policies, generated task names."""

import pytest

from sagas import faults, registry
from sagas.definitions import FOREVER, Mode, Phase, RetryPolicy, SagaDefinition, Step
from sagas.exceptions import DefinitionError


def act(context):
    return None


def undo(context):
    return None


def undo_other(context):
    return None


@pytest.mark.parametrize(
    ("steps", "problem", "step"),
    [
        ((), "at least one step", None),
        ((Step("a", act, compensate=undo), Step("a", act)), "two steps", "a"),
        ((Step("Bad Name", act),), "lower_snake_case", "Bad Name"),
        (
            (Step("a", act, pivot=True), Step("b", act, pivot=True)),
            "at most one",
            "b",
        ),
        ((Step("a", act, compensate=undo, pivot=True),), "cannot be compensated", "a"),
        ((Step("a", act), Step("b", act, pivot=True)), "needs a compensation", "a"),
        (
            (Step("a", act, pivot=True), Step("b", act, compensate=undo)),
            "cannot be compensated",
            "b",
        ),
        (
            (Step("a", act, pivot=True), Step("b", act, retry=RetryPolicy())),
            "retry policy without a limit",
            "b",
        ),
        ((Step("a", act, timeout=0),), "positive number of seconds", "a"),
        (
            (
                Step("a", act, compensate=undo),
                Step("b", act, compensate=undo),
                Step("c", act, pivot=True),
            ),
            "collide",
            None,
        ),
    ],
)
def test_a_definition_that_cannot_run_is_refused_naming_saga_and_step(
    steps, problem, step
):
    with pytest.raises(DefinitionError, match=problem) as refused:
        SagaDefinition(name="broken", steps=steps).validate()
    assert "saga 'broken' (orchestration)" in str(refused.value)
    if step is not None:
        assert f"step {step!r}" in str(refused.value)


def test_the_default_retry_policy_backs_off_1_2_4_seconds_then_gives_up():
    policy = RetryPolicy()
    assert [policy.allows(n) for n in (1, 2, 3, 4)] == [True, True, True, False]
    for attempts, base in [(1, 1.0), (2, 2.0), (3, 4.0)]:
        assert base * 0.9 <= policy.countdown(attempts) <= base * 1.1


def test_backoff_is_capped_and_forever_never_gives_up():
    assert FOREVER.allows(10_000)
    assert FOREVER.countdown(40) <= FOREVER.max_backoff * 1.1
    assert FOREVER.countdown(5000) <= FOREVER.max_backoff * 1.1  # days of retries


def test_steps_after_the_pivot_are_retried_forever_and_the_rest_are_not():
    purchase = registry.definition("purchase")
    assert purchase.pivot_index == 2
    assert purchase.retry_policy(3, Phase.ACTION).max_retries is None
    assert purchase.retry_policy(1, Phase.ACTION).max_retries == 3
    assert purchase.retry_policy(2, Phase.ACTION).max_retries == 3  # the pivot itself


def test_the_purchase_saga_runs_as_readable_tasks():
    purchase = registry.definition("purchase")
    names = {purchase.task_name(i, p) for i, p in purchase.tasks()}
    assert names == {
        "purchase.reserve_stock",
        "purchase.charge_payment",
        "purchase.create_shipment",
        "purchase.confirm_order",
        "purchase.release_stock",
        "purchase.refund_payment",
        "purchase.cancel_order",
    }
    for name in names:
        unit = registry.unit(name)
        assert unit.task.name == name
        assert unit.task.queue == "sagas"


def test_registering_a_second_saga_under_a_taken_name_and_mode_is_refused():
    clash = SagaDefinition(name="purchase", steps=(Step("a", act),))
    with pytest.raises(DefinitionError, match="already registered"):
        registry.register(clash)


def test_the_purchase_is_defined_in_all_three_modes():
    assert {d.mode for d in registry.definitions() if d.name == "purchase"} == set(Mode)


@pytest.mark.parametrize(
    ("spec", "parsed"),
    [
        ("", []),
        ("payments.charge:transient:0.2", ["payments.charge:transient:0.2"]),
        (
            "payments.charge:transient:0.2, inventory.reserve:delay=3s:0.05",
            ["payments.charge:transient:0.2", "inventory.reserve:delay=3s:0.05"],
        ),
        ("orders.ship:business:1", ["orders.ship:business:1"]),
        ("inventory.reserve:hang=30s:1", ["inventory.reserve:hang=30s:1"]),
    ],
)
def test_fault_settings_parse(spec, parsed):
    assert [str(f) for f in faults.parse(spec)] == parsed


@pytest.mark.parametrize(
    "spec",
    [
        "payments",
        "payments.charge:flaky:0.2",
        "payments.charge:transient:2",
        "x.y:delay=3:1",
        "x.y:hang:1",
    ],
)
def test_a_bad_fault_setting_is_refused(spec):
    with pytest.raises(ValueError, match="bad SAGA_FAULTS entry"):
        faults.parse(spec)


def test_the_tcc_purchase_runs_as_readable_tasks():
    tcc = registry.definition("purchase", "tcc")
    names = {tcc.task_name(i, p) for i, p in tcc.tasks()}
    assert names == {
        *(
            f"purchase.tcc.{op}_{p}"
            for op in ("try", "confirm", "cancel")
            for p in ("payment", "stock", "shipment")
        ),
        "purchase.tcc.confirm_order",
        "purchase.tcc.cancel_order",
    }
