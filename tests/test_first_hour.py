"""The first hour's stumbles (issue 23): each one a short regression test.

None trains: the live dry run stops at its timeout before any data arrive.
The resumed run's cache and the removal of an earlier run's outputs are
checked in tests/test_checkpoint.py, on the merge that test runs anyway.
"""

import gc
import os
import re
import shlex
import shutil
from pathlib import Path

import numpy as np
import pytest

from careless_online.cli.main import main
from careless_online.io.arrivals import Arrivals
from careless_online.io.live import LiveCache
from careless_online.io.pipeline import Standardizer, training_views
from careless_online.io.table import TableOptions
from careless_online.training.data_range import warn_batch_above_images, warn_dmin_beyond_data
from careless_online.training.stale import remove_stale_outputs

from conftest import SIM_SPACEGROUP

DOCS = Path(__file__).resolve().parent.parent / "docs"

#: A model file with one Se atom in the simulation's cell (what the dry run's simulator writes first).
SE_PDB = ("CRYST1   79.100   79.100   38.300  90.00  90.00  90.00 P 43 21 2\n"
          "HETATM    1 SE   SE  A   1      10.000  10.000  10.000  1.00 20.00          SE\nEND\n")


def _dry_run_command():
    """The ``mono --live`` command of docs/beamline.md's dry run, as words."""
    text = (DOCS / "beamline.md").read_text()
    section = text.split("### A dry run with simulated data", 1)[1]
    block = re.search(r"```bash\n(.*?)```", section, re.S).group(1).replace("\\\n", " ")
    line = next(line for line in block.splitlines() if line.startswith("careless_online mono"))
    return shlex.split(line)[1:]


def test_the_docs_dry_run_waits_for_its_folder_instead_of_refusing_it(tmp_path, monkeypatch, capsys):
    argv = _dry_run_command()
    assert "sim_dials/" in argv and "--live" in argv
    argv[argv.index("--live-timeout") + 1] = "1"  # no simulator runs: give up after a second
    monkeypatch.chdir(tmp_path)
    (tmp_path / "sim_model.pdb").write_text(SE_PDB)
    with pytest.raises(SystemExit) as stop:
        main([*argv[:1], "--live-poll", "0.2", *argv[1:]])
    out, err = capsys.readouterr()
    assert stop.value.code == 2
    assert "sim_dials: no such folder yet; waiting for it to appear" in out
    assert err.strip().splitlines()[-1].endswith("sim_dials/: no complete data arrived within 1 s")
    assert "unknown file format" not in err


def test_a_folder_and_a_glob_folder_that_appear_later_are_searched(sim_files, tmp_path):
    messages = []
    sources = [str(tmp_path / "later"), str(tmp_path / "runs" / "*.stream")]
    cache = LiveCache(sources, TableOptions(spacegroup=SIM_SPACEGROUP, dmin=3.0), str(tmp_path / "cache"),
                      log=messages.append)
    assert messages == [f"{tmp_path / 'later'}: no such folder yet; waiting for it to appear",
                        f"{tmp_path / 'runs'}: no such folder yet; waiting for it to appear"]
    arrivals = Arrivals(sources)
    assert arrivals.poll() == [] and arrivals.streams == []
    for folder in ("later", "runs"):
        (tmp_path / folder).mkdir()
        shutil.copy(sim_files["stream"], tmp_path / folder / "a.stream")
    arrivals.poll()
    assert arrivals.streams == [str(tmp_path / "later" / "a.stream"), str(tmp_path / "runs" / "a.stream")]


def test_scored_views_are_not_confused_when_a_live_round_rebuilds_them(sim_manifest):
    """The evaluation batches are kept per view object, and dropped with it (no id reuse, no growth)."""
    from careless_online.model.build import new_model
    from careless_online.training.loop import TrainConfig, Trainer

    standardizer = Standardizer.fit(sim_manifest, ["dHKL"], True)
    model = new_model(sim_manifest, standardizer, d_model=4, encoder_layers=0, scale_layers=0)
    train, test, monitor = training_views(sim_manifest, standardizer, 4, 0.25, 1234)
    trainer = Trainer(model, train, test, TrainConfig(steps=1, progress=False), None, None, monitor=monitor)
    scores = {}
    for _ in range(5):  # five live rounds: new views each time, the old ones dropped
        _, test, monitor = training_views(sim_manifest, standardizer, 4, 0.25, 1234)
        scores.setdefault("test", set()).add(trainer.score(test, 8))
        scores.setdefault("train", set()).add(trainer.score(monitor, 8))
        del test, monitor
        gc.collect()
        assert len(trainer._scored) == 0  # what a round kept went with its views
    assert len(scores["test"]) == len(scores["train"]) == 1  # every round scores the same images alike
    assert scores["test"] != scores["train"]  # and held-out images are never scored as training images


def test_dmin_beyond_the_data_and_a_batch_above_the_images_are_warned(sim_files, sim_manifest, tmp_path):
    from careless_online.io.cache import build_cache

    said = []
    assert warn_dmin_beyond_data(sim_manifest, None, said.append) is None
    assert warn_dmin_beyond_data(sim_manifest, 3.0, said.append) is None and said == []  # the data's own limit
    finer = build_cache([sim_files["stream"]], TableOptions(spacegroup=SIM_SPACEGROUP, dmin=2.0),
                        str(tmp_path / "cache"))
    assert warn_dmin_beyond_data(finer, 2.0, said.append) > 0.5
    assert len(said) == 1 and said[0].startswith("WARNING --dmin 2 A is beyond the data (finest observation 3.0")
    assert not warn_batch_above_images(8, 36, said.append) and len(said) == 1
    assert warn_batch_above_images(64, 36, said.append)
    assert said[1] == ("WARNING --batch-size 64 is above the 36 training images: every step takes all 36 "
                       "(use --batch-size 36 or less)")


def test_outputs_an_earlier_run_left_under_the_prefix_are_removed(tmp_path):
    base = str(tmp_path / "run")
    for name in ("run_0.mtz", "run_1.mtz", "run_predictions_0.mtz", "run_xval_0.mtz", "run_history.csv",
                 "run_other.mtz", "running_0.mtz"):
        (tmp_path / name).write_text("x")
    said = []
    removed = remove_stale_outputs(base, [f"{base}_0.mtz", f"{base}_history.csv"], said.append)
    assert [os.path.basename(p) for p in removed] == ["run_1.mtz", "run_predictions_0.mtz", "run_xval_0.mtz"]
    assert sorted(os.listdir(tmp_path)) == ["run_0.mtz", "run_history.csv", "run_other.mtz", "running_0.mtz"]
    assert len(said) == 3 and said[0].endswith("left by an earlier run under this prefix, not written by this one")


def test_a_plot_with_an_unknown_image_format_is_one_line(tmp_path, capsys):
    from careless_online.cli import plot_history

    with pytest.raises(SystemExit) as stop:
        plot_history.main(["-i", str(tmp_path / "x.pnj"), str(tmp_path / "missing_history.csv")])
    err = capsys.readouterr().err.strip().splitlines()
    assert stop.value.code == 2 and len(err) == 1
    assert "unknown image format 'pnj'" in err[0] and "png" in err[0]
    assert os.listdir(tmp_path) == []
