"""Bad inputs end in one-line InputErrors naming the file (exit code 2 from the CLI)."""

import os

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
        sig[list(rows)] = value
        ds["SIGI"] = rs.DataSeries(sig, dtype="Stddev", index=ds.index)
        return ds
    return edit


@pytest.fixture(scope="module")
def absent_mtz(tmp_path_factory):
    """Data simulated in P 1 with a tetragonal cell (claimed P 43 21 2 below)."""
    from careless_online.simulate import simulate_to_files

    base = tmp_path_factory.mktemp("p1") / "p1"
    return simulate_to_files(str(base), n_images=50, seed=3, formats=("mtz",), spacegroup="P 1",
                             cell=(79.1, 79.1, 38.0, 90, 90, 90), dmin=3.0)["mtz"]


@pytest.fixture
def bad_file(request, tmp_path, sim_files, data_dir, absent_mtz):
    """(path, space group option, expected message part) of one kind of bad input."""
    kind = request.param
    p = tmp_path / "in"
    p.mkdir()
    if kind == "missing":
        return str(p / "nope.mtz"), None, "no such file"
    if kind in ("empty mtz", "empty stream"):
        path = p / ("e.mtz" if kind == "empty mtz" else "e.stream")
        path.write_bytes(b"")
        return str(path), None, "file is empty"
    if kind == "garbage mtz":
        path = p / "g.mtz"
        path.write_bytes(b"MTZ \x00" + bytes(range(256)) * 4)
        return str(path), None, "not a readable MTZ"
    if kind == "header-only stream":
        return _cut_stream(sim_files["stream"], p / "h.stream", 0, 300), SIM_SPACEGROUP, "no complete chunk"
    if kind == "not a stream":
        path = p / "n.stream"
        path.write_text("h k l I sigma\n1 2 3 4.0 1.0\n")
        return str(path), SIM_SPACEGROUP, "not a CrystFEL stream"
    if kind == "unknown extension":
        path = p / "data.hkl"
        path.write_text("1 2 3 4.0 1.0\n")
        return str(path), None, "unknown file format"
    if kind == "no intensity":
        return _edit_mtz(sim_files["mtz"], p / "noi.mtz", lambda ds: ds.drop(columns=["I"])), None, \
            "no intensity column"
    if kind == "merged":
        return sim_files["truth"], None, "merged"
    if kind == "nan sigma":
        return _edit_mtz(sim_files["mtz"], p / "nan.mtz", _set_sigma(np.nan)), None, "non-positive or enormous sigma"
    if kind == "negative sigma":
        return _edit_mtz(sim_files["mtz"], p / "neg.mtz", _set_sigma(-1.0)), None, "non-positive or enormous sigma"
    if kind == "incompatible cell":
        return str(data_dir / "lysozyme_pal.stream"), "P 63", "incompatible with space group"
    if kind == "absences observed":
        return absent_mtz, SIM_SPACEGROUP, "contradicts the data"
    raise ValueError(kind)


KINDS = ["missing", "empty mtz", "empty stream", "garbage mtz", "header-only stream", "not a stream",
         "unknown extension", "no intensity", "merged", "nan sigma", "negative sigma", "incompatible cell",
         "absences observed"]


@pytest.mark.parametrize("bad_file", KINDS, indirect=True)
def test_input_error_names_the_file(bad_file, tmp_path):
    path, group, message = bad_file
    with pytest.raises(InputError) as err:
        build_cache([path], TableOptions(spacegroup=group), str(tmp_path / "cache"))
    text = str(err.value)
    assert text.startswith(f"{path}: ") and message in text and "\n" not in text
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
    path, group, message = bad_file
    out = tmp_path / "out"
    argv = ["mono", "dHKL", path, str(out / "merge"), "--iterations", "2", "--disable-progress-bar"]
    if group is not None:
        argv += ["--spacegroups", group]
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and path in lines[0] and message in lines[0]
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
