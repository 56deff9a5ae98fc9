"""A cache built by the workers of a multi-worker run together (careless_online.io.shared_cache).

The workers are played in turn in this process: each converts its share of
the files into its part, the chief assembles them; the result must be the
cache one process builds from the same files.
"""

import os

import numpy as np
import pytest

from careless_online.errors import InputError
from careless_online.io.cache import build_cache, input_groups
from careless_online.io.identity import cache_key, file_identity
from careless_online.io.manifest import CACHE_VERSION
from careless_online.io.shared_cache import Share, WaitTimeout, build_part, file_shares, part_folder
from careless_online.io.table import TableOptions

OPTIONS = TableOptions(spacegroup="P 43 21 2", dmin=4.0)


@pytest.fixture(scope="module")
def three_streams(tmp_path_factory):
    """Three small simulated streams of the same crystal (different images)."""
    from careless_online.simulate import simulate_to_files

    folder = tmp_path_factory.mktemp("parts")
    return [simulate_to_files(str(folder / f"s{i}"), formats=("stream",), n_images=n, seed=20 + i, dmin=4.0)["stream"]
            for i, n in enumerate((14, 9, 11))]


def _all_rows(manifest):
    shards = [manifest.load_shard(i) for i in range(len(manifest.shards))]
    return {c: np.concatenate([s[c] for s in shards]) for c in shards[0]}


def _shared(paths, folder, count):
    """Workers 1 .. count-1 convert their parts, then the chief assembles; every worker's manifest."""
    for rank in range(1, count):
        _part(paths, folder, rank, count)
    chief = build_cache(paths, OPTIONS, folder, shard_images=4, share=Share(0, count))
    others = [build_cache(paths, OPTIONS, folder, shard_images=4, share=Share(r, count)) for r in range(1, count)]
    return chief, others


def _part(paths, folder, rank, count):
    """Worker ``rank``'s part of the cache of ``paths`` under ``folder`` (what build_cache does before waiting)."""
    identities = [file_identity(p) for p in input_groups(paths)]
    key = cache_key(identities, OPTIONS.to_dict(), None, CACHE_VERSION)
    build_part(input_groups(paths), OPTIONS, None, os.path.join(folder, key), Share(rank, count), 4, 1, print)


def test_file_shares_tile_the_files_in_order_balanced_by_size():
    assert file_shares([10, 10, 10, 10], 2) == [(0, 2), (2, 4)]
    assert file_shares([30, 5, 5, 5, 5], 2) == [(0, 1), (1, 5)]
    assert file_shares([7], 2) == [(0, 1), (1, 1)]  # one file: the chief converts it
    assert file_shares([7], 3) == [(0, 0), (0, 1), (1, 1)]
    shares = file_shares([3, 1, 4, 1, 5, 9, 2, 6], 3)
    assert shares[0][0] == 0 and shares[-1][1] == 8 and all(a[1] == b[0] for a, b in zip(shares, shares[1:]))


def test_workers_parts_assemble_into_the_single_process_cache(three_streams, tmp_path):
    single = build_cache(three_streams, OPTIONS, str(tmp_path / "one"), shard_images=4)
    chief, (other,) = _shared(three_streams, str(tmp_path / "two"), 2)
    assert chief.n_images == single.n_images == 34 and chief.n_obs == single.n_obs
    assert other.path == chief.path and other.info == chief.info
    expected, got = _all_rows(single), _all_rows(chief)
    assert sorted(got) == sorted(expected)
    for column in expected:
        assert np.array_equal(got[column], expected[column]), column
    assert np.array_equal(chief.counts(), single.counts())
    assert [e["image_offset"] for e in chief.info["inputs"]] == [e["image_offset"] for e in single.info["inputs"]]
    assert [e["file_id"] for e in chief.info["inputs"]] == [0, 1, 2]
    for column in ("image_id", "I", "dHKL"):
        assert chief.column_stats(column) == pytest.approx(single.column_stats(column), rel=1e-12)
    assert chief.info["report"] == single.info["report"]
    assert [s["first_image"] for s in chief.shards] == [int(s["image_id"].min()) for s in
                                                         map(chief.load_shard, range(len(chief.shards)))]
    assert not (tmp_path / "two" / f"{chief.info['key']}.parts").exists()


def test_the_chief_stops_in_one_line_when_a_worker_brings_no_part(three_streams, tmp_path):
    with pytest.raises(WaitTimeout, match=r"waited 0.3 s for worker 1's share of the cache without any progress"):
        build_cache(three_streams, OPTIONS, str(tmp_path), shard_images=4, share=Share(0, 2, timeout=0.3))


def test_a_worker_waits_for_the_chief_manifest_and_gives_up_without_progress(three_streams, tmp_path):
    with pytest.raises(WaitTimeout, match="the chief's cache manifest"):
        build_cache(three_streams, OPTIONS, str(tmp_path), shard_images=4, share=Share(1, 2, timeout=0.3))


def test_a_workers_bad_input_is_reported_by_the_chief(three_streams, tmp_path):
    bad = tmp_path / "bad.stream"
    bad.write_text("CrystFEL stream format 2.3\nnot a chunk\n")
    paths = [three_streams[0], str(bad)]
    with pytest.raises(InputError, match="bad.stream"):
        _part(paths, str(tmp_path / "c"), 1, 2)
    with pytest.raises(InputError, match="worker 1: .*bad.stream"):
        build_cache(paths, OPTIONS, str(tmp_path / "c"), shard_images=4, share=Share(0, 2, timeout=5))


def test_share_is_validated():
    with pytest.raises(ValueError, match="rank"):
        Share(2, 2)
    with pytest.raises(ValueError, match="positive"):
        Share(0, 2, timeout=0)
    assert part_folder("/c/k", 1, 2) == "/c/k.parts/part-1-of-2"
