"""The history CSV and the loop state across ``--resume``: each step once, in order; counts carried on."""

import csv
import os

import pandas as pd
import pytest

from careless_online.cli.main import main
from careless_online.io.pipeline import Standardizer
from careless_online.io.table import TableOptions
from careless_online.model.build import load_model, new_model
from careless_online.training import checkpoint
from careless_online.training.live import LiveSettings, _Round
from careless_online.training.loop import HISTORY_COLUMNS, History, TrainConfig
from careless_online.training.merge import MergeSettings

SG = "P 43 21 2"


def _history(path, steps):
    """A history of one row per step, its loss the step times 10 (to tell rows apart)."""
    history = History(str(path))
    for step in steps:
        history.write({"step": step, "loss": 10.0 * step, "skipped_steps": 0})
    return path


def _rows(path):
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def test_a_resumed_history_keeps_only_the_rows_up_to_the_restored_step(tmp_path):
    path = _history(tmp_path / "h.csv", [5, 10, 15, 20])
    before = _rows(path)
    history = History(str(path), start_step=10)  # the checkpoint of step 10 was restored
    assert _rows(path) == before[:2]  # kept rows unchanged, byte for byte
    history.write({"step": 15, "loss": 1.0})
    history.write({"step": 20, "loss": 2.0})
    after = pd.read_csv(path)
    assert list(after["step"]) == [5, 10, 15, 20]
    assert list(after["loss"]) == [50.0, 100.0, 1.0, 2.0]


def test_a_new_run_starts_a_new_history(tmp_path):
    path = _history(tmp_path / "h.csv", [5, 10])
    History(str(path), start_step=0)
    with open(path) as handle:
        assert handle.read().splitlines() == [",".join(HISTORY_COLUMNS)]


def test_a_resumed_history_drops_cut_rows_and_fills_columns_of_an_older_file(tmp_path):
    path = tmp_path / "h.csv"
    path.write_text("step,loss\n5,1.5\n10,1.25\nx,3\n15\n")  # no skipped_steps column; a bad and a cut row
    History(str(path), start_step=20)
    rows = _rows(path)
    assert list(rows[0]) == HISTORY_COLUMNS
    assert [(r["step"], r["loss"], r["skipped_steps"]) for r in rows] == [("5", "1.5", "nan"), ("10", "1.25", "nan")]


def test_a_resumed_history_without_a_file_starts_one(tmp_path):
    path = tmp_path / "h.csv"
    History(str(path), start_step=10)
    assert list(pd.read_csv(path).columns) == HISTORY_COLUMNS and len(pd.read_csv(path)) == 0


def test_a_kill_while_rewriting_the_history_keeps_the_old_file(tmp_path, monkeypatch):
    path = _history(tmp_path / "h.csv", [5, 10, 15])
    before = path.read_bytes()
    monkeypatch.setattr(os, "replace", lambda *args: (_ for _ in ()).throw(KeyboardInterrupt()))
    with pytest.raises(KeyboardInterrupt):
        History(str(path), start_step=5)
    monkeypatch.undo()
    assert path.read_bytes() == before
    assert os.listdir(tmp_path) == ["h.csv"]  # no temporary left


def _mono(*args):
    return main(["mono", "--disable-progress-bar", *map(str, args)])


def test_a_resumed_run_carries_its_skipped_steps_and_rewrites_the_rows_after_its_checkpoint(sim_files, tmp_path):
    out = tmp_path / "o"
    common = ["--spacegroups", SG, "--mlp-width", 8, "--validation-frequency", 2, "--validation-images", 8,
              "--checkpoint-interval", 2, "--no-predictions"]
    assert _mono(*common, "--iterations", 4, "dHKL", sim_files["stream"], out) == 0
    folder = str(tmp_path / "o_0.ckpt")
    unit = checkpoint.latest(folder)
    assert unit.step == 4 and unit.state["skipped_steps"] == 0
    # as if the stopped run had skipped 3 steps, and written the history row of step 6 before it died
    model = load_model(unit.model_path, restore_optimizer=True)
    checkpoint.save(model, folder, {**unit.state, "skipped_steps": 3})
    History(str(tmp_path / "o_history.csv"), start_step=4).write({"step": 6, "loss": -1.0, "skipped_steps": 3})
    assert _mono(*common, "--resume", "--iterations", 8, "dHKL", sim_files["stream"], out) == 0
    history = pd.read_csv(tmp_path / "o_history.csv")
    assert list(history["step"]) == [2, 4, 6, 8]
    assert history["loss"].iloc[2] != -1.0  # the row of step 6 is the resumed run's
    assert list(history["skipped_steps"]) == [0, 0, 3, 3]
    assert checkpoint.latest(folder).state["skipped_steps"] == 3


def test_live_rounds_carry_the_skipped_steps_on(sim_manifest, tmp_path):
    keys = ["dHKL"]
    standardizer = Standardizer.fit(sim_manifest, keys)
    train = TrainConfig(eval_every=2, eval_images=8, progress=False, lr_decay=0.0)
    settings = MergeSettings(base=str(tmp_path / "m"), metadata_keys=keys, table_options=TableOptions(spacegroup=SG),
                             train=train, model_options=dict(d_model=8), batch_images=8, predictions=False,
                             log=lambda message: None)
    history = tmp_path / "m_history.csv"
    rounds = _Round(new_model(sim_manifest, standardizer, d_model=8), standardizer, settings,
                    LiveSettings(steps_per_round=2), str(history), None)
    rounds.run(sim_manifest)
    rounds.trainer.skipped_steps = 2  # as if two steps of the first round had been skipped
    rounds.run(sim_manifest)
    table = pd.read_csv(history)
    assert list(table["step"]) == [2, 4] and list(table["skipped_steps"]) == [0, 2]
