"""--early-stop: the run ends through its learning-rate decay once the held-out NLL stops improving."""

import math

import pandas as pd
import pytest

from careless_online.cli.main import main
from careless_online.training.early_stop import EarlyStop
from careless_online.training.loop import LR_FLOOR, TrainConfig, learning_rate_at

SIM_SPACEGROUP = "P 43 21 2"  # the shared simulation's (tests/conftest.py)


def _observe_all(plan, values, every=100):
    """Feed one NLL per evaluation; the step of the evaluation that stopped the plan (or None)."""
    for number, value in enumerate(values, start=1):
        if plan.observe(number * every, value):
            return number * every
    return None


def test_plan_is_brought_forward_after_patience_evaluations_without_improvement():
    plan = EarlyStop(patience=3, steps=100_000, lr_decay=0.3)
    stopped = _observe_all(plan, [5.0, 4.0, 3.0, 3.5, 3.2, 3.1, 2.0])
    assert stopped == 600  # best 3.0 at step 300, then 3 evaluations without a better one
    assert plan.planned == 600 + math.ceil(600 * 0.3 / 0.7)
    assert "step 600" in plan.describe() and str(plan.planned) in plan.describe()


def test_small_improvements_and_nans_do_not_reset_or_count():
    plan = EarlyStop(patience=2, steps=10_000, lr_decay=0.0, min_delta=0.01)
    assert _observe_all(plan, [1.0, float("nan"), 0.995, float("nan"), 0.999]) == 500
    assert plan.planned == 500  # no decay: the run ends at the evaluation that stops it


def test_plan_never_goes_past_the_requested_steps_and_zero_patience_never_stops():
    late = EarlyStop(patience=1, steps=1000, lr_decay=0.5)
    assert _observe_all(late, [1.0, 1.0]) == 200 and late.planned == 400
    capped = EarlyStop(patience=1, steps=300, lr_decay=0.5)
    assert _observe_all(capped, [1.0, 1.0]) == 200 and capped.planned == 300
    never = EarlyStop(patience=0, steps=1000, lr_decay=0.3)
    assert _observe_all(never, [1.0] * 9) is None and never.planned == 1000


def test_replay_of_history_rows_gives_the_same_plan():
    values = [5.0, 4.0, 4.5, 4.2, 4.1]
    live = EarlyStop(patience=3, steps=5000, lr_decay=0.3)
    _observe_all(live, values)
    rows = [{"step": str(100 * (n + 1)), "NLL_test": str(v)} for n, v in enumerate(values)]
    resumed = EarlyStop(patience=3, steps=5000, lr_decay=0.3).replay(rows)
    assert (resumed.planned, resumed.stopped_at, resumed.best) == (live.planned, live.stopped_at, live.best)
    assert resumed.planned < 5000


def test_constructor_validates_its_parameters():
    with pytest.raises(ValueError):
        EarlyStop(patience=-1, steps=10, lr_decay=0.3)
    with pytest.raises(ValueError):
        EarlyStop(patience=1, steps=10, lr_decay=1.0)


def test_learning_rate_decays_to_the_floor_over_the_shortened_plan():
    config = TrainConfig(steps=100_000, learning_rate=0.01, lr_decay=0.3)
    planned = 600 + math.ceil(600 * 0.3 / 0.7)
    assert learning_rate_at(config, 500, planned) == pytest.approx(0.01)
    assert 0.01 * LR_FLOOR <= learning_rate_at(config, planned - 1, planned) < 0.01 * 2 * LR_FLOOR
    assert learning_rate_at(config, planned - 1) == pytest.approx(0.01)  # the full plan: still constant


def _mono(sim_files, out, *flags):
    return main(["mono", "--disable-progress-bar", "--spacegroups", SIM_SPACEGROUP, "--no-predictions",
                 "--validation-frequency", "5", "--validation-images", "8", "--batch-size", "4", "--seed", "3",
                 *flags, "dHKL,XDET,YDET", sim_files["stream"], str(out)])


def test_early_stop_ends_a_long_run_after_its_decay(sim_files, tmp_path, capsys):
    """With --early-stop 1 a 100,000-step run ends early, and its last steps ran at the decayed learning rate."""
    assert _mono(sim_files, tmp_path / "m", "--early-stop", "1", "--iterations", "100000",
                 "--learning-rate", "0.01", "--lr-decay", "0.5") == 0
    history = pd.read_csv(f"{tmp_path / 'm'}_history.csv")
    last = history.iloc[-1]
    assert last["step"] < 2000
    # the run ended at its shortened plan, the last step at the bottom of the decay (a decay of n steps ends
    # at (1/n + LR_FLOOR) of the rate, so a decayed rate is under 15 % of it for any plan of 10 or more steps)
    config = TrainConfig(steps=100_000, learning_rate=0.01, lr_decay=0.5)
    assert last["learning_rate"] == pytest.approx(learning_rate_at(config, int(last["step"]) - 1, int(last["step"])),
                                                  rel=1e-3)
    assert last["learning_rate"] < 0.15 * 0.01
    assert history["learning_rate"].iloc[0] == pytest.approx(0.01)
    assert "early stop:" in capsys.readouterr().out
    assert (tmp_path / "m_0.mtz").exists()


def test_early_stop_needs_held_out_images(sim_files, tmp_path, capsys):
    with pytest.raises(SystemExit) as stop:
        _mono(sim_files, tmp_path / "m", "--early-stop", "3", "--test-fraction", "0")
    assert stop.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--early-stop" in err[0] and "--test-fraction" in err[0]
    assert not (tmp_path / "m_0.mtz").exists()
