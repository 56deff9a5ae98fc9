"""The live report of several datasets: per-dataset pages, the top status, difference peaks over time.

The rounds are built from the truth of a simulated dark/light pair (no
training): each round merges more observations, with noise that shrinks
round by round, so the difference signal at the changed atoms must grow.
"""

import json
import os
import shutil
import subprocess
import time

import gemmi
import numpy as np
import pandas as pd
import pytest
from matplotlib.image import imread

from careless_online.errors import InputError
from careless_online.io import writers
from careless_online.io.reflections import ReflectionIndex
from careless_online.report.datasets import DatasetRound, DatasetsReport
from careless_online.report.live import RoundProgress
from careless_online.simulate import structure as model_files
from careless_online.simulate.states import StateChange, simulate_states

CHROMIUM = "/usr/bin/chromium"
NAMES = ["dark.stream", "light.stream"]
NOISE = (0.3, 0.1, 0.03)  # SIGF as a fraction of the rms F, round by round
ONE_DATASET_KEYS = {"images", "images_waiting", "images_converted", "images_per_second", "lag_seconds", "steps",
                    "elapsed_seconds", "shells", "overall", "stopping_hint", "report_seconds", "report_fraction"}


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    """Index, true F of dark and light per index entry, the dark model, the changed atoms' residue numbers."""
    states = simulate_states(n_images=1, seed=4, dmin=4.0, n_atoms=100,
                             change=StateChange(n_changed=4, shift=1.5, occupancy=1.0))
    index = ReflectionIndex.from_cell(states.dark.cell, states.dark.spacegroup, 4.0, False)
    keys = [tuple(hkl) for hkl in index.hkl]
    truth = [states.difference[column].reindex(keys).to_numpy(dtype=float) for column in ("F_DARK", "F_LIGHT")]
    path = tmp_path_factory.mktemp("model") / "dark.pdb"
    model_files.write_model(states.dark.model, str(path))  # residue i + 1 holds atom i of the ASU
    return {"index": index, "truth": truth, "structure": gemmi.read_structure(str(path)),
            "changed": set(int(i) + 1 for i in states.changed)}


def _round(name, index, f_true, images, noise, rng):
    """A dataset's round: noisy posterior, counts, merged table and its observations."""
    counts = rng.poisson(images / 50.0, len(index))
    f_std = np.full(len(index), noise * np.sqrt(np.mean(f_true**2)))
    f_mean = np.abs(f_true + rng.normal(size=len(index)) * f_std)
    refl = np.repeat(np.arange(len(index)), counts)
    intensity = f_true[refl] ** 2 * (1 + noise * rng.normal(size=len(refl)))

    def observations():
        yield {"refl_id": refl, "image_id": np.arange(len(refl)), "I": intensity,
               "SigI": noise * f_true[refl] ** 2 + 1.0, "Ipred": f_mean[refl] ** 2}
    return DatasetRound(name, images, images + 7, f_mean, f_std, counts,
                        writers.merged_table(index, f_mean, f_std, counts), observations)


def _progress(images, elapsed):
    return RoundProgress(images=images, images_waiting=14, images_per_second=images / elapsed, lag_seconds=1.5,
                         steps=10 * images, elapsed_seconds=elapsed, round_seconds=2.0)


def _update(report, pair, number, noise, history_path=None):
    rng = np.random.default_rng(number)
    images = 100 * (number + 1)
    rounds = [_round(name, pair["index"], f_true, images, noise, rng) for name, f_true in zip(NAMES, pair["truth"])]
    return report.update(_progress(2 * images, 10.0 * (number + 1)), rounds, history_path)


def _history(folder, rounds):
    """A training history CSV of ``rounds`` rounds."""
    steps = np.arange(1, 10 * rounds + 1)
    path = folder / "tr_history.csv"
    pd.DataFrame({"step": steps, "loss": 1e3 / steps, "NLL": 8e2 / steps, "ccpred_train": 1 - 1 / steps,
                  "ccpred_test": 0.9 - 1 / steps}).to_csv(path, index=False)
    return str(path)


def _residue(label):
    """Residue number of an atom label ``A/ATM 95/O``."""
    return int(label.split("/")[1].split()[-1])


@pytest.fixture(scope="module")
def followed(pair, tmp_path_factory):
    """A report with the dark model drawn after each of three rounds of shrinking noise."""
    folder = tmp_path_factory.mktemp("datasets")
    report = DatasetsReport(str(folder / "tr_live"), pair["index"], NAMES, [None, 0], n_shells=5,
                            structure=pair["structure"], max_fraction=1.0)
    statuses = [_update(report, pair, number, noise, _history(folder, number + 1))
                for number, noise in enumerate(NOISE)]
    folder = folder / "tr_live"
    return report, statuses, folder


def _read(path):
    return json.loads(path.read_text())  # strict JSON: a NaN would not parse back


def test_top_status_has_the_one_dataset_keys_and_an_entry_per_dataset(followed):
    report, statuses, folder = followed
    status = _read(folder / "status.json")
    assert set(status) >= ONE_DATASET_KEYS | {"datasets", "differences"}
    own = [_read(folder / f"dataset_{number}" / "status.json") for number in range(2)]
    assert status["shells"] == own[0]["shells"] and status["stopping_hint"] == own[0]["stopping_hint"]
    assert (status["images"], status["images_converted"]) == (600, 2 * 307)
    assert [d["name"] for d in status["datasets"]] == NAMES
    assert [d["reference"] for d in status["datasets"]] == [None, 0]
    for number, (entry, theirs) in enumerate(zip(status["datasets"], own)):
        assert (entry["images"], entry["images_converted"]) == (theirs["images"], theirs["images_converted"]) \
            == (300, 307)
        assert theirs["images_waiting"] == 7 and theirs["images_per_second"] == pytest.approx(300 / 30.0)
        assert entry["overall"] == theirs["overall"] and entry["overall"]["cchalf"] > 0.5
        assert entry["stopping_hint"] == theirs["stopping_hint"]["text"]
        assert entry["page"] == f"dataset_{number}/index.html" and (folder / entry["page"]).exists()
    difference = status["differences"][0]
    assert (difference["dataset"], difference["reference"]) == (1, 0)
    assert difference["n_reflections"] > 0 and difference["rms_df"] > difference["rms_sigdf"] > 0
    assert len(difference["atoms"]) == 5 and {"height_sigma", "nearest_atom", "distance"} <= set(difference["peaks"][0])
    assert 0 < status["report_fraction"] and report.drawings == 3
    page = (folder / "index.html").read_text()  # the page shows the share status.json gives
    assert f"{status['report_fraction']:.1%}</div><div class='k'>report share of run time" in page


def test_each_dataset_page_is_linked_from_the_top_page(followed):
    _, _, folder = followed
    page = (folder / "index.html").read_text()
    assert '<meta http-equiv="refresh" content="10">' in page
    for number, name in enumerate(NAMES):
        assert f"<a href='dataset_{number}/index.html'>{name}</a>" in page
        assert "Stopping hint" in (folder / f"dataset_{number}" / "index.html").read_text()
    assert "light.stream − dark.stream" in page and "followed atom" in page
    names = [n for n in _read(folder / "status.json")["figures"]]
    assert names == ["datasets.png", "difference_peaks.png", "training.png", "difference_signal.png"]
    assert all((folder / name).stat().st_size > 0 for name in names)


def test_difference_peaks_at_the_changed_atoms_grow_as_the_noise_shrinks(followed, pair):
    report, statuses, _ = followed
    follower = report.followers[0]
    changed = [i for i, label in enumerate(follower.labels) if _residue(label) in pair["changed"]]
    assert len(changed) == 4 and len(follower.labels) == pair["structure"][0].count_atom_sites()
    heights = np.array(follower.heights)[:, changed]  # every atom's height is kept at every drawing
    assert np.all(np.diff(np.abs(heights).mean(axis=1)) > 0)
    assert np.all(heights[-1] < -3.0)  # the moved atoms leave a negative peak where they were
    followed_now = {_residue(a["atom"]) for a in statuses[-1]["differences"][0]["atoms"]}
    assert pair["changed"] <= followed_now
    images, series = follower.height_series()
    assert list(images) == [100, 200, 300] and {_residue(label) for label in series} == followed_now
    ratios = [s["differences"][0]["rms_df"] / s["differences"][0]["rms_sigdf"] for s in statuses]
    assert np.all(np.diff(ratios) > 0)


def test_no_temporary_file_is_left_behind(followed):
    _, _, folder = followed
    names = [name for _, _, files in os.walk(folder) for name in files]
    assert "index.html" in names and not [name for name in names if name.endswith(".tmp")]


def test_drawing_is_skipped_when_not_due_and_done_at_the_end_where_every_page_stops_reloading(pair, tmp_path):
    offset = [0.0]  # seconds of training that pass between rounds, added to the report's clock
    report = DatasetsReport(str(tmp_path / "live"), pair["index"], NAMES, [None, 0], n_shells=5, max_fraction=0.1,
                            clock=lambda: time.perf_counter() + offset[0])
    _update(report, pair, 0, NOISE[0])
    drawing_seconds = report.last_seconds
    sub_page = (tmp_path / "live" / "dataset_1" / "index.html").read_text()
    status = _update(report, pair, 1, NOISE[1])  # at once: drawing again would cost far over 10 %
    assert report.drawings == 1 and report.last_seconds < 0.5 * drawing_seconds
    assert status["images"] == 400 and _read(tmp_path / "live" / "dataset_1" / "status.json")["images"] == 200
    assert (tmp_path / "live" / "dataset_1" / "index.html").read_text() == sub_page
    assert status["differences"][0]["images"] == 100  # the differences of the last drawing
    offset[0] += 10.0 * drawing_seconds / 0.1  # ten times the time the drawing needs to be due
    status = _update(report, pair, 2, NOISE[2])
    assert report.drawings == 2 and status["differences"][0]["images"] == 300
    _update(report, pair, 3, NOISE[2])
    assert report.drawings == 2
    report.finish()
    assert report.drawings == 3 and "800 images" in (tmp_path / "live" / "index.html").read_text()
    assert "400 images" in (tmp_path / "live" / "dataset_1" / "index.html").read_text()
    for folder in ("", "dataset_0", "dataset_1"):  # every page says the merge has ended and stops reloading
        page = (tmp_path / "live" / folder / "index.html").read_text()
        assert "<b>Finished</b>" in page and "http-equiv" not in page
        assert _read(tmp_path / "live" / folder / "status.json")["finished"] is True
    status = _read(tmp_path / "live" / "status.json")
    assert status["differences"][0]["rms_df"] > 0 and status["differences"][0]["peaks"] == []  # no model
    assert "difference_peaks.png" not in status["figures"]


def test_first_look_and_arrivals_count_each_dataset(pair, tmp_path):
    report = DatasetsReport(str(tmp_path / "live"), pair["index"], NAMES, [None, 0], n_shells=5)
    report.arrived([5, 5], 0.5)  # before the first look: nothing to say yet
    assert not (tmp_path / "live" / "status.json").exists()
    counts = [np.random.default_rng(n).poisson(0.5 * (n + 1), len(pair["index"])) for n in range(2)]
    report.first_look([30, 20], 2.0, counts, {"files": 1, "stream_chunks": 0})
    status = _read(tmp_path / "live" / "status.json")
    assert (status["images"], status["images_waiting"], status["images_converted"]) == (0, 50, 50)
    assert [d["images_converted"] for d in status["datasets"]] == [30, 20] and status["backlog"]["files"] == 1
    completeness = [d["overall"]["completeness"] for d in status["datasets"]]
    assert 0 < completeness[0] < completeness[1]
    report.arrived([40, 25], 3.0)
    status = _read(tmp_path / "live" / "status.json")
    assert (status["images_converted"], status["images_waiting"], status["elapsed_seconds"]) == (65, 65, 3.0)
    light = _read(tmp_path / "live" / "dataset_1" / "status.json")
    assert (light["images_converted"], light["images_waiting"]) == (25, 25) and report.drawings == 0


@pytest.mark.parametrize("references, match", [([None, 2], "cannot take its differences"),
                                               ([None, 1], "cannot take its differences"),
                                               ([None, 0, 0], "3 reference datasets")])
def test_bad_references_are_input_errors(pair, tmp_path, references, match):
    with pytest.raises(InputError, match=match):
        DatasetsReport(str(tmp_path / "live"), pair["index"], NAMES, references)


def test_a_model_without_atoms_is_an_input_error(pair, tmp_path):
    empty = gemmi.Structure()
    empty.add_model(gemmi.Model(1))
    for references in ([None, 0], [None, None]):  # refused even where no difference would use it
        with pytest.raises(InputError, match="no atoms"):
            DatasetsReport(str(tmp_path / "live"), pair["index"], NAMES, references, structure=empty)


def test_each_dataset_follows_anomalous_peaks_only_in_an_anomalous_merge(pair, tmp_path):
    plain = DatasetsReport(str(tmp_path / "plain"), pair["index"], NAMES, [None, 0], structure=pair["structure"])
    assert [report.structure for report in plain.reports] == [None, None]  # the model phases differences only
    index = ReflectionIndex.from_cell(pair["index"].cell, pair["index"].spacegroup, 4.0, anomalous=True)
    anomalous = DatasetsReport(str(tmp_path / "anomalous"), index, NAMES, [None, 0], structure=pair["structure"],
                               elements="O")
    n_oxygen = sum(cra.atom.element.name == "O" for cra in pair["structure"][0].all())
    assert [len(report.atoms) for report in anomalous.reports] == [n_oxygen, n_oxygen] and n_oxygen > 0


def _screenshot(page, folder):
    """Fraction of saturated (coloured) pixels in a headless Chromium screenshot of ``page``."""
    folder.mkdir()
    shot = folder / "page.png"
    command = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
               "--disable-background-networking", "--disable-component-update", "--disable-sync",
               f"--user-data-dir={folder / 'profile'}", f"--screenshot={shot}", "--window-size=1200,2000",
               f"file://{page}"]
    subprocess.run(command, capture_output=True, timeout=120, check=False)
    assert shot.exists(), "chromium wrote no screenshot"
    pixels = imread(str(shot))
    assert pixels.shape[:2] == (2000, 1200)
    return float(np.mean(np.ptp(pixels[..., :3], axis=-1) > 0.2))


def test_top_page_renders_in_headless_chromium(followed, tmp_path):
    if not os.path.exists(CHROMIUM) or shutil.which(CHROMIUM) is None:
        pytest.skip(f"no browser at {CHROMIUM} (Debian: apt-get install chromium); .ci/run installs one")
    _, _, folder = followed
    text = (folder / "index.html").read_text()
    bare = tmp_path / "bare.html"  # the same page without its panels: the control
    bare.write_text(text[:text.index("<figure")] + "</body></html>")
    coloured, control = _screenshot(folder / "index.html", tmp_path / "page"), _screenshot(bare, tmp_path / "bare")
    assert coloured > 3 * control + 0.002, "the figures did not render"
