"""Random damage of valid inputs: a one-line InputError or a correct read (and merge), nothing else.

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

import os
import re
import shutil
import time

import gemmi
import numpy as np
import pytest
import reciprocalspaceship as rs

from careless_online.cli.main import main
from careless_online.errors import InputError
from careless_online.io import readers
from careless_online.io.table import TableOptions, build_index, make_observations
from careless_online.simulate import simulate_to_files

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


# ---- property-style fuzz of whole merges ------------------------------------------------------------------------
#
# Each case mutates a clean input (random byte edits, line endings changed, a chunk or image removed or repeated,
# one extreme number) and runs a quick merge (``--naive``: no training, so the merged values are a function of the
# observations alone).  Whatever the mutation, the command either refuses with one line (exit 2, no traceback) or
# exits 0 with a merge whose observation counts are explained by what was dropped (the merged N add up to the kept
# observations, kept + dropped = read, and read = the clean count minus what the mutation removed plus what it
# repeated) and whose F correlate with the clean merge's.

_KEPT = re.compile(r"(\d+) of (\d+) observations kept from (\d+) images(.*)")
_DROPPED = re.compile(r"(\d+) dropped \(")
EXTREMES = (4294967295.0, 1e6, 1e14, -1e9)
MERGE_CC = 0.9


def _naive_merge(path, out, capsys):
    """Run a naive merge of ``path``: ``(exit status, stderr lines, (kept, read, dropped) or None, merged or None)``."""
    capsys.readouterr()
    try:
        status = main(["mono", "--naive", "--spacegroups", SIM_SPACEGROUP, "--no-predictions",
                       "--disable-progress-bar", "--cache-dir", str(out) + "_cache", "dHKL", str(path), str(out)])
    except SystemExit as exit_info:
        status = exit_info.code
    captured = capsys.readouterr()
    found = _KEPT.search(captured.out)
    counts = None
    if found:
        dropped = sum(int(n) for n in _DROPPED.findall(found.group(4)))
        counts = (int(found.group(1)), int(found.group(2)), dropped)
    merged = rs.read_mtz(f"{out}_0.mtz") if status == 0 else None
    return status, captured.err.strip().splitlines(), counts, merged


def _stream_parts(data):
    first = data.index(b"----- Begin chunk -----")
    ends = [m.end() for m in re.finditer(rb"----- End chunk -----\r?\n", data)]
    return data[:first], [data[a:b] for a, b in zip([first] + ends[:-1], ends)]


def _observations_in(chunk):
    block = chunk.split(b"Reflections measured after indexing")[1].split(b"End of reflections")[0]
    return len(block.strip().splitlines()) - 1  # the column header


def _mutate_stream(data, kind, rng):
    """A mutated stream and the change of the observation count it causes (None: not known in advance)."""
    header, chunks = _stream_parts(data)
    pick = int(rng.integers(1, len(chunks)))
    if kind == "byte":
        return _damage(data, rng), None
    if kind == "remove":
        return header + b"".join(chunks[:pick] + chunks[pick + 1:]), -_observations_in(chunks[pick])
    if kind == "duplicate":
        return header + b"".join(chunks + [chunks[pick]]), _observations_in(chunks[pick])
    if kind == "crlf":  # the later chunks written with Windows line endings
        return header + b"".join(chunks[:pick]) + b"".join(chunks[pick:]).replace(b"\n", b"\r\n"), 0
    # one extreme intensity, its sigma kept
    lines = chunks[pick].split(b"\n")
    row = lines.index(b"   h    k    l          I   sigma(I)       peak background  fs/px  ss/px panel") + 1
    fields = lines[row].split()
    fields[3] = f"{float(rng.choice(EXTREMES)):.2f}".encode()
    lines[row] = b" ".join(fields)
    chunks[pick] = b"\n".join(lines)
    return header + b"".join(chunks), 0


def _mutate_mtz(path, target, kind, rng):
    """Write a mutated copy of an unmerged MTZ; returns the change of the observation count (None: unknown)."""
    if kind == "byte":
        open(target, "wb").write(_damage(open(path, "rb").read(), rng))
        return None
    mtz = gemmi.read_mtz_file(str(path))
    rows = np.array(mtz, copy=True)
    labels = mtz.column_labels()
    batch = rows[:, labels.index("BATCH")]
    if kind == "remove":  # one image's rows removed
        gone = batch == rng.choice(np.unique(batch))
        rows, change = rows[~gone], -int(gone.sum())
    else:
        rows[int(rng.integers(len(rows))), labels.index("I")] = float(rng.choice(EXTREMES))
        change = 0
    mtz.set_data(rows)
    mtz.write_to_file(str(target))
    return change


@pytest.fixture(scope="module")
def fuzz_inputs(small_stream, sim_files, tmp_path_factory):
    """The clean inputs: the small stream, the simulated MTZ and a DIALS pair of 8 stills."""
    folder = tmp_path_factory.mktemp("fuzz_inputs")
    dials = simulate_to_files(str(folder / "d"), n_images=8, seed=7, dmin=3.0, formats=("dials",))["dials"]
    refl = sorted(os.path.join(dials, n) for n in os.listdir(dials) if n.endswith(".refl"))[0]
    return {"stream": small_stream, "mtz": sim_files["mtz"], "dials": refl}


@pytest.fixture(scope="module")
def clean_merges(tmp_path_factory):
    """The clean merge of each format, ``(counts, merged)``, made by the first case that needs it."""
    return {"folder": tmp_path_factory.mktemp("clean_merges")}


def _clean(fmt, fuzz_inputs, clean_merges, capsys):
    if fmt not in clean_merges:
        status, err, counts, merged = _naive_merge(fuzz_inputs[fmt], clean_merges["folder"] / fmt, capsys)
        assert status == 0 and counts[2] == 0, err
        clean_merges[fmt] = counts, merged
    return clean_merges[fmt]


def _mutate(fmt, kind, source, folder, rng):
    """The mutated input's path and the observation-count change the mutation makes (None: unknown)."""
    if fmt == "stream":
        data, change = _mutate_stream(open(source, "rb").read(), kind, rng)
        path = folder / "fuzzed.stream"
        path.write_bytes(data)
        return path, change
    if fmt == "mtz":
        path = folder / "fuzzed.mtz"
        return path, _mutate_mtz(source, path, kind, rng)
    pair = folder / "fuzzed_dials"
    shutil.copytree(os.path.dirname(source), pair)
    refl = pair / os.path.basename(source)
    expt = refl.with_suffix(".expt")
    if kind == "crlf":  # the experiment list (JSON) with Windows line endings: the same data
        expt.write_bytes(expt.read_bytes().replace(b"\n", b"\r\n"))
        return refl, 0
    refl.write_bytes(_damage(refl.read_bytes(), rng))
    return refl, None


#: (format, mutation, seed): a handful, so that the test stays short; the seeds fix what is hit.
FUZZ_CASES = [("stream", "byte", 1), ("stream", "remove", 3), ("stream", "duplicate", 4), ("stream", "extreme", 5),
              ("stream", "crlf", 7),
              ("mtz", "byte", 8), ("mtz", "remove", 9), ("mtz", "extreme", 10), ("dials", "crlf", 11)]


@pytest.mark.parametrize("fmt, kind, seed", FUZZ_CASES)
def test_a_fuzzed_merge_is_refused_in_one_line_or_explained_by_what_was_dropped(fuzz_inputs, clean_merges, tmp_path,
                                                                                capsys, fmt, kind, seed):
    rng = np.random.default_rng(seed)
    clean_counts, clean = _clean(fmt, fuzz_inputs, clean_merges, capsys)
    path, change = _mutate(fmt, kind, fuzz_inputs[fmt], tmp_path, rng)
    status, err, counts, merged = _naive_merge(path, tmp_path / "fuzzed", capsys)
    if status == 2:  # a clean refusal
        assert len(err) == 1 and "Traceback" not in err[0] and "error:" in err[0], err
        return
    assert status == 0, err
    kept, read, dropped = counts
    assert int(merged["N"].sum()) == kept and kept + dropped == read
    if change is not None:
        assert read == clean_counts[1] + change
    if kind == "extreme":
        assert dropped == 1
    common = clean[["F"]].join(merged[["F"]].rename(columns={"F": "F_fuzzed"}), how="inner")
    assert np.corrcoef(common["F"].to_numpy(float), common["F_fuzzed"].to_numpy(float))[0, 1] > MERGE_CC
