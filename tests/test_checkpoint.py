"""Checkpoints are one consistent unit: a kill between its pieces leaves the previous unit."""

import errno
import os

import keras
import numpy as np
import pytest

from careless_online.cli.main import main
from careless_online.errors import InputError
from careless_online.model.build import load_model
from careless_online.model.merging import MergingModel
from careless_online.training import checkpoint

SG = "P 43 21 2"


def _model(kappa):
    """A tiny compiled model whose ``kappa`` tells which step it was saved at."""
    model = MergingModel(5, 2, d_model=4, encoder_layers=0, scale_layers=0)
    model.compile(optimizer=keras.optimizers.Adam())
    model.optimizer.build(model.trainable_variables)
    model.kappa.assign(float(kappa))
    return model


def _kappa(unit):
    return float(load_model(unit.model_path, restore_optimizer=True).kappa.numpy())


def test_latest_is_the_newest_complete_unit_and_older_ones_are_removed(tmp_path):
    folder = checkpoint.folder(str(tmp_path / "run_0.keras"))
    assert folder.endswith("run_0.ckpt")
    assert checkpoint.latest(folder) is None
    for step in (5, 10):
        checkpoint.save(_model(step), folder, {"step": step, "elapsed_s": 1.0})
    unit = checkpoint.latest(folder)
    assert unit.step == 10 and unit.state["step"] == 10 and _kappa(unit) == 10.0
    assert os.listdir(folder) == [os.path.basename(unit.path)]


@pytest.mark.parametrize("piece", ["model", "state", "manifest"])
def test_a_kill_while_writing_a_unit_leaves_the_previous_one(tmp_path, monkeypatch, piece):
    folder = str(tmp_path / "run_0.ckpt")
    checkpoint.save(_model(5), folder, {"step": 5})
    new = _model(10)
    if piece == "model":
        def killed(path, *args, **kwargs):
            open(path, "wb").write(b"PK half a zip")
            raise KeyboardInterrupt

        monkeypatch.setattr(new, "save", killed)
    else:
        real = checkpoint._write_json
        target = checkpoint.STATE_FILE if piece == "state" else checkpoint.MANIFEST_FILE

        def killed(path, value):
            if os.path.basename(path) == target:
                open(path + ".tmp", "w").write('{"step": 1')  # half written
                raise KeyboardInterrupt
            real(path, value)

        monkeypatch.setattr(checkpoint, "_write_json", killed)
    with pytest.raises(KeyboardInterrupt):
        checkpoint.save(new, folder, {"step": 10})
    unit = checkpoint.latest(folder)
    assert unit.step == 5 and unit.state == {"step": 5} and _kappa(unit) == 5.0
    monkeypatch.undo()
    checkpoint.save(new, folder, {"step": 10})  # the next save clears the debris
    assert checkpoint.latest(folder).step == 10
    assert sorted(os.listdir(folder)) == ["step_00000010"]


def test_a_damaged_unit_is_never_resumed(tmp_path):
    folder = str(tmp_path / "run_0.ckpt")
    checkpoint.save(_model(5), folder, {"step": 5})
    checkpoint.save(_model(10), folder, {"step": 10}, keep=2)
    newest = checkpoint.latest(folder)
    with open(newest.model_path, "r+b") as handle:  # same size, different bytes
        handle.seek(100)
        handle.write(b"XXXX")
    unit = checkpoint.latest(folder)
    assert unit.step == 5 and _kappa(unit) == 5.0


def test_the_output_model_is_replaced_atomically(tmp_path, monkeypatch):
    path = str(tmp_path / "run_0.keras")
    checkpoint.write_model(_model(5), path)
    monkeypatch.setattr(os, "replace", lambda *a: (_ for _ in ()).throw(KeyboardInterrupt()))
    with pytest.raises(KeyboardInterrupt):
        checkpoint.write_model(_model(10), path)
    monkeypatch.undo()
    assert float(load_model(path).kappa.numpy()) == 5.0


def _mono(*args):
    return main(["mono", "--disable-progress-bar", *map(str, args)])


def test_a_run_resumes_from_its_unit_and_cache_and_max_nonfinite_steps_stops_a_diverging_run(sim_files, tmp_path,
                                                                                              capsys):
    out = tmp_path / "o"
    common = ["--spacegroups", SG, "--mlp-width", 8, "--validation-frequency", 2, "--validation-images", 8,
              "--checkpoint-interval", 2, "--no-predictions"]
    assert _mono(*common, "--iterations", 4, "dHKL", sim_files["stream"], out) == 0
    assert checkpoint.latest(str(tmp_path / "o_0.ckpt")).step == 4
    caches = os.listdir(tmp_path / ".careless_online_cache")
    (tmp_path / "o_predictions_0.mtz").write_text("an earlier run's")
    capsys.readouterr()
    assert _mono(*common, "--resume", "--iterations", 6, "dHKL", sim_files["stream"], out) == 0
    # the resumed run reads the first run's cache (not a second conversion keyed by the model's index)
    assert os.listdir(tmp_path / ".careless_online_cache") == caches and len(caches) == 1
    log = capsys.readouterr().out
    assert f"reusing cache {tmp_path / '.careless_online_cache' / caches[0]}" in log
    # and the predictions it did not write (--no-predictions) are not left beside its merge
    assert not (tmp_path / "o_predictions_0.mtz").exists() and f"removed {tmp_path / 'o_predictions_0.mtz'}" in log
    unit = checkpoint.latest(str(tmp_path / "o_0.ckpt"))
    assert unit.step == 6
    assert int(load_model(unit.model_path, restore_optimizer=True).optimizer.iterations.numpy()) == 6
    capsys.readouterr()
    # a learning rate of 1e30 makes the first update non-finite: every later step is skipped
    with pytest.raises(SystemExit) as exit_info:
        _mono(*common, "--learning-rate", 1e30, "--global-clipnorm", 0, "--lr-decay", 0,
              "--max-nonfinite-steps", 2, "--iterations", 50, "dHKL", sim_files["stream"], tmp_path / "d")
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "2 steps in a row" in err[0]


def _full_disk(*args, **kwargs):
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


@pytest.mark.parametrize("piece", ["model", "state"])
def test_a_full_disk_while_writing_a_unit_is_one_line_and_keeps_the_previous_unit(tmp_path, monkeypatch, piece):
    folder = str(tmp_path / "run_0.ckpt")
    checkpoint.save(_model(5), folder, {"step": 5})
    new = _model(10)
    if piece == "model":
        monkeypatch.setattr(new, "save", _full_disk)
    else:
        monkeypatch.setattr(checkpoint, "write_bytes", _full_disk)
    with pytest.raises(InputError, match="no space left on device"):
        checkpoint.save(new, folder, {"step": 10})
    unit = checkpoint.latest(folder)
    assert unit.step == 5 and _kappa(unit) == 5.0
    assert os.listdir(folder) == [os.path.basename(unit.path)]


def test_a_full_disk_while_replacing_the_output_model_keeps_the_old_file(tmp_path, monkeypatch):
    path = str(tmp_path / "run_0.keras")
    checkpoint.write_model(_model(5), path)
    before = open(path, "rb").read()
    new = _model(10)
    monkeypatch.setattr(new, "save", _full_disk)
    with pytest.raises(InputError, match="no space left on device"):
        checkpoint.write_model(new, path)
    assert open(path, "rb").read() == before
    assert sorted(os.listdir(tmp_path)) == ["run_0.keras"]


def test_resume_on_changed_inputs_and_model_in_of_another_space_group_are_refused(sim_files, tmp_path, capsys):
    stream = tmp_path / "copy.stream"
    text = open(sim_files["stream"]).read()
    stream.write_text(text)
    out = tmp_path / "o"
    common = ["--spacegroups", SG, "--mlp-width", 8, "--validation-frequency", 2, "--validation-images", 8,
              "--checkpoint-interval", 2, "--no-predictions"]
    assert _mono(*common, "--iterations", 2, "dHKL", stream, out) == 0
    os.utime(stream)  # touched, contents unchanged: resuming is fine
    assert _mono(*common, "--resume", "--iterations", 4, "dHKL", stream, out) == 0
    stream.write_text(text[:text.rindex("----- Begin chunk -----")])  # the last image removed
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_info:
        _mono(*common, "--resume", "--iterations", 6, "dHKL", stream, out)
    err = capsys.readouterr().err.strip().splitlines()
    assert exit_info.value.code == 2 and len(err) == 1 and "input files changed" in err[0]
    other = ["--spacegroups", "P 41 21 2", *common[2:]]
    with pytest.raises(SystemExit) as exit_info:
        _mono(*other, "--model-in", tmp_path / "o_0.keras", "--iterations", 2, "dHKL", sim_files["stream"],
              tmp_path / "m")
    err = capsys.readouterr().err.strip().splitlines()
    assert exit_info.value.code == 2 and len(err) == 1 and "trained in space group P 43 21 2" in err[0]
