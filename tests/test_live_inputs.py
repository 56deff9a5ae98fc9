"""Live inputs: folders and glob patterns of files that arrive complete, and image ids."""

import re
import shutil

import numpy as np
import pytest
import reciprocalspaceship as rs

from careless_online.errors import InputError
from careless_online.io.arrivals import Arrivals
from careless_online.io.live import LiveCache
from careless_online.io.table import TableOptions
from careless_online.simulate import simulate_to_files


def _image_ids(manifest):
    return np.concatenate([manifest.load_shard(i, ["image_id"])["image_id"] for i in range(len(manifest.shards))])


def test_half_written_dials_pair_is_not_read_until_complete(tmp_path, data_dir):
    folder = tmp_path / "incoming"
    folder.mkdir()
    refl = (data_dir / "stills.refl").read_bytes()
    cache = LiveCache([str(folder)], TableOptions(dmin=2.0), str(tmp_path / "cache"))
    (folder / "run1.refl").write_bytes(refl)  # the reflections, but no experiment list yet
    assert cache.poll() == 0 and cache.poll() == 0
    shutil.copy(data_dir / "stills.expt", folder / "run1.expt")
    (folder / "run1.refl").write_bytes(refl[: len(refl) // 2])  # and the table rewritten, half done
    assert cache.poll() == 0  # changed since the last look
    assert cache.poll() == 0  # unchanged now, but unreadable: left until it changes
    assert cache.poll() == 0
    (folder / "run1.refl").write_bytes(refl)
    assert cache.poll() == 0  # complete, but not yet seen unchanged over a poll
    assert cache.poll() == 3
    assert cache.poll() == 0  # taken once
    assert cache.manifest.n_images == 3 and cache.manifest.n_obs > 0


def test_a_glob_pattern_is_searched_again_at_every_poll(tmp_path, data_dir):
    source = rs.read_mtz(str(data_dir / "hewl_rotation_unmerged.mtz"))
    cache = LiveCache([str(tmp_path / "run_*.mtz")], TableOptions(dmin=3.0), str(tmp_path / "cache"))
    assert cache.poll() == 0
    source.write_mtz(str(tmp_path / "run_1.mtz"))
    source.write_mtz(str(tmp_path / "other.mtz"))  # not matched by the pattern
    assert cache.poll() == 0
    assert cache.poll() == 3
    source.write_mtz(str(tmp_path / "run_2.mtz"))
    cache.poll()
    assert cache.poll() == 3
    inputs = cache.manifest.info["inputs"]
    assert [entry["path"].rsplit("/", 1)[1] for entry in inputs] == ["run_1.mtz", "run_2.mtz"]
    assert [entry["segments"] for entry in inputs] == [[[0, 3]], [[3, 3]]]


def test_a_backlog_is_converted_a_share_per_look(tmp_path, data_dir):
    source = rs.read_mtz(str(data_dir / "hewl_rotation_unmerged.mtz"))  # 3 images per file
    for number in range(3):
        source.write_mtz(str(tmp_path / f"run_{number}.mtz"))
    cache = LiveCache([str(tmp_path)], TableOptions(dmin=3.0), str(tmp_path / "cache"), max_images=3)
    assert cache.poll() == 0  # first seen
    looks = [(cache.poll(), cache.backlog["files"]) for _ in range(4)]
    assert looks == [(3, 2), (3, 1), (3, 0), (0, 0)]
    paths = simulate_to_files(str(tmp_path / "s"), n_images=12, seed=2, dmin=6.0, formats=("stream",))
    stream = LiveCache([paths["stream"]], TableOptions(spacegroup="P 43 21 2", dmin=6.0), str(tmp_path / "c2"),
                       shard_images=4, max_images=4)
    looks = [(stream.poll(), stream.backlog["stream_chunks"]) for _ in range(4)]
    assert looks == [(4, 8), (4, 4), (4, 0), (0, 0)]
    unlimited = LiveCache([paths["stream"]], TableOptions(spacegroup="P 43 21 2", dmin=6.0), str(tmp_path / "c3"),
                          shard_images=4, max_images=None)
    assert unlimited.poll() == 12


def test_a_stream_is_followed_from_its_first_byte(tmp_path):
    text = open(simulate_to_files(str(tmp_path / "s"), n_images=4, seed=2, dmin=6.0, formats=("stream",))["stream"]).read()
    growing = tmp_path / "grow.stream"
    cache = LiveCache([str(growing)], TableOptions(spacegroup="P 43 21 2", dmin=6.0), str(tmp_path / "cache"))
    assert cache.poll() == 0  # not there yet
    growing.write_text("")  # indexamajig has opened it
    assert cache.poll() == 0
    growing.write_text(text[:15])  # the magic line half-written
    assert cache.poll() == 0
    growing.write_text(text)
    assert cache.poll() == 4
    other = tmp_path / "other.stream"
    other.write_text("not a stream\n" * 400)  # 5 kB without the magic line: refused, not waited for
    with pytest.raises(InputError, match="not a CrystFEL stream"):
        LiveCache([str(other)], TableOptions(spacegroup="P 43 21 2", dmin=6.0), str(tmp_path / "c2")).poll()


def test_arrivals_refuse_an_unknown_file_name():
    with pytest.raises(InputError):
        Arrivals(["data.txt"])


def _one_chunk_streams(folder, tmp_path, n_files):
    """``n_files`` CrystFEL streams of one chunk each, cut from a small simulated stream.

    Each file's photon energy differs (by 1 meV per file), so that no image repeats an earlier one (repeats are
    dropped, :mod:`careless_online.io.duplicates`).
    """
    text = open(simulate_to_files(str(tmp_path / "sim"), n_images=10, seed=1, formats=("stream",),
                                  dmin=6.0)["stream"]).read()
    header = text[: text.index("----- Begin chunk -----")]
    chunks = re.findall(r"----- Begin chunk -----.*?----- End chunk -----\n", text, re.S)
    for number in range(n_files):
        chunk = re.sub(r"photon_energy_eV = (\S+)", lambda m: f"photon_energy_eV = {float(m[1]) + 1e-3 * number}",
                       chunks[number % len(chunks)])
        (folder / f"img_{number:04d}.stream").write_text(header + chunk)


def test_image_ids_stay_unique_and_in_range_for_1000_files(tmp_path):
    folder = tmp_path / "incoming"
    folder.mkdir()
    _one_chunk_streams(folder, tmp_path, 1000)
    cache = LiveCache([str(folder)], TableOptions(spacegroup="P 43 21 2", dmin=6.0), str(tmp_path / "cache"),
                      shard_images=250)
    assert cache.poll() == 1000
    ids = _image_ids(cache.manifest)
    assert ids.dtype == np.int32
    assert np.array_equal(np.unique(ids), np.arange(1000))  # unique, in range, no gaps
    inputs = cache.manifest.info["inputs"]
    assert [entry["segments"] for entry in inputs] == [[[i, 1]] for i in range(1000)]
