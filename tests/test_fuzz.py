"""Random byte damage of a valid stream and MTZ: a one-line InputError or a correct read, nothing else.

Each case damages a copy (flip bits, delete or insert bytes, truncate) with a
seeded generator and reads it through the reader and the observation table.
For streams, every chunk that survives byte for byte must be read exactly as
from the intact file, and a chunk that breaks the layout is refused.  Damage
that keeps the layout (a digit changed into another digit, a hit in text the
reader ignores) cannot be told from data in a stream, nor can a flipped bit
inside a number in an MTZ file (neither format carries a checksum); for
those the test asserts that nothing but a one-line InputError escapes and
that what is read is well formed.
"""

import time

import numpy as np
import pytest

from careless_online.errors import InputError
from careless_online.io import readers
from careless_online.io.table import TableOptions, build_index, make_observations

from conftest import SIM_SPACEGROUP

CASES = 150
SECONDS = 12.0  # per format; bounds the time on a slow or busy machine


def _damage(data, rng):
    data = bytearray(data)
    kind = rng.integers(4)
    where = int(rng.integers(len(data)))
    if kind == 0:  # flip a few bits
        for spot in rng.integers(len(data), size=int(rng.integers(1, 4))):
            data[spot] ^= 1 << int(rng.integers(8))
    elif kind == 1:  # delete a run of bytes
        del data[where:where + int(rng.integers(1, 64))]
    elif kind == 2:  # insert random bytes
        data[where:where] = rng.integers(256, size=int(rng.integers(1, 64)), dtype=np.uint8).tobytes()
    else:  # truncate
        del data[where:]
    return bytes(data)


def _read(path, index, options):
    raw = readers.read_file(path)
    table, _ = make_observations(raw, index, 0, 0, options)
    return raw, table


def _check_error(err, path):
    text = str(err)
    assert text.startswith(f"{path}: ") and "\n" not in text, text


def _fuzz(source, suffix, tmp_path, seed, check_read):
    options = TableOptions(spacegroup=SIM_SPACEGROUP)
    index = build_index(readers.read_file(source), options)
    original = open(source, "rb").read()
    rng = np.random.default_rng(seed)
    path = str(tmp_path / f"fuzz{suffix}")
    outcomes = {"error": 0, "read": 0}
    start = time.perf_counter()
    for case in range(CASES):
        if time.perf_counter() - start > SECONDS:
            break
        damaged = _damage(original, rng)
        open(path, "wb").write(damaged)
        try:
            raw, table = _read(path, index, options)
        except InputError as err:
            _check_error(err, path)
            outcomes["error"] += 1
        else:
            check_read(damaged, raw, table)
            outcomes["read"] += 1
    assert sum(outcomes.values()) >= 50, outcomes  # enough cases ran
    return outcomes


@pytest.fixture(scope="module")
def small_stream(sim_files, tmp_path_factory):
    """The first 8 chunks of the simulated stream."""
    text = open(sim_files["stream"], "rb").read()
    end = 0
    for _ in range(8):
        end = text.index(b"----- End chunk -----\n", end) + len(b"----- End chunk -----\n")
    path = tmp_path_factory.mktemp("fuzz") / "small.stream"
    path.write_bytes(text[:end])
    return str(path)


def _chunks(data):
    """Complete chunk texts of a stream's bytes."""
    pieces = data.split(b"----- Begin chunk -----")[1:]
    return [p for p in pieces if b"----- End chunk -----" in p]


def test_fuzzed_streams(small_stream, tmp_path):
    intact = readers.read_stream(small_stream)
    chunks = _chunks(open(small_stream, "rb").read())
    rows = {chunk: intact.data[intact.data["image"] == i].drop(columns=["image", "BATCH"]).reset_index(drop=True)
            for i, chunk in enumerate(chunks)}
    reference_cell = intact.cell

    def check(damaged, raw, table):
        if raw.cell is not None and raw.cell.parameters != reference_cell.parameters:
            return  # the header's target cell was hit; the chunks are checked above all else
        images = [frame.drop(columns=["image", "BATCH"]).reset_index(drop=True)
                  for _, frame in raw.data.groupby("image", sort=True)]
        survivors = [c for c in _chunks(damaged) if c in rows]
        assert len(images) >= len(survivors)
        for chunk in survivors:  # each chunk that survived is read exactly as before
            assert any(rows[chunk].equals(image) for image in images)
        assert not raw.damaged  # a read that got here refused nothing

    outcomes = _fuzz(small_stream, ".stream", tmp_path, seed=14, check_read=check)
    assert outcomes["error"] > 0 and outcomes["read"] > 0


def test_fuzzed_mtz(sim_files, tmp_path):
    def check(damaged, raw, table):
        assert {"H", "K", "L", "I", "SigI", "image"} <= set(raw.data.columns)
        assert np.isfinite(table["I"].to_numpy()).all() and (table["SigI"].to_numpy() > 0).all()

    outcomes = _fuzz(sim_files["mtz"], ".mtz", tmp_path, seed=15, check_read=check)
    assert outcomes["error"] > 0
