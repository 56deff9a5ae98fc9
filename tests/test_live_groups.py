"""Live mode with several datasets: images grouped by source, split file or column while they arrive.

Data arrive from a background writer, one piece each time the merger waits
(``live_feed``), so every round sees the same data on any machine.
"""

import dataclasses
import json
import os

import keras
import numpy as np
import pytest
import reciprocalspaceship as rs

from careless_online.errors import InputError
from careless_online.io.groups import GroupSpec
from careless_online.io.layout import to_internal
from careless_online.io.live import LiveCache
from careless_online.io.live_groups import LiveDatasets
from careless_online.io.table import TableOptions
from careless_online.simulate import simulate
from careless_online.simulate.states import StateChange, simulate_states, write_states
from careless_online.training.live import LiveSettings, run_live
from careless_online.training.loop import TrainConfig
from careless_online.training.merge import MergeSettings, run_merge
from live_feed import FakeClock, Feeder, mtz_pieces, stream_pieces

SG = "P 43 21 2"
KEYS = ["dHKL", "XDET", "YDET", "ewald_offset"]
OPTIONS = TableOptions(spacegroup=SG, dmin=5.0)


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    """A tiny dark/light pair (24 stills each to 5 Å, 6 atoms moved) as two streams, with its model."""
    folder = tmp_path_factory.mktemp("live_pair")
    states = simulate_states(n_images=24, seed=3, dmin=5.0, n_atoms=200,
                             change=StateChange(n_changed=6, shift=1.5, occupancy=1.0))
    paths = write_states(states, str(folder / "tr"))
    return {"dark": paths["dark"]["stream"], "light": paths["light"]["stream"], "model": paths["dark"]["model"]}


def _settings(base, steps, groups, **options):
    train = TrainConfig(steps=steps, eval_every=10, progress=False, lr_decay=0.0, checkpoint_every=None)
    return MergeSettings(base=str(base), metadata_keys=list(KEYS), table_options=OPTIONS, train=train,
                         model_options=dict(d_model=16, **options), batch_images=8, predictions=False,
                         log=lambda message: None, groups=groups)


def _poll_twice(cache):
    """Files are ready once they stayed unchanged over one poll."""
    return cache.poll() + cache.poll()


def test_separate_files_makes_one_dataset_per_live_source(tmp_path):
    sim = simulate(n_images=12, seed=2, dmin=5.0)
    dark, light = tmp_path / "dark", tmp_path / "light"
    dark.mkdir(), light.mkdir()
    dark_pieces, light_pieces = mtz_pieces(sim.observations, str(dark), 2), mtz_pieces(sim.observations, str(light), 2)
    cache = LiveCache([str(dark), str(light)], OPTIONS, str(tmp_path / "cache"))
    grouping = LiveDatasets(GroupSpec(by_file=True), cache.paths)
    dark_pieces[0](), light_pieces[0]()
    assert _poll_twice(cache) == 12
    assert grouping.update(cache.manifest).image_counts().tolist() == [6, 6]
    light_pieces[1]()  # light's second file arrives first: image ids of the sources interleave
    _poll_twice(cache)
    dark_pieces[1]()
    _poll_twice(cache)
    datasets = grouping.update(cache.manifest)
    assert datasets.names == ["dark", "light"] and datasets.image_counts().tolist() == [12, 12]
    for record in cache.manifest.info["inputs"]:  # files of the same name in both folders: told apart by folder
        folder = os.path.basename(os.path.dirname(record["path"]))
        for first, count in record["segments"]:
            assert set(datasets.of_image[first:first + count]) == {datasets.names.index(folder)}


def test_a_manifest_taken_before_a_look_does_not_grow(tmp_path):
    # the report reads a round's observations after the next look: they must stay the round's
    sim = simulate(n_images=12, seed=2, dmin=5.0)
    pieces = mtz_pieces(sim.observations, str(tmp_path), 2)
    pieces[0]()
    cache = LiveCache([str(tmp_path / "*.mtz")], OPTIONS, str(tmp_path / "cache"))
    _poll_twice(cache)
    before = cache.manifest
    pieces[1]()
    assert _poll_twice(cache) == 6
    assert before.n_images == 6 and sum(s["n_images"] for s in before.shards) == 6
    assert [len(r["segments"]) for r in before.info["inputs"]] == [1]


def test_split_file_is_read_again_when_it_grows(tmp_path, pair):
    split = tmp_path / "split.txt"
    split.write_text(f"{os.path.basename(pair['dark'])} * dark\n{pair['light']} 0 light\n")
    log = []
    cache = LiveCache([pair["dark"], pair["light"]], OPTIONS, str(tmp_path / "cache"))
    grouping = LiveDatasets(GroupSpec(split_file=str(split)), cache.paths, log=log.append)
    cache.poll()
    assert grouping.update(cache.manifest).image_counts().tolist() == [24, 1]
    with open(split, "a") as handle:  # the beamline appends the next images' lines, and a state not known at start
        handle.write(f"{pair['light']} 1 light\n{pair['light']} 2 light\n{pair['light']} 3 pump_2ps\n")
    datasets = grouping.update(cache.manifest)
    assert datasets.names == ["dark", "light"] and datasets.image_counts().tolist() == [24, 3]
    assert (datasets.of_image == -1).sum() == 21  # light images not listed (or of the unknown state): left out
    assert sum("pump_2ps" in line for line in log) == 1
    grouping.update(cache.manifest)
    assert sum("pump_2ps" in line for line in log) == 1  # warned once
    with open(split, "a") as handle:
        handle.write(f"{pair['light']} 1 dark\n")
    with pytest.raises(InputError, match="given two datasets"):
        grouping.update(cache.manifest)


def test_groups_column_fixes_the_datasets_at_the_first_look(tmp_path):
    sim = simulate(n_images=12, seed=2, dmin=5.0)
    folder = tmp_path / "runs"
    folder.mkdir()
    pieces = mtz_pieces(sim.observations, str(folder), 3)
    pieces[0](), pieces[1]()
    log = []
    cache = LiveCache([str(folder)], OPTIONS, str(tmp_path / "cache"))
    grouping = LiveDatasets(GroupSpec(key="file_id"), cache.paths, log=log.append)
    _poll_twice(cache)
    assert grouping.update(cache.manifest).names == ["file_id=0", "file_id=1"]
    pieces[2]()
    _poll_twice(cache)
    datasets = grouping.update(cache.manifest)
    assert datasets.n == 2 and datasets.image_counts().tolist() == [4, 4] and (datasets.of_image == -1).sum() == 4
    assert any("file_id=2 was not in the data when the live merge started" in line for line in log)


def test_live_merge_of_two_growing_streams_writes_each_dataset_every_round(tmp_path, pair):
    dark, light = str(tmp_path / "dark.stream"), str(tmp_path / "light.stream")
    pieces = [p for two in zip(stream_pieces(open(pair["dark"]).read(), dark, 2),
                               stream_pieces(open(pair["light"]).read(), light, 2)) for p in two]
    out = tmp_path / "out"
    sizes = []

    def watch():  # the observations merged into each dataset's MTZ after every round
        if (out / "tr_1.mtz").exists():
            counts = tuple(int(rs.read_mtz(str(out / f"tr_{d}.mtz"))["N"].sum()) for d in (0, 1))
            if not sizes or sizes[-1] != counts:
                sizes.append(counts)

    clock = FakeClock()
    feeder = Feeder(pieces, clock, watch=watch)
    settings = _settings(out / "tr", 20, GroupSpec(by_file=True), double_wilson_parents=[None, 0],
                         double_wilson_r=[0.0, 0.9])
    live = LiveSettings(timeout=3.0, poll=1.0, steps_per_round=10, report_fraction=1.0, model_pdb=pair["model"])
    written = run_live([dark, light], settings, live, clock=clock, sleep=feeder.sleep)
    feeder.join()
    assert sorted(k for k in written if k.startswith("merged")) == ["merged_0", "merged_1"]
    assert len(sizes) >= 3 and all(a <= b for a, b in zip(sizes, sizes[1:]))  # both grow as the data arrive
    assert sizes[0][1] < sizes[-1][1]
    final = [rs.read_mtz(written[f"merged_{d}"]) for d in (0, 1)]
    per_stream = [_observations(pair[state], tmp_path / state) for state in ("dark", "light")]
    assert [int(t["N"].sum()) for t in final] == per_stream  # each dataset holds exactly its stream's observations
    status = json.loads(open(os.path.join(written["report"], "status.json")).read())
    assert status["images"] == 48 and [d["images"] for d in status["datasets"]] == [24, 24]
    assert status["differences"][0]["dataset"] == 1 and status["differences"][0]["peaks"]
    for d in (0, 1):
        assert os.path.exists(os.path.join(written["report"], f"dataset_{d}", "index.html"))


def _observations(stream, folder):
    """Observations of a whole stream."""
    cache = LiveCache([stream], OPTIONS, str(folder))
    cache.poll()
    return cache.manifest.n_obs


@pytest.fixture(scope="module")
def offline_joint(pair, tmp_path_factory):
    """An offline joint merge of the pair (``--separate-files``): 20 steps, constant learning rate."""
    keras.utils.set_random_seed(11)
    base = tmp_path_factory.mktemp("offline_joint") / "j"
    settings = dataclasses.replace(_settings(base, 20, GroupSpec(by_file=True)), calibrate_sigf=False)  # as live
    return run_merge([pair["dark"], pair["light"]], settings)


def test_live_merge_of_finished_streams_equals_the_offline_joint_merge(tmp_path, pair, offline_joint):
    keras.utils.set_random_seed(11)
    clock = FakeClock()
    written = run_live([pair["dark"], pair["light"]], _settings(tmp_path / "l", 20, GroupSpec(by_file=True)),
                       LiveSettings(timeout=0.5, poll=0.1, steps_per_round=10), clock=clock,
                       sleep=Feeder([], clock).sleep)
    for d in (0, 1):
        a, b = (to_internal(rs.read_mtz(p)) for p in (written[f"merged_{d}"], offline_joint[f"merged_{d}"]))
        assert len(a) == len(b) > 0
        b = b.loc[a.index]
        assert (a["N"].to_numpy() == b["N"].to_numpy()).all()
        np.testing.assert_allclose(a["F"].to_numpy(), b["F"].to_numpy(), rtol=1e-4)
        np.testing.assert_allclose(a["SIGF"].to_numpy(), b["SIGF"].to_numpy(), rtol=1e-4)


def test_live_merge_of_several_datasets_starts_from_a_saved_joint_model(tmp_path, pair, offline_joint):
    clock = FakeClock()
    settings = _settings(tmp_path / "day2" / "tr", 10, GroupSpec(by_file=True))
    settings.model_in = offline_joint["model"]  # yesterday's joint merge of the two states
    written = run_live([pair["dark"], pair["light"]], settings, LiveSettings(timeout=0.5, poll=0.1, steps_per_round=10),
                       clock=clock, sleep=Feeder([], clock).sleep)
    for d in (0, 1):
        assert len(rs.read_mtz(written[f"merged_{d}"])) == len(rs.read_mtz(offline_joint[f"merged_{d}"])) > 0
    one = _settings(tmp_path / "one" / "m", 10, GroupSpec())
    one.model_in = offline_joint["model"]
    with pytest.raises(InputError, match="the model merges 2 dataset"):
        run_live([pair["dark"]], one, LiveSettings(timeout=0.5, poll=0.1, steps_per_round=10), clock=clock,
                 sleep=Feeder([], clock).sleep)
