"""Live mode: merging data while they are being written.

Data arrive from a background writer, one piece each time the merger waits
(see ``live_feed``), so every round sees the same data on any machine.
"""

import json
import os
import shutil
import signal
from dataclasses import replace

import gemmi
import keras
import numpy as np
import pandas as pd
import pytest
import reciprocalspaceship as rs

from careless_online.cli.main import main
from careless_online.io.layout import to_internal
from careless_online.io.live import LiveCache
from careless_online.io.table import TableOptions
from careless_online.simulate import simulate, simulate_to_files
from careless_online.training.live import LiveSettings, run_live
from careless_online.training.loop import TrainConfig, learning_rate_at
from careless_online.training.merge import MergeSettings, run_merge
from live_feed import Feeder, FakeClock, dials_pieces, mtz_pieces, stream_pieces

KEYS = ["dHKL", "XDET", "YDET", "ewald_offset"]
SPACEGROUP = "P 43 21 2"


def _settings(base, steps, anomalous=False, keys=KEYS, **options):
    train = TrainConfig(steps=steps, eval_every=10, progress=False, lr_decay=0.0, checkpoint_every=None)
    return MergeSettings(base=str(base), metadata_keys=list(keys),
                         table_options=TableOptions(spacegroup=SPACEGROUP, dmin=3.0, anomalous=anomalous),
                         train=train, model_options=dict(d_model=16), batch_images=8, predictions=False,
                         log=lambda message: None, **options)


def _snapshots(report_folder, store):
    """A watch function that keeps each new status.json and cchalf.png of the report."""
    def watch():
        status = os.path.join(report_folder, "status.json")
        if os.path.exists(os.path.join(report_folder, "cchalf.png")):  # drawn once a round has ended
            text = open(status).read()
            if not store or store[-1][0] != text:
                store.append((text, open(os.path.join(report_folder, "cchalf.png"), "rb").read()))
    return watch


def test_live_cache_reads_only_complete_chunks(tmp_path):
    paths = simulate_to_files(str(tmp_path / "s"), n_images=12, seed=2, formats=("stream",))
    text = open(paths["stream"]).read()
    cut = text.index("----- End chunk -----", text.index("----- End chunk -----") + 10) + 30
    growing = tmp_path / "grow.stream"
    growing.write_text(text[:cut])  # two complete chunks and part of a third
    cache = LiveCache([str(growing)], TableOptions(spacegroup=SPACEGROUP, dmin=3.0), str(tmp_path / "cache"))
    assert cache.poll() == 2
    assert cache.poll() == 0
    growing.write_text(text)
    assert cache.poll() == 10
    manifest = cache.manifest
    assert manifest.n_images == 12
    assert manifest.counts().sum() == manifest.n_obs
    on_disk = json.loads((tmp_path / "cache" / "manifest.json").read_text())
    assert on_disk["n_obs"] == manifest.n_obs


def test_live_merge_follows_a_growing_stream(tmp_path):
    paths = simulate_to_files(str(tmp_path / "sim"), n_images=60, seed=4, formats=("stream",))
    stream = str(tmp_path / "grow.stream")
    clock = FakeClock()
    snapshots = []
    feeder = Feeder(stream_pieces(open(paths["stream"]).read(), stream, 3), clock,
                    watch=_snapshots(str(tmp_path / "out" / "live_live"), snapshots))
    live = LiveSettings(timeout=4.0, poll=1.0, steps_per_round=10, report_fraction=1.0)
    written = run_live([stream], _settings(tmp_path / "out" / "live", steps=20), live, clock=clock, sleep=feeder.sleep)
    feeder.join()
    manifest = json.loads((tmp_path / "out" / ".careless_online_cache" / "live_live" / "manifest.json").read_text())
    assert manifest["n_images"] == 60
    merged = rs.read_mtz(written["merged"])
    assert merged["N"].sum() == manifest["n_obs"]
    history = pd.read_csv(written["history"])
    # two rounds on the first piece (20 steps), one round per later piece (40), then training goes on
    # without data, one round per second of the feeder's clock, until 4 s have passed without data
    assert history["step"].is_monotonic_increasing and history["step"].iloc[-1] == 40 + 4 * 10
    images = [json.loads(text)["images"] for text, _ in snapshots]
    assert len(images) >= 3 and images == sorted(images) and images[0] < 60 and images[-1] == 60
    # the figures change as data arrive
    assert len({png for _, png in snapshots}) == len(snapshots)
    final = json.loads(open(os.path.join(written["report"], "status.json")).read())
    assert final["images"] == 60 and final["steps"] == 80 and final["phase"] == "finished"


@pytest.fixture(scope="module")
def offline_merge(sim_files, tmp_path_factory):
    """An offline merge of the shared simulation: 20 steps, constant learning rate, the posterior's own SIGF (as live)."""
    keras.utils.set_random_seed(11)
    return run_merge([sim_files["stream"]], _settings(tmp_path_factory.mktemp("offline") / "m", steps=20,
                                                      calibrate_sigf=False))


def test_live_merge_equals_an_offline_merge_of_the_same_images(tmp_path, sim_files, offline_merge):
    keras.utils.set_random_seed(11)
    live = LiveSettings(timeout=0.5, poll=0.1, steps_per_round=10)
    clock = FakeClock()
    feeder = Feeder([], clock)
    written = run_live([sim_files["stream"]], _settings(tmp_path / "live" / "m", steps=20), live,
                       clock=clock, sleep=feeder.sleep)
    offline = offline_merge
    a, b = (to_internal(rs.read_mtz(p)) for p in (written["merged"], offline["merged"]))
    assert len(a) == len(b) > 0
    b = b.loc[a.index]
    assert (a["N"].to_numpy() == b["N"].to_numpy()).all()
    np.testing.assert_allclose(a["F"].to_numpy(), b["F"].to_numpy(), rtol=1e-4)
    np.testing.assert_allclose(a["SIGF"].to_numpy(), b["SIGF"].to_numpy(), rtol=1e-4)
    wavelengths = [gemmi.read_mtz_file(p, with_data=False).datasets[-1].wavelength
                   for p in (written["merged"], offline["merged"])]
    assert wavelengths[0] == pytest.approx(wavelengths[1]) and wavelengths[0] > 0  # recorded, as offline


def _decay_settings(base, steps, log=None):
    """Settings of a merge whose learning rate decays over its second half."""
    settings = _settings(base, steps=steps)
    settings.train = replace(settings.train, lr_decay=0.5)
    if log is not None:
        settings.log = log
    return settings


def test_live_merge_of_a_finished_stream_ends_with_the_decay_like_an_offline_merge(tmp_path, sim_files):
    keras.utils.set_random_seed(11)
    offline = run_merge([sim_files["stream"]], _decay_settings(tmp_path / "offline" / "m", steps=20))
    keras.utils.set_random_seed(11)
    messages = []
    clock = FakeClock()
    live = LiveSettings(timeout=0.5, poll=0.1, steps_per_round=10)
    settings = _decay_settings(tmp_path / "live" / "m", steps=20, log=messages.append)
    written = run_live([sim_files["stream"]], settings, live, clock=clock, sleep=Feeder([], clock).sleep)
    # 10 steps at the constant rate, no data for longer than the timeout, then the decay: 20 steps as offline
    assert "finishing: 10 steps with the learning-rate decay" in messages
    history = pd.read_csv(written["history"])
    assert history["step"].iloc[-1] == 20
    expected = learning_rate_at(settings.train, 19)
    assert history["learning_rate"].iloc[0] == pytest.approx(settings.train.learning_rate)
    assert history["learning_rate"].iloc[-1] == pytest.approx(expected, rel=1e-4) and expected < 0.2 * settings.train.learning_rate
    a, b = rs.read_mtz(written["merged"]), rs.read_mtz(offline["merged"])
    np.testing.assert_allclose(a["F"].to_numpy(), b.loc[a.index]["F"].to_numpy(), rtol=1e-4)
    status = json.loads(open(os.path.join(written["report"], "status.json")).read())
    assert status["phase"] == "finished" and status["steps"] == 20


def _press_ctrl_c(messages, when):
    """A log function that keeps the messages and sends this process SIGINT after each message starting with ``when``."""
    def log(message):
        messages.append(message)
        if message.startswith(when):
            os.kill(os.getpid(), signal.SIGINT)
    return log


def test_ctrl_c_finishes_a_live_merge_with_the_decay_and_a_second_stops_it(tmp_path, sim_files):
    clock = FakeClock()
    live = LiveSettings(timeout=1000.0, poll=0.1, steps_per_round=10)
    messages = []
    settings = _decay_settings(tmp_path / "a" / "m", steps=1000, log=_press_ctrl_c(messages, "step 10:"))
    written = run_live([sim_files["stream"]], settings, live, clock=clock, sleep=Feeder([], clock).sleep)
    assert "finishing: 10 steps with the learning-rate decay" in messages  # half of 20 steps, lr_decay 0.5
    history = pd.read_csv(written["history"])
    assert history["step"].iloc[-1] == 20 and history["learning_rate"].iloc[-1] < 0.2 * settings.train.learning_rate
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # the handler is put back
    settings = _decay_settings(tmp_path / "b" / "m", steps=1000, log=_press_ctrl_c([], ("step 10:", "finishing")))
    with pytest.raises(KeyboardInterrupt):
        run_live([sim_files["stream"]], settings, live, clock=clock, sleep=Feeder([], clock).sleep)
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_live_merge_follows_a_folder_of_mtz_files_with_model_peaks(tmp_path):
    sim = simulate(n_images=60, seed=5, dmin=3.0)
    model = simulate_to_files(str(tmp_path / "model"), n_images=1, seed=5, dmin=3.0, formats=("stream",))["model"]
    folder = tmp_path / "incoming"
    folder.mkdir()
    clock = FakeClock()
    snapshots = []
    feeder = Feeder(mtz_pieces(sim.observations, str(folder), 3), clock,
                    watch=_snapshots(str(tmp_path / "out" / "m_live"), snapshots))
    live = LiveSettings(timeout=3.0, poll=1.0, steps_per_round=10, report_fraction=1.0, model_pdb=model,
                        elements="SE")
    written = run_live([str(folder)], _settings(tmp_path / "out" / "m", steps=10, anomalous=True), live,
                       clock=clock, sleep=feeder.sleep)
    feeder.join()
    status = json.loads(open(os.path.join(written["report"], "status.json")).read())
    assert status["images"] == 60
    # one report per round (training goes on between arrivals): the first on the first file, the last on all three
    trend = [point["images"] for point in status["trend"]]
    assert len(trend) == status["steps"] // 10 and trend == sorted(trend) and set(trend) == {20, 40, 60}
    assert trend[0] == 20 and trend[-1] == 60
    assert len(status["shells"]) == 10 and all(s["completeness"] > 0 for s in status["shells"])
    assert status["peaks"] and all(np.isfinite(h) for h in status["peaks"].values())
    assert os.path.getsize(os.path.join(written["report"], "peaks.png")) > 0
    with open(os.path.join(written["report"], "index.html")) as handle:
        page = handle.read()
    # the merge has ended: the page says so and no longer reloads
    assert "<b>Finished</b>" in page and "http-equiv" not in page and "data:image/png;base64," in page
    assert status["finished"] is True


def test_live_needs_dmin(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["mono", "--live", "--spacegroups", SPACEGROUP, "dHKL", str(tmp_path / "x.stream"), str(tmp_path / "o")])
    assert exit_info.value.code == 2
    assert "--dmin" in capsys.readouterr().err


def test_model_pdb_needs_anomalous(tmp_path, capsys):
    model = tmp_path / "m.pdb"
    model.write_text("CRYST1   79.000   79.000   38.000  90.00  90.00  90.00 P 43 21 2\nEND\n")
    with pytest.raises(SystemExit) as exit_info:
        main(["mono", "--live", "--dmin", "3", "--spacegroups", SPACEGROUP, "--model-pdb", str(model), "dHKL",
              str(tmp_path / "x.stream"), str(tmp_path / "o")])
    assert exit_info.value.code == 2
    assert "--anomalous" in capsys.readouterr().err


def test_live_merge_starts_from_a_saved_model(tmp_path, sim_files, offline_merge):
    first = offline_merge  # yesterday's merge
    folder = tmp_path / "incoming"
    folder.mkdir()
    shutil.copy(sim_files["mtz"], folder / "day2.mtz")
    settings = _settings(tmp_path / "day2" / "m", steps=10, model_in=first["model"])
    settings.table_options = TableOptions(spacegroup=SPACEGROUP)  # no --dmin: the model fixes the reflections
    clock = FakeClock()
    written = run_live([str(folder)], settings, LiveSettings(timeout=0.5, poll=0.1, steps_per_round=10),
                       clock=clock, sleep=Feeder([], clock).sleep)
    day1, day2 = rs.read_mtz(first["merged"]), rs.read_mtz(written["merged"])
    assert len(day2) == len(day1) > 0  # the same reflections, from the saved model's index
    status = json.loads(open(os.path.join(written["report"], "status.json")).read())
    assert status["images"] == 48 and status["steps"] == 10


def test_live_merge_follows_dials_stills_written_half_a_file_at_a_time(tmp_path):
    source = simulate_to_files(str(tmp_path / "sim"), n_images=30, seed=6, dmin=4.0, formats=("dials",),
                               block_size=10)["dials"]
    folder = tmp_path / "incoming"
    folder.mkdir()
    clock, snapshots, log = FakeClock(), [], []
    feeder = Feeder(dials_pieces(source, str(folder)), clock,
                    watch=_snapshots(str(tmp_path / "out" / "d_live"), snapshots))
    settings = _settings(tmp_path / "out" / "d", steps=10, keys=["dHKL", "XDET", "YDET", "delpsi"])
    settings.table_options = TableOptions(spacegroup=SPACEGROUP, dmin=4.0)
    settings.log = log.append
    live = LiveSettings(timeout=3.0, poll=1.0, steps_per_round=10, report_fraction=1.0)
    written = run_live([str(folder)], settings, live, clock=clock, sleep=feeder.sleep)
    feeder.join()
    inputs = json.loads((tmp_path / "out" / ".careless_online_cache" / "live_d" / "manifest.json").read_text())["inputs"]
    # every pair read once, whole: 10 images each, never the half that lay there unchanged for a while
    assert [(os.path.basename(i["path"]), i["n_images"]) for i in inputs] == [
        ("sim_000001.refl", 10), ("sim_000011.refl", 10), ("sim_000021.refl", 10)]
    assert any("skipped until it changes" in line for line in log)  # a half pair was looked at and left
    complete = LiveCache([source], settings.table_options, str(tmp_path / "complete"))
    assert complete.poll() == 0 and complete.poll() == 30  # the finished pairs, seen unchanged over one poll
    assert rs.read_mtz(written["merged"])["N"].sum() == complete.manifest.n_obs > 0
    final = json.loads(open(os.path.join(written["report"], "status.json")).read())
    trend = [point["images"] for point in final["trend"]]  # one report per round, as pairs came
    assert len(trend) == final["steps"] // 10 and trend == sorted(trend) and set(trend) == {10, 20, 30}
    images = [json.loads(text)["images"] for text, _ in snapshots]
    assert len(images) >= 2 and images[0] < 30 and images[-1] == 30 and images == sorted(images)
    assert len({png for _, png in snapshots}) == len(snapshots)  # the report changes as data arrive
