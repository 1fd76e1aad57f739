"""The load test's options: what they choose, and the one-line refusals of bad ones."""

from collections import Counter

import pytest

from sagas.definitions import Mode
from shop.loadtest.plan import (
    MIXED,
    MODES,
    SCENARIOS,
    OptionsError,
    parse,
    scenario_sequence,
)


def test_the_defaults_are_the_three_stages_every_mode_and_the_usual_mix():
    options = parse([])

    assert options.stages == {"light": 50, "medium": 200, "heavy": 1000}
    assert options.modes == MODES == tuple(Mode.values)
    assert options.mix == {
        "normal": 70,
        "balance": 10,
        "stock": 10,
        "inactive": 5,
        "unserved": 5,
    }
    assert (options.clients, options.customers, options.url) == (8, 50, None)
    assert not options.mixed


def test_stages_and_modes_are_chosen_and_run_stage_by_stage():
    options = parse(["--stages", "light=20,heavy=30", "--modes", "tcc,orchestration"])

    assert options.stages == {"light": 20, "heavy": 30}
    assert options.runs() == [
        ("light", "tcc"),
        ("light", "orchestration"),
        ("heavy", "tcc"),
        ("heavy", "orchestration"),
    ]
    assert parse(["--stages", "x=5", "--mixed"]).runs() == [("x", MIXED)]


@pytest.mark.parametrize(
    ("argv", "says"),
    [
        (["--stages", "light"], "'light' is not like name=number"),
        (["--stages", "light=-1"], "whole number from 1"),
        (["--stages", "light=0"], "whole number from 1"),
        (["--stages", "light=lots"], "whole number from 1"),
        (["--stages", "a=1,a=2"], "'a' is given twice"),
        (["--modes", "saga"], "unknown mode 'saga'"),
        (["--mix", "normal=1,bogus=2"], "unknown scenario 'bogus'"),
        (["--mix", "normal=-1"], "whole number from 0"),
        (["--mix", "normal=0"], "at least one scenario"),
        (["--clients", "-3"], "--clients: '-3' is not a whole number"),
        (["--customers", "0"], "--customers: '0'"),
        (["--timeout", "0"], "--timeout"),
        (["--url", "localhost:8000"], "--url"),
        (["--no-such-option"], "unrecognized arguments"),
    ],
)
def test_a_bad_option_is_refused_in_one_line(argv, says):
    with pytest.raises(OptionsError) as refused:
        parse(argv)

    assert says in str(refused.value)
    assert "\n" not in str(refused.value)


def test_a_report_folder_that_holds_something_is_refused(tmp_path):
    (tmp_path / "old.csv").write_text("x")

    with pytest.raises(OptionsError, match="not an empty folder"):
        parse(["--out", str(tmp_path)])
    assert parse(["--out", str(tmp_path / "new")]).out == tmp_path / "new"


@pytest.mark.parametrize(
    ("count", "expected"),
    [
        (1000, (700, 100, 100, 50, 50)),
        (50, (35, 5, 5, 3, 2)),  # 2.5 each for the last two: the rest goes by name
        (7, (5, 1, 1, 0, 0)),
    ],
)
def test_a_stage_takes_each_scenario_in_its_share_of_the_mix(count, expected):
    mix = parse([]).mix

    sequence = scenario_sequence("s", count, mix, seed=1)

    assert len(sequence) == count
    assert tuple(Counter(sequence)[name] for name in SCENARIOS) == expected


def test_the_scenarios_are_shuffled_alike_for_every_mode_of_a_stage():
    mix = dict.fromkeys(SCENARIOS, 1)

    light = scenario_sequence("light", 50, mix, seed=1)

    assert light == scenario_sequence("light", 50, mix, seed=1)
    assert light != sorted(light)  # interleaved, not one scenario after another
    assert light != scenario_sequence("light", 50, mix, seed=2)
