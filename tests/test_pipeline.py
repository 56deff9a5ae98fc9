"""The on-disk cache and the batches of whole images served from it."""

import itertools
import json
import os
import time

import numpy as np
import pytest

from careless_online.errors import InputError
from careless_online.io import readers
from careless_online.io.cache import build_cache, load_manifest
from careless_online.io.pipeline import ImageBatches, Standardizer, is_test_image
from careless_online.io.table import TableOptions

from conftest import SIM_IMAGES, SIM_SPACEGROUP

KEYS = ["dHKL", "XDET", "ewald_offset"]


def _shard_files(folder):
    return sorted(f for f in os.listdir(folder) if f.endswith(".npz"))


def _all_arrays(manifest, columns):
    parts = [manifest.load_shard(i, columns) for i in range(len(manifest.shards))]
    return {c: np.concatenate([p[c] for p in parts]) for c in columns}


def test_cache_contents(sim_manifest, sim_files):
    m = sim_manifest
    raw = readers.read_file(sim_files["stream"])
    assert m.n_images == SIM_IMAGES
    assert 0 < m.n_obs <= len(raw.data)
    assert len(m.shards) == SIM_IMAGES // 8
    assert m.counts().sum() == m.n_obs
    seen = set()
    for i, record in enumerate(m.shards):
        ids = m.load_shard(i, ["image_id"])["image_id"]
        assert np.all(np.diff(ids) >= 0)  # sorted by image
        assert record["n_obs"] == len(ids) and record["n_images"] == len(np.unique(ids)) <= 8
        assert not seen & set(ids)  # no image in two shards
        seen |= set(ids)
    assert seen == set(range(SIM_IMAGES))
    arrays = _all_arrays(m, ["refl_id", "I"])
    assert np.array_equal(np.bincount(arrays["refl_id"], minlength=len(m.index)), m.counts())
    mean, std = m.column_stats("I")
    assert mean == pytest.approx(arrays["I"].mean(), rel=1e-5)
    assert std == pytest.approx(arrays["I"].std(), rel=1e-4)
    assert load_manifest(m.path).info == json.load(open(os.path.join(m.path, "manifest.json")))


def test_mtz_cache_is_sharded_by_images(sim_files, tmp_path):
    m = build_cache([sim_files["mtz"]], TableOptions(), str(tmp_path), shard_images=10)
    assert [s["n_images"] for s in m.shards] == [10, 10, 10, 10, 8]
    assert m.counts().sum() == m.n_obs


def test_cache_reuse_and_invalidation(sim_files, tmp_path):
    options = TableOptions(spacegroup=SIM_SPACEGROUP)
    messages = []
    t0 = time.perf_counter()
    first = build_cache([sim_files["stream"]], options, str(tmp_path), shard_images=16)
    t1 = time.perf_counter()
    mtimes = {f: os.stat(os.path.join(first.path, f)).st_mtime_ns for f in _shard_files(first.path)}
    second = build_cache([sim_files["stream"]], options, str(tmp_path), shard_images=16, log=messages.append)
    t2 = time.perf_counter()
    assert second.path == first.path and second.info == json.loads(json.dumps(first.info))
    assert any("reusing" in m for m in messages)
    assert t2 - t1 < t1 - t0
    assert {f: os.stat(os.path.join(first.path, f)).st_mtime_ns for f in _shard_files(first.path)} == mtimes
    other = build_cache([sim_files["stream"]], TableOptions(spacegroup=SIM_SPACEGROUP, dmin=4.0),
                        str(tmp_path), shard_images=16)
    assert other.path != first.path
    assert other.index.dmin == 4.0 and len(other.index) < len(first.index) and other.n_obs < first.n_obs
    assert sorted(os.listdir(tmp_path)) == sorted([os.path.basename(first.path), os.path.basename(other.path)])


def test_parallel_stream_parsing_gives_the_same_cache(sim_files, tmp_path, monkeypatch):
    from careless_online.io import convert, parallel

    monkeypatch.setattr(parallel, "PARALLEL_MIN_BYTES", 0)
    monkeypatch.setattr(convert, "STREAM_BLOCK_CHUNKS", 7)  # many blocks, uneven against shards
    monkeypatch.setattr(convert.RepeatFilter, "drop", lambda self, table: (table, 0, 0, 0))  # the copy repeats
    options = TableOptions(spacegroup=SIM_SPACEGROUP, anomalous=True)
    serial = build_cache([sim_files["stream"]], options, str(tmp_path / "serial"), shard_images=16, workers=1)
    copy = tmp_path / "copy.stream"
    copy.write_bytes(open(sim_files["stream"], "rb").read() + b"\n")  # not the same contents
    parallel = build_cache([sim_files["stream"], str(copy)], options, str(tmp_path / "parallel"),
                           shard_images=16, workers=2)
    assert parallel.n_images == 2 * serial.n_images and parallel.n_obs == 2 * serial.n_obs
    columns = serial.columns
    a, b = _all_arrays(serial, columns), _all_arrays(parallel, columns)
    half = serial.n_obs
    for c in columns:
        if c == "image_id":
            assert np.array_equal(b[c][:half], a[c]) and np.array_equal(b[c][half:], a[c] + serial.n_images)
        elif c == "file_id":
            assert set(b[c][half:]) == {1}
        else:
            assert np.array_equal(b[c][:half], a[c]) and np.array_equal(b[c][half:], a[c]), c


@pytest.fixture(scope="module")
def standardizer(sim_manifest):
    return Standardizer.fit(sim_manifest, KEYS)


def _check_whole_images(batch, sizes):
    ids, counts = np.unique(batch["image_id"], return_counts=True)
    assert len(ids) == batch["n_images"]
    assert all(sizes[i] == c for i, c in zip(ids, counts))  # every row of each image
    # 'image' numbers the images of the batch 0..n-1, constant within an image
    assert np.array_equal(np.unique(batch["image"]), np.arange(batch["n_images"]))
    for i in range(batch["n_images"]):
        assert len(np.unique(batch["image_id"][batch["image"] == i])) == 1


def test_training_epoch(sim_manifest, standardizer):
    sizes = dict(zip(*np.unique(_all_arrays(sim_manifest, ["image_id"])["image_id"], return_counts=True)))
    train = ImageBatches(sim_manifest, standardizer, batch_images=5, test_fraction=0.25, seed=3, shard_window=2)
    test = ImageBatches(sim_manifest, standardizer, batch_images=5, test_fraction=0.25, seed=3,
                        split="test", shuffle=False)
    epochs = []
    for e in range(2):
        batches = list(train.epoch(e))
        assert len(batches) == train.steps_per_epoch
        assert all(b["n_images"] == 5 for b in batches[:-1]) and 1 <= batches[-1]["n_images"] <= 5
        for b in batches:
            _check_whole_images(b, sizes)
        order = np.concatenate([np.unique(b["image_id"]) for b in batches])
        assert len(order) == len(set(order)) == train.n_images  # each train image exactly once
        epochs.append([sorted(set(b["image_id"])) for b in batches])
    assert epochs[0] != epochs[1]  # reshuffled each epoch
    test_ids = np.concatenate([np.unique(b["image_id"]) for b in test.epoch()])
    train_ids = set(order)
    assert not train_ids & set(test_ids)
    assert train_ids | set(test_ids) == set(range(SIM_IMAGES))
    assert test.n_images == len(test_ids) > 0
    assert np.array_equal(test_ids, np.flatnonzero(is_test_image(np.arange(SIM_IMAGES), 0.25, 3)))


@pytest.mark.parametrize("fraction", [0.0, 0.1, 0.3])
def test_split_fraction(fraction):
    ids = np.arange(5000)
    flags = is_test_image(ids, fraction, seed=11)
    assert abs(flags.mean() - fraction) < 0.02
    assert np.array_equal(flags, is_test_image(ids, fraction, seed=11))  # deterministic
    assert not np.array_equal(flags, is_test_image(ids, fraction, seed=12)) or fraction == 0
    # a larger fraction holds out a superset (images never move from test to train)
    assert not (flags & ~is_test_image(ids, fraction + 0.05, seed=11)).any()


def _same(a, b):
    return a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize("start", [0, 3, 9])
def test_resume_is_exact(sim_manifest, standardizer, start):
    batches = ImageBatches(sim_manifest, standardizer, batch_images=4, test_fraction=0.1, seed=5, shard_window=2)
    steps = batches.steps_per_epoch
    assert steps == int(np.ceil(batches.n_images / 4)) > start
    n = 2 * steps - start + 2  # runs over an epoch boundary
    reference = list(itertools.islice(batches.batches(0), start + n))[start:]
    resumed = list(itertools.islice(batches.batches(start), n))
    assert all(_same(a, b) for a, b in zip(reference, resumed)) and len(resumed) == n


def test_dataset_tensors(sim_manifest, standardizer):
    import tensorflow as tf

    batches = ImageBatches(sim_manifest, standardizer, batch_images=4, seed=5)
    expected = {"refl_id": tf.int32, "image": tf.int32, "n_images": tf.int32, "I": tf.float32,
                "SigI": tf.float32, "meta": tf.float32, "image_id": tf.int32, "file_id": tf.int32,
                "dataset": tf.int32, "ewald_offset": tf.float32}  # the raw offsets: the cache has the column
    first = next(iter(batches.batches(0)))
    for batch in batches.dataset(start_step=0).take(1):
        assert {k: v.dtype for k, v in batch.items()} == expected
        n = batch["I"].shape[0]
        assert n > 0 and batch["n_images"].shape == ()
        assert batch["meta"].shape == (n, len(KEYS))
        for k in ("refl_id", "image", "SigI", "image_id", "file_id"):
            assert batch[k].shape == (n,)
    assert np.array_equal(batch["refl_id"].numpy(), first["refl_id"])
    assert 0 < np.abs(first["ewald_offset"]).max() < 0.05  # in 1/A as the file gives it, not standardized
    evaluation = list(batches.dataset())
    assert len(evaluation) == batches.steps_per_epoch


def test_standardized_metadata(sim_manifest, standardizer):
    view = ImageBatches(sim_manifest, standardizer, batch_images=7, split="all", shuffle=False)
    meta = np.concatenate([b["meta"] for b in view.epoch()])
    assert meta.shape == (sim_manifest.n_obs, len(KEYS))
    np.testing.assert_allclose(meta.mean(axis=0), 0.0, atol=1e-4)
    np.testing.assert_allclose(meta.std(axis=0), 1.0, atol=1e-4)
    # dHKL enters as 1/d^2
    arrays = _all_arrays(sim_manifest, ["dHKL"])
    inv = 1.0 / arrays["dHKL"].astype(float) ** 2
    np.testing.assert_allclose(meta[:, 0], (inv - inv.mean()) / inv.std(), atol=1e-4)
    # the saved state reproduces the transform
    again = Standardizer.from_config(json.loads(json.dumps(standardizer.get_config())))
    np.testing.assert_array_equal(again.transform(sim_manifest.load_shard(0)), standardizer.transform(
        sim_manifest.load_shard(0)))
    identity = Standardizer.fit(sim_manifest, ["XDET"], enabled=False)
    raw = sim_manifest.load_shard(0)
    np.testing.assert_allclose(identity.transform(raw)[:, 0], raw["XDET"])


def test_unknown_metadata_key(sim_manifest):
    with pytest.raises(InputError, match="NOT_A_COLUMN") as err:
        Standardizer.fit(sim_manifest, ["dHKL", "NOT_A_COLUMN"])
    assert "\n" not in str(err.value)
