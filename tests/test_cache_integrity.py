"""The cache follows its inputs and options, and never serves damaged shards as data."""

import errno
import os

import numpy as np
import pytest

from careless_online.errors import InputError
from careless_online.io import reflections, shards
from careless_online.io.cache import build_cache, load_manifest
from careless_online.io.table import TableOptions

from conftest import SIM_SPACEGROUP

OPTIONS = TableOptions(spacegroup=SIM_SPACEGROUP)


@pytest.fixture
def stream(sim_files, tmp_path):
    """A private copy of the simulated stream (tests change it)."""
    path = tmp_path / "in.stream"
    path.write_bytes(open(sim_files["stream"], "rb").read())
    return str(path)


def _all(manifest, column="I"):
    return np.concatenate([manifest.load_shard(i, [column])[column] for i in range(len(manifest.shards))])


def test_changed_contents_with_same_size_and_time_rebuild(stream, tmp_path):
    first = build_cache([stream], OPTIONS, str(tmp_path / "c"), shard_images=16)
    stat = os.stat(stream)
    text = open(stream, "rb").read()
    changed = text.replace(b"Image serial number: 1\n", b"Image serial number: 9\n", 1)
    assert changed != text and len(changed) == len(text)
    open(stream, "wb").write(changed)
    os.utime(stream, ns=(stat.st_atime_ns, stat.st_mtime_ns))  # same size, same time stamp
    second = build_cache([stream], OPTIONS, str(tmp_path / "c"), shard_images=16)
    assert second.path != first.path
    # an option that shapes the table gives another cache too
    third = build_cache([stream], TableOptions(spacegroup=SIM_SPACEGROUP, isigi_cutoff=1.0),
                        str(tmp_path / "c"), shard_images=16)
    assert third.path not in (first.path, second.path) and third.n_obs < second.n_obs


def test_touched_input_rebuilds(stream, tmp_path):
    first = build_cache([stream], OPTIONS, str(tmp_path / "c"), shard_images=16)
    os.utime(stream, ns=(0, os.stat(stream).st_mtime_ns + 10**9))
    assert build_cache([stream], OPTIONS, str(tmp_path / "c"), shard_images=16).path != first.path


@pytest.mark.parametrize("damage", ["truncate", "flip", "delete"])
def test_damaged_shard_is_rebuilt_on_reuse(damage, stream, tmp_path):
    first = build_cache([stream], OPTIONS, str(tmp_path / "c"), shard_images=16)
    expected = _all(first)
    shard = os.path.join(first.path, first.shards[1]["file"])
    data = bytearray(open(shard, "rb").read())
    if damage == "truncate":
        open(shard, "wb").write(data[: len(data) // 2])
    elif damage == "flip":
        data[len(data) // 2] ^= 0x10
        open(shard, "wb").write(data)
    else:
        os.remove(shard)
    messages = []
    again = build_cache([stream], OPTIONS, str(tmp_path / "c"), shard_images=16, log=messages.append)
    assert any("is damaged" in m and "rebuilding" in m for m in messages)
    assert again.path == first.path and np.array_equal(_all(again), expected)


def test_damaged_shard_is_reported_when_opened(stream, tmp_path):
    built = build_cache([stream], OPTIONS, str(tmp_path / "c"), shard_images=16)
    shard = os.path.join(built.path, built.shards[0]["file"])
    data = bytearray(open(shard, "rb").read())
    data[-30] ^= 0x01  # same size, one bit off
    open(shard, "wb").write(data)
    opened = load_manifest(built.path)
    with pytest.raises(InputError, match=r"cache shard shard_00000.npz is damaged \(checksum mismatch\)"):
        opened.load_shard(0)
    assert len(opened.load_shard(1)["I"])  # the intact ones still open


def test_manifest_records_size_and_checksum(stream, tmp_path):
    built = build_cache([stream], OPTIONS, str(tmp_path / "c"), shard_images=16)
    for record in built.shards:
        assert record["size"] == os.path.getsize(os.path.join(built.path, record["file"]))
        assert len(record["sha256"]) == 64
    identity = built.info["identities"][0]
    assert identity["size"] == os.path.getsize(stream) and len(identity["edges"]) == 64


def _no_space(*args, **kwargs):
    raise OSError(errno.ENOSPC, "No space left on device")


@pytest.mark.parametrize("target", ["shard", "manifest"])
def test_full_disk_leaves_previous_cache_and_no_partial_one(target, stream, sim_files, tmp_path, monkeypatch):
    cache_dir = tmp_path / "c"
    previous = build_cache([sim_files["mtz"]], TableOptions(), str(cache_dir), shard_images=16)
    before = sorted(os.listdir(cache_dir))
    real = shards.write_atomic

    def failing(path, data):
        if target == "shard" and path.endswith(".npz") and "00001" in path:
            _no_space()
        if target == "manifest" and path.endswith("manifest.json"):
            _no_space()
        return real(path, data)

    monkeypatch.setattr(shards, "write_atomic", failing)
    monkeypatch.setattr("careless_online.io.cache.write_atomic", failing)
    with pytest.raises(InputError) as err:
        build_cache([stream], OPTIONS, str(cache_dir), shard_images=16)
    message = str(err.value)
    assert message.startswith(f"{cache_dir}") and "no space left on the device" in message and "\n" not in message
    assert sorted(os.listdir(cache_dir)) == before  # nothing half-built
    assert np.array_equal(_all(load_manifest(previous.path)), _all(previous))


def test_full_disk_inside_numpy_is_the_same_error(stream, tmp_path, monkeypatch):
    monkeypatch.setattr(np, "savez", _no_space)
    with pytest.raises(InputError, match="no space left on the device"):
        build_cache([stream], OPTIONS, str(tmp_path / "c"), shard_images=16)
    assert os.listdir(tmp_path / "c") == []


def test_write_atomic_leaves_the_old_file_on_failure(tmp_path, monkeypatch):
    path = str(tmp_path / "f.json")
    shards.write_atomic(path, b"old")

    def broken_fsync(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", broken_fsync)
    with pytest.raises(OSError):
        shards.write_atomic(path, b"new")
    assert open(path, "rb").read() == b"old" and os.listdir(tmp_path) == ["f.json"]


def test_manifest_index_is_built_once(sim_manifest, monkeypatch):
    from careless_online.io.cache import Manifest

    manifest = Manifest(sim_manifest.path, sim_manifest.info)
    calls = []
    original = reflections.ReflectionIndex.from_config.__func__
    monkeypatch.setattr(reflections.ReflectionIndex, "from_config",
                        classmethod(lambda cls, config: calls.append(1) or original(cls, config)))
    assert manifest.index is manifest.index and len(calls) == 1


def test_centric_flags_are_computed_once(sim_manifest, monkeypatch):
    index = reflections.ReflectionIndex.from_config(sim_manifest.info["index"])
    index = reflections.ReflectionIndex.from_cell(index.cell, index.spacegroup, index.dmin, anomalous=True)
    calls = []
    original = reflections.rs.utils.is_centric
    monkeypatch.setattr(reflections.rs.utils, "is_centric", lambda *a: calls.append(1) or original(*a))
    hkl = index.hkl[:50]
    for _ in range(3):
        ids = index.lookup(hkl, np.zeros(len(hkl), dtype=bool))  # minus mates: centric ones retry
        assert np.all(ids >= 0)
    assert len(calls) == 1
