"""``careless_online poly --live``: merging Laue MTZ files while they arrive in a folder.

A small simulated Laue set (12 images in a 0.8-1.3 A band, so some spots are
harmonic) is cut into three MTZ files.  The live merge runs through the
command line; its clock and waits come from a :class:`live_feed.Feeder`, so
that every round sees the same files on any machine.
"""

import functools
import json
import os

import numpy as np
import pandas as pd
import pytest
import reciprocalspaceship as rs

from careless_online.cli import poly
from careless_online.cli.main import main
from careless_online.io.arrivals import Arrivals
from careless_online.io.laue import LaueOptions
from careless_online.io.layout import to_internal
from careless_online.io.live import followed_formats
from careless_online.io.table import TableOptions
from careless_online.simulate.laue import simulate_laue
from careless_online.training import live as live_module
from live_feed import Feeder, FakeClock

BAND = ("0.8", "1.3")
LAUE = LaueOptions("Wavelength", (0.8, 1.3))
#: A short, small merge; constant learning rate and the posterior's own SIGF, so that live and offline can agree.
FLAGS = ["--iterations", "10", "--no-predictions", "--batch-size", "4", "--d-model", "16", "--validation-frequency", "10",
         "--validation-images", "4", "--disable-progress-bar", "--no-sigf-calibration", "--lr-decay", "0",
         "--seed", "3", "--dmin", "3.5", "-l", *BAND]
LIVE = ["--live", "--live-timeout", "0.5", "--live-poll", "1", "--live-steps", "10"]


@pytest.fixture(scope="module")
def laue_parts():
    """The simulated spots, cut into three files' worth of images (BATCH 1-4, 5-8, 9-12)."""
    spots = simulate_laue(n_images=12, dmin=3.5, band=(0.8, 1.3), seed=5).spots.drop(columns=["n_harmonics"])
    return [spots[spots["BATCH"].isin(group)] for group in np.array_split(np.arange(1, 13), 3)]


def _write(part, path):
    def write():
        part.write_mtz(str(path))
    return write


def _poly(argv):
    """Run ``careless_online poly argv``; returns the paths written."""
    return poly.run(poly.build_parser().parse_args(argv))


def _run_poly(argv, monkeypatch, pieces=()):
    """``careless_online poly`` with the live merge's clock and waits from a :class:`Feeder` writing ``pieces``."""
    clock = FakeClock()
    feeder = Feeder(pieces, clock)
    monkeypatch.setattr(live_module, "run_live",
                        functools.partial(live_module.run_live, clock=clock, sleep=feeder.sleep))
    [written] = _poly(argv)
    feeder.join()
    return written


@pytest.fixture(scope="module")
def offline(laue_parts, tmp_path_factory):
    """An offline poly merge of the three files."""
    folder = tmp_path_factory.mktemp("offline")
    files = [str(folder / f"run_{k}.mtz") for k in range(3)]
    for part, path in zip(laue_parts, files):
        _write(part, path)()
    [written] = _poly([*FLAGS, "dHKL,Wavelength", *files, str(folder / "m")])
    return written


def test_live_poly_follows_laue_files_arriving_in_a_folder(laue_parts, tmp_path, monkeypatch):
    folder = tmp_path / "incoming"
    folder.mkdir()
    (folder / "notes.stream").write_text("not a stream\n")  # not MTZ: passed over by a Laue merge
    pieces = [_write(part, folder / f"run_{k}.mtz") for k, part in enumerate(laue_parts)]
    written = _run_poly([*FLAGS, *LIVE, "--live-steps", "5", "--live-timeout", "2", "dHKL,Wavelength", str(folder), str(tmp_path / "m")],
                        monkeypatch, pieces)
    manifest = json.loads((tmp_path / ".careless_online_cache" / "live_m" / "manifest.json").read_text())
    assert manifest["n_images"] == 12 and len(manifest["inputs"]) == 3
    assert {"spot", "harmonic", "Wavelength"} <= set(manifest["columns"])  # rows per harmonic, as offline
    assert manifest["options"]["laue"]["wavelength_range"] == [0.8, 1.3]
    merged = rs.read_mtz(written["merged"])
    assert merged["N"].sum() == manifest["n_obs"] and np.isfinite(merged["F"].to_numpy(float)).all()
    history = pd.read_csv(written["history"])
    assert history["step"].iloc[-1] > 10  # rounds as the files came, then on until the timeout
    status = json.loads(open(os.path.join(written["report"], "status.json")).read())
    assert status["images"] == 12 and status["finished"] is True


def test_live_poly_of_a_full_folder_agrees_with_an_offline_merge(laue_parts, tmp_path, monkeypatch, offline):
    folder = tmp_path / "incoming"
    folder.mkdir()
    for k, part in enumerate(laue_parts):
        _write(part, folder / f"run_{k}.mtz")()
    written = _run_poly([*FLAGS, *LIVE, "dHKL,Wavelength", str(folder / "run_*.mtz"), str(tmp_path / "m")],
                        monkeypatch)
    a, b = (to_internal(rs.read_mtz(p)) for p in (written["merged"], offline["merged"]))
    assert len(a) == len(b) > 100
    b = b.loc[a.index]
    assert (a["N"].to_numpy() == b["N"].to_numpy()).all()
    np.testing.assert_allclose(a["F"].to_numpy(), b["F"].to_numpy(), rtol=1e-3)


def test_live_poly_needs_the_band(tmp_path, capsys):
    with pytest.raises(SystemExit) as stop:
        main(["poly", "--live", "--dmin", "3", "dHKL,Wavelength", str(tmp_path / "incoming"), str(tmp_path / "m")])
    assert stop.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "-l/--wavelength-range" in err[0], err


def test_a_laue_live_cache_follows_only_mtz_files(laue_parts, tmp_path):
    (tmp_path / "run.stream").write_text("CrystFEL stream format 2.3\n")
    _write(laue_parts[0], tmp_path / "run_0.mtz")()
    arrivals = Arrivals([str(tmp_path)], formats=followed_formats(TableOptions(dmin=3.5, laue=LAUE)))
    assert arrivals.poll() == [] and arrivals.poll() == [str(tmp_path / "run_0.mtz")] and arrivals.streams == []
