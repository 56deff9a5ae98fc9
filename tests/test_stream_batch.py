"""A stream's ``BATCH`` in the cache is the crystal's position in its file, however the file was parsed."""

import numpy as np
import pytest

from careless_online.io.cache import build_cache
from careless_online.io.table import TableOptions
from careless_online.simulate import simulate_to_files

SG = "P 43 21 2"
N_IMAGES = 12


@pytest.fixture(scope="module")
def streams(tmp_path_factory):
    """Two small simulated streams (one crystal per chunk)."""
    folder = tmp_path_factory.mktemp("streams")
    return [simulate_to_files(str(folder / name), formats=("stream",), n_images=N_IMAGES, seed=seed,
                              dmin=5.0)["stream"] for name, seed in (("a", 1), ("b", 2))]


def image_batches(manifest):
    """``(image_id, BATCH)`` of every image of the cache, by image id."""
    ids, batches = [], []
    for i in range(len(manifest.shards)):
        part = manifest.load_shard(i, ["image_id", "BATCH"])
        image, first = np.unique(part["image_id"], return_index=True)
        ids.append(image)
        batches.append(part["BATCH"][first])
    ids, batches = np.concatenate(ids), np.concatenate(batches)
    order = np.argsort(ids)
    return ids[order], batches[order]


@pytest.mark.parametrize("workers", [1, 2])
def test_batch_is_the_crystal_position_across_blocks_and_workers(streams, tmp_path, workers):
    # shard_images=3: blocks of 3 chunks, so each file is parsed in 4 blocks (by worker processes when workers=2)
    manifest = build_cache(streams, TableOptions(spacegroup=SG), str(tmp_path / "cache"), shard_images=3,
                           workers=workers, log=lambda message: None)
    ids, batches = image_batches(manifest)
    for entry in manifest.info["inputs"]:
        start = entry["image_offset"]
        mine = (ids >= start) & (ids < start + entry["n_images"])
        assert mine.sum() == N_IMAGES
        position = ids[mine] - start
        np.testing.assert_array_equal(batches[mine], position)
        assert (np.diff(batches[mine]) > 0).all()
        assert batches[mine].max() == N_IMAGES - 1  # not restarted at 0 in each block of 3


def test_live_looks_number_a_stream_by_crystal_position(streams, tmp_path):
    from careless_online.io.live import LiveCache

    live = LiveCache([streams[0]], TableOptions(spacegroup=SG, dmin=5.0), str(tmp_path / "live"), shard_images=3,
                     max_images=3)
    while live.poll():  # four looks of one block of 3 crystals each
        pass
    ids, batches = image_batches(live.manifest)
    assert len(ids) == N_IMAGES
    np.testing.assert_array_equal(batches, ids)  # one file: image ids are the positions
