"""Bad inputs end in one-line InputErrors naming the file (exit code 2 from the CLI)."""

import json
import os
import re
import shutil
from dataclasses import dataclass, field

import numpy as np
import pytest
import reciprocalspaceship as rs

from careless_online.cli.main import main
from careless_online.errors import InputError
from careless_online.io import readers
from careless_online.io.cache import build_cache
from careless_online.io.table import TableOptions

from conftest import SIM_SPACEGROUP


def _cut_stream(source, target, keep_chunks, extra_bytes):
    """Copy ``source`` up to ``extra_bytes`` past the end of chunk ``keep_chunks``."""
    text = open(source, "rb").read()
    marker = b"----- End chunk -----\n"
    end = 0
    for _ in range(keep_chunks):
        end = text.index(marker, end) + len(marker)
    if keep_chunks == 0:
        end = text.index(b"----- Begin chunk -----")
    with open(target, "wb") as handle:
        handle.write(text[:end + extra_bytes])
    return str(target)


def _edit_mtz(source, target, edit):
    ds = rs.read_mtz(source)
    ds = edit(ds)
    ds.write_mtz(str(target))
    return str(target)


def _set_sigma(value, rows=(3, 10, 20)):
    def edit(ds):
        sig = ds["SIGI"].to_numpy().copy()
        sig[rows if isinstance(rows, slice) else list(rows)] = value
        ds["SIGI"] = rs.DataSeries(sig, dtype="Stddev", index=ds.index)
        return ds
    return edit


def _edit_chunk(source, target, edit, chunk=3):
    """Copy a stream with ``edit(bytes) -> bytes`` applied to chunk number ``chunk`` (0-based)."""
    text = open(source, "rb").read()
    begin = -1
    for _ in range(chunk + 1):
        begin = text.index(b"----- Begin chunk -----", begin + 1)
    end = text.index(b"----- End chunk -----", begin) + len(b"----- End chunk -----")
    with open(target, "wb") as handle:
        handle.write(text[:begin] + edit(text[begin:end]) + text[end:])
    return str(target)


def _sub(pattern, replacement):
    """An edit replacing the first match of a regex (bytes)."""
    return lambda chunk: re.sub(pattern, replacement, chunk, count=1, flags=re.MULTILINE)


def _reflection_line(number, replacement):
    """An edit replacing reflection line ``number`` of a chunk with ``replacement``."""
    def edit(chunk):
        head, rest = chunk.split(b"panel\n", 1)
        lines = rest.split(b"\n")
        lines[number] = replacement
        return head + b"panel\n" + b"\n".join(lines)
    return edit


def _drop_lines(first, last):
    """An edit removing reflection lines ``first`` to ``last - 1`` of a chunk (whole lines)."""
    def edit(chunk):
        head, rest = chunk.split(b"panel\n", 1)
        lines = rest.split(b"\n")
        return head + b"panel\n" + b"\n".join(lines[:first] + lines[last:])
    return edit


def _edit_refl(source, target, edit):
    """Copy a DIALS pair, the reflection table's msgpack body changed by ``edit(dict)``."""
    import msgpack

    body = msgpack.unpackb(open(source, "rb").read(), strict_map_key=False)
    edit(body[2])
    open(target, "wb").write(msgpack.packb(body))
    shutil.copy(os.path.splitext(source)[0] + ".expt", os.path.splitext(str(target))[0] + ".expt")
    return str(target)


def _edit_expt(source, target, edit):
    """Copy a DIALS pair, the experiment list's JSON changed by ``edit(dict)``."""
    expt = json.load(open(os.path.splitext(source)[0] + ".expt"))
    edit(expt)
    json.dump(expt, open(os.path.splitext(str(target))[0] + ".expt", "w"))
    shutil.copy(source, str(target))
    return str(target)


@pytest.fixture(scope="module")
def absent_mtz(tmp_path_factory):
    """Data simulated in P 1 with a tetragonal cell (claimed P 43 21 2 below)."""
    from careless_online.simulate import simulate_to_files

    base = tmp_path_factory.mktemp("p1") / "p1"
    return simulate_to_files(str(base), n_images=50, seed=3, formats=("mtz",), spacegroup="P 1",
                             cell=(79.1, 79.1, 38.0, 90, 90, 90), dmin=3.0)["mtz"]


@dataclass
class Case:
    """One kind of bad input: files, options, and the file and words the error must name."""

    paths: list
    group: object
    message: str
    options: dict = field(default_factory=dict)  # TableOptions keywords
    argv: list = field(default_factory=list)  # the same as command-line flags
    culprit: object = None  # the file named (default: the last of ``paths``)
    cli_named: object = None  # what the command line names instead (a flag checked before any file)

    @property
    def named(self):
        return self.paths[-1] if self.culprit is None else self.culprit


def _mtz_case(kind, p, sim_files, data_dir):
    mtz = sim_files["mtz"]
    cases = {
        "no intensity": lambda: Case([_edit_mtz(mtz, p / "noi.mtz", lambda ds: ds.drop(columns=["I"]))], None,
                                     "no intensity column"),
        "merged": lambda: Case([sim_files["truth"]], None, "merged"),
        "nan sigma": lambda: Case([_edit_mtz(mtz, p / "nan.mtz", _set_sigma(np.nan))], None,
                                  "non-positive or enormous sigma"),
        "negative sigma": lambda: Case([_edit_mtz(mtz, p / "neg.mtz", _set_sigma(-1.0))], None,
                                       "non-positive or enormous sigma"),
        "all-zero sigmas": lambda: Case([_edit_mtz(mtz, p / "zero.mtz", _set_sigma(0.0, rows=slice(None)))], None,
                                        "non-positive or enormous sigma"),
        "enormous sigmas": lambda: Case([_edit_mtz(mtz, p / "huge.mtz", _set_sigma(1e30))], None,
                                        "non-positive or enormous sigma"),
        "no image column": lambda: Case([_edit_mtz(mtz, p / "nob.mtz", lambda ds: ds.drop(columns=["BATCH"]))],
                                        None, "no image (BATCH) column"),
        "mtz without reflections": lambda: Case([_edit_mtz(mtz, p / "none.mtz", lambda ds: ds.iloc[:0])], None,
                                                "not a readable MTZ"),  # gemmi refuses it
        "mixed space groups": lambda: Case([mtz, str(data_dir / "pyp_laue_off_small.mtz")], None,
                                           "differs from P 43 21 2"),
        "same file twice": lambda: Case([mtz, mtz], None, "given twice"),
        "later file lacks a column": lambda: Case(
            [mtz, _edit_mtz(mtz, p / "noxdet.mtz", lambda ds: ds.drop(columns=["XDET"]))], None,
            "columns XDET missing (the first input has them)"),
        "same contents twice": lambda: Case([mtz, _copy(mtz, p / "copy.mtz")], None, "same contents as"),
        "key for a stream": lambda: Case([sim_files["stream"]], SIM_SPACEGROUP, "choose MTZ columns",
                                         {"intensity_key": "I"}, ["--intensity-key", "I"]),
        "beyond dmin only": lambda: Case([mtz], None, "no usable observations", {"dmin": 60.0},
                                         ["--dmin", "60"]),
        "cells far from the reference": lambda: Case(
            [sim_files["stream"]], SIM_SPACEGROUP, "images dropped for their cell",
            {"cell": (90.0, 90.0, 45.0, 90.0, 90.0, 90.0)}, ["--cell", "90,90,45,90,90,90"]),
    }
    return cases[kind]() if kind in cases else None


def _copy(source, target):
    shutil.copy(source, target)
    return str(target)


def _stream_case(kind, p, sim_files):
    stream = sim_files["stream"]

    def chunk(name, edit, message, number=3):
        return Case([_edit_chunk(stream, p / f"{name}.stream", edit, number)], SIM_SPACEGROUP, message)

    cases = {
        "stream chunk without cell": lambda: chunk("nocell", _sub(rb"^Cell parameters.*\n", b""),
                                                   "without 'Cell parameters'"),
        "stream chunk with garbled cell": lambda: chunk("garbled", _sub(rb"^Cell parameters.*$",
                                                                        b"Cell parameters 7.9 x.y 3.8 nm"),
                                                        "garbled cell parameters"),
        "stream chunk with NaN cell": lambda: chunk("nancell", _sub(rb"^Cell parameters.*$",
                                                                    b"Cell parameters nan nan nan nm, 90 90 90 deg"),
                                                    "garbled cell parameters"),
        "reflection line too short": lambda: chunk("short", _reflection_line(4, b"  1 2 3 4.0 1.0"),
                                                   "has 5 columns, needs 9"),
        "reflection line not numeric": lambda: chunk("text", _reflection_line(2, b"  1 2 3 four 1 1 1 1 1 p0"),
                                                     "non-numeric reflection line 3"),
        "reflection lines missing": lambda: chunk("fewer", _drop_lines(3, 5), "but the table has"),
        "reflection table without end": lambda: chunk("noend", _sub(rb"^End of reflections\n", b""),
                                                      "without 'End of reflections'", number=10),
        "chunk without end marker": lambda: chunk("nochunkend", _sub(rb"^----- End chunk -----", b""),
                                                  "no 'End chunk' marker", number=10),
        "non-UTF-8 bytes in a chunk": lambda: chunk("latin", _sub(rb"^(Cell parameters)", b"\xff\xfe\\1"),
                                                    "not UTF-8"),
        "no photon energy": lambda: chunk("noenergy", _sub(rb"^photon_energy_eV.*\n", b""),
                                          "no photon_energy_eV line"),
        "binary stream": lambda: Case([_write(p / "bin.stream", bytes(range(256)) * 64)], SIM_SPACEGROUP,
                                      "not a CrystFEL stream"),
        "crystals without reflections": lambda: Case(
            [_write(p / "norefl.stream", re.sub(rb"num_reflections = \d+\n(.*?)Reflections measured after indexing\n"
                                               rb".*?End of reflections\n", rb"num_reflections = 0\n\1",
                                               open(stream, "rb").read(), flags=re.DOTALL))],
            SIM_SPACEGROUP, "no observations"),
    }
    return cases[kind]() if kind in cases else None


def _write(path, data):
    path.write_bytes(data)
    return str(path)


def _dials_case(kind, p, data_dir):
    refl = str(data_dir / "stills.refl")
    cases = {
        "dials without intensity": lambda: Case(
            [_edit_refl(refl, p / "noi.refl", lambda table: table["data"].pop("intensity.sum.value"))],
            None, "missing columns intensity.sum.value"),
        "dials expt of other refl": lambda: Case(
            [_edit_expt(refl, p / "few.refl", lambda e: e.update(experiment=e["experiment"][:1]))],
            None, "lists 1 experiments"),
        "dials expt not json": lambda: Case(
            [_copy(refl, p / "bad.refl"), _write(p / "bad.expt", b"{not json")], None,
            "not a DIALS experiment list"),
        "dials refl garbage": lambda: Case(
            [_copy(str(data_dir / "stills.expt"), p / "g.expt"), _write(p / "g.refl", b"\x00garbage" * 50)],
            None, "not a readable DIALS reflection table"),
        "dials without expt": lambda: Case([_copy(refl, p / "alone.refl")], None, "no such file",
                                           culprit=str(p / "alone.expt")),
    }
    return cases[kind]() if kind in cases else None


@pytest.fixture
def bad_file(request, tmp_path, sim_files, data_dir, absent_mtz):
    """A :class:`Case` of one kind of bad input."""
    kind = request.param
    p = tmp_path / "in"
    p.mkdir()
    for make in (lambda: _mtz_case(kind, p, sim_files, data_dir), lambda: _stream_case(kind, p, sim_files),
                 lambda: _dials_case(kind, p, data_dir)):
        case = make()
        if case is not None:
            return case
    if kind == "missing":
        return Case([str(p / "nope.mtz")], None, "no such file")
    if kind in ("empty mtz", "empty stream"):
        return Case([_write(p / ("e.mtz" if kind == "empty mtz" else "e.stream"), b"")], None, "file is empty")
    if kind == "folder":
        (p / "folder.mtz").mkdir()
        return Case([str(p / "folder.mtz")], None, "is a folder")
    if kind == "garbage mtz":
        return Case([_write(p / "g.mtz", b"MTZ \x00" + bytes(range(256)) * 4)], None, "not a readable MTZ")
    if kind == "header-only stream":
        return Case([_cut_stream(sim_files["stream"], p / "h.stream", 0, 300)], SIM_SPACEGROUP, "no complete chunk")
    if kind == "not a stream":
        return Case([_write(p / "n.stream", b"h k l I sigma\n1 2 3 4.0 1.0\n")], SIM_SPACEGROUP,
                    "not a CrystFEL stream")
    if kind == "unknown extension":
        return Case([_write(p / "data.hkl", b"1 2 3 4.0 1.0\n")], None, "unknown file format")
    if kind == "incompatible cell":
        return Case([str(data_dir / "lysozyme_pal.stream")], "P 63", "incompatible with space group")
    if kind == "absences observed":
        return Case([absent_mtz], SIM_SPACEGROUP, "contradicts the data")
    if kind == "unknown space group":
        return Case([sim_files["mtz"]], "P 7", "unknown space group", cli_named="--spacegroups")
    if kind == "stream without space group":
        return Case([sim_files["stream"]], None, "give a space group")
    raise ValueError(kind)


KINDS = ["missing", "empty mtz", "empty stream", "garbage mtz", "header-only stream", "not a stream",
         "unknown extension", "no intensity", "merged", "nan sigma", "negative sigma", "incompatible cell",
         "absences observed",
         # added for issue 14
         "folder", "all-zero sigmas", "enormous sigmas", "no image column", "mtz without reflections",
         "mixed space groups", "same file twice", "later file lacks a column", "same contents twice",
         "key for a stream", "beyond dmin only",
         "cells far from the reference", "stream chunk without cell", "stream chunk with garbled cell",
         "stream chunk with NaN cell", "reflection line too short", "reflection line not numeric",
         "reflection lines missing", "reflection table without end", "chunk without end marker",
         "non-UTF-8 bytes in a chunk",
         "no photon energy", "binary stream", "crystals without reflections", "dials without intensity",
         "dials expt of other refl", "dials expt not json", "dials refl garbage", "dials without expt",
         "unknown space group", "stream without space group"]


def test_the_corpus_has_at_least_30_kinds():
    assert len(set(KINDS)) == len(KINDS) >= 30


@pytest.mark.parametrize("bad_file", KINDS, indirect=True)
def test_input_error_names_the_file(bad_file, tmp_path):
    case = bad_file
    options = TableOptions(spacegroup=case.group, **case.options)
    with pytest.raises(InputError) as err:
        build_cache(case.paths, options, str(tmp_path / "cache"))
    text = str(err.value)
    assert text.startswith(f"{case.named}: ") and case.message in text and "\n" not in text
    assert _empty(tmp_path / "cache")  # no half-built cache is left behind


def _empty(folder):
    return not folder.exists() or not any(folder.iterdir())


def test_failed_build_leaves_no_shards(sim_files, tmp_path):
    bad = _edit_mtz(sim_files["mtz"], tmp_path / "neg.mtz", _set_sigma(-1.0))
    with pytest.raises(InputError, match="neg.mtz"):
        build_cache([sim_files["stream"], bad], TableOptions(spacegroup=SIM_SPACEGROUP),
                    str(tmp_path / "cache"), shard_images=8)
    assert _empty(tmp_path / "cache")


@pytest.mark.parametrize("bad_file", KINDS, indirect=True)
def test_cli_exits_2_with_one_line(bad_file, tmp_path, capsys):
    case = bad_file
    out = tmp_path / "out"
    argv = ["mono", "dHKL", *case.paths, str(out / "merge"), "--iterations", "2", "--disable-progress-bar",
            *case.argv]
    if case.group is not None:
        argv += ["--spacegroups", case.group]
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and (case.cli_named or case.named) in lines[0] and case.message in lines[0], lines
    assert "Traceback" not in captured.err + captured.out
    assert [f for _, _, files in os.walk(out) for f in files] == []  # no output written


def test_drop_invalid(sim_files, tmp_path):
    nan = _edit_mtz(sim_files["mtz"], tmp_path / "nan.mtz", _set_sigma(np.nan, rows=(3, 10, 20)))
    neg = _edit_mtz(sim_files["mtz"], tmp_path / "neg.mtz", _set_sigma(0.0, rows=(5, 6)))
    clean = build_cache([sim_files["mtz"]], TableOptions(), str(tmp_path / "c"))
    for path, n_bad in ((nan, 3), (neg, 2)):
        with pytest.raises(InputError, match="--drop-invalid"):
            build_cache([path], TableOptions(), str(tmp_path / "c"))
        m = build_cache([path], TableOptions(drop_invalid=True), str(tmp_path / "c"))
        assert m.n_obs == clean.n_obs - n_bad
        assert m.info["report"]["dropped"]["invalid I or SigI"] == n_bad
        sig = np.concatenate([m.load_shard(i, ["SigI"])["SigI"] for i in range(len(m.shards))])
        assert np.all(sig > 0)


def test_truncated_stream_reads_complete_chunks(sim_files, tmp_path):
    whole = readers.read_stream(sim_files["stream"])
    cut = _cut_stream(sim_files["stream"], tmp_path / "cut.stream", 30, 500)  # mid chunk 31
    assert readers.count_stream_chunks(cut) == 30
    part = readers.read_stream(cut)
    assert np.array_equal(np.unique(part.data["image"]), np.arange(30))
    expected = whole.data[whole.data["image"] < 30].reset_index(drop=True)
    assert part.data.equals(expected)
    # exactly at a chunk end is complete too
    exact = _cut_stream(sim_files["stream"], tmp_path / "exact.stream", 30, 0)
    assert readers.read_stream(exact).data.equals(expected)
    # the cache of a cut stream holds the complete images
    m = build_cache([cut], TableOptions(spacegroup=SIM_SPACEGROUP), str(tmp_path / "c"))
    assert m.n_images == 30


def test_unknown_space_group_and_cell(sim_files, tmp_path):
    with pytest.raises(InputError, match="unknown space group 'P 7'"):
        build_cache([sim_files["mtz"]], TableOptions(spacegroup="P 7"), str(tmp_path))
    with pytest.raises(InputError, match="does not give a space group"):
        build_cache([sim_files["stream"]], TableOptions(), str(tmp_path))


def test_damaged_chunks_are_skipped_with_a_warning_under_drop_invalid(sim_files, tmp_path):
    stream = _edit_chunk(sim_files["stream"], tmp_path / "one.stream", _reflection_line(2, b" 1 2 x"), 5)
    damaged = _edit_chunk(stream, tmp_path / "two.stream", _sub(rb"^Cell parameters.*\n", b""), 20)
    options = TableOptions(spacegroup=SIM_SPACEGROUP)
    with pytest.raises(InputError, match=r"damaged chunk at byte \d+: reflection line 3 has 3 columns.*"
                                         r"2 damaged chunks in this block; --drop-invalid skips them"):
        build_cache([damaged], options, str(tmp_path / "c"))
    messages = []
    skipped = build_cache([damaged], TableOptions(spacegroup=SIM_SPACEGROUP, drop_invalid=True),
                          str(tmp_path / "c"), log=messages.append)
    whole = build_cache([sim_files["stream"]], options, str(tmp_path / "c"))
    assert skipped.n_images == whole.n_images - 2
    warning = [m for m in messages if "WARNING" in m]
    assert len(warning) == 1 and warning[0].startswith(damaged)
    assert "2 damaged chunks skipped (first at byte" in warning[0] and "reflection line 3" in warning[0]
    assert skipped.info["report"]["damaged_chunks"] == 2


def test_crystal_without_reflections_does_not_shift_the_cells(sim_files, tmp_path):
    """A chunk whose first crystal has no reflections: the second keeps its own cell."""
    empty_crystal = (b"--- Begin crystal\nCell parameters 9.00000 9.00000 4.00000 nm, 90 90 90 deg\n"
                     b"astar = +0.1 0 0 nm^-1\nbstar = 0 +0.1 0 nm^-1\ncstar = 0 0 +0.2 nm^-1\n--- End crystal\n")
    edited = _edit_chunk(sim_files["stream"], tmp_path / "two.stream",
                         lambda chunk: chunk.replace(b"--- Begin crystal", empty_crystal + b"--- Begin crystal", 1), 4)
    whole, raw = readers.read_stream(sim_files["stream"]), readers.read_stream(edited)
    assert raw.image_cells == whole.image_cells  # the empty crystal is no image; no cell moves
    assert raw.data.equals(whole.data)


def test_stream_chunk_ends_pair_with_their_own_begins(sim_files, tmp_path):
    """A chunk without its end marker is one damaged chunk; later chunks keep their spans."""
    cut = _edit_chunk(sim_files["stream"], tmp_path / "noend.stream", _sub(rb"^----- End chunk -----", b""), 10)
    spans = readers._chunk_spans(cut)
    assert len(spans) == 48 and [complete for _, _, complete in spans].count(False) == 1 and not spans[10][2]
    raw = readers.read_stream(cut)
    assert raw.data["image"].nunique() == 47 and len(raw.damaged) == 1


@pytest.mark.parametrize("flag", ["intensity_key", "uncertainty_key", "image_key"])
def test_column_keys_refused_for_streams_and_dials(flag, sim_files, data_dir):
    for path in (sim_files["stream"], str(data_dir / "stills.refl")):
        with pytest.raises(InputError, match="choose MTZ columns"):
            readers.read_file(path, **{flag: "I"})
    assert len(readers.read_file(sim_files["mtz"], **{flag: {"image_key": "BATCH"}.get(flag, "I")}).data)


def _with_batch_cells(source, target, lengths):
    """Copy an MTZ, adding batch headers whose cell a-lengths are ``lengths`` (one per batch)."""
    import gemmi

    mtz = gemmi.read_mtz_file(source)
    numbers = np.unique(np.array(mtz.column_with_label("BATCH"), dtype=int))
    for number, a in zip(numbers, lengths):
        batch = gemmi.Mtz.Batch()
        batch.number, batch.dataset_id = int(number), mtz.datasets[-1].id
        cell = mtz.cell.parameters
        batch.cell = gemmi.UnitCell(a, cell[1], cell[2], cell[3], cell[4], cell[5])
        mtz.batches.append(batch)
    mtz.write_to_file(str(target))
    return str(target)


def test_cell_tolerance_uses_mtz_batch_cells(sim_files, tmp_path):
    a = readers.read_file(sim_files["mtz"]).cell.a
    n_images = readers.read_file(sim_files["mtz"]).data["image"].nunique()
    lengths = [a * 1.08 if i % 4 == 0 else a for i in range(n_images)]  # every 4th image 8 % off
    path = _with_batch_cells(sim_files["mtz"], tmp_path / "cells.mtz", lengths)
    raw = readers.read_file(path)
    assert len(raw.image_cells) == n_images
    strict = build_cache([path], TableOptions(cell_tolerance=0.05), str(tmp_path / "c"))
    loose = build_cache([path], TableOptions(cell_tolerance=0.10), str(tmp_path / "c"))
    assert f"{len(range(0, n_images, 4))} images dropped for their cell" in strict.info["report"]["summary"]
    assert "dropped for their cell" not in loose.info["report"]["summary"]
    # without batch cells the log says the tolerance cannot act
    plain = build_cache([sim_files["mtz"]], TableOptions(cell_tolerance=0.05), str(tmp_path / "c"))
    assert "no per-image cells, so --cell-tolerance drops nothing" in plain.info["report"]["summary"]
