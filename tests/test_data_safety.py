"""Inputs protected (issue 21, items 1, 3, 6, 7, 8): nothing silently lost, no input overwritten.

Each case of the corpus below ended with exit 0 and lost or wrong data, or a
misleading reason, before the fix: an output that replaces an input, a stream
with Windows line ends, a repeated image or row, a resolution limit set by
images that are dropped, and messages naming the wrong cause.  Most checks
end before training; none trains for more than a few steps.
"""

import hashlib
import os
import subprocess
import sys

import numpy as np
import pytest
import reciprocalspaceship as rs

from careless_online.cli import checks
from careless_online.cli.main import main
from careless_online.errors import InputError
from careless_online.io import readers, stream_format
from careless_online.io.cache import build_cache
from careless_online.io.live import LiveCache
from careless_online.io.prefix_lock import PrefixLock, lock_path
from careless_online.io.table import TableOptions

from conftest import SIM_SPACEGROUP

BEGIN = b"----- Begin chunk -----"


def _digest(path):
    return hashlib.sha256(open(path, "rb").read()).hexdigest()


def _files(folder):
    return sorted(os.path.relpath(os.path.join(root, f), folder) for root, _, files in os.walk(folder) for f in files)


def _mono_refused(argv, capsys):
    """Run ``mono`` expecting a refusal; asserts exit status 2, one error line and no traceback; returns the line."""
    with pytest.raises(SystemExit) as exit_info:
        main(["mono", "--iterations", "2", "--disable-progress-bar", *map(str, argv)])
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert exit_info.value.code == 2 and len(lines) == 1, captured.err
    assert "Traceback" not in captured.err + captured.out
    return lines[0]


# ------------------------------------------------------------------ 1. an output overwrites an input

def _copy(source, target):
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(open(source, "rb").read())
    return target


def _overwrite_case(kind, tmp, mtz):
    """(argv, the input that would be lost, words of the message) of one way an output could replace an input."""
    out = tmp / "out"
    out.mkdir()
    data = _copy(mtz, tmp / "in" / "data.mtz")
    if kind == "input named as an output":
        return ["dHKL", _copy(mtz, out / "run_0.mtz"), out / "run"], out / "run_0.mtz", "output prefix"
    if kind == "input is a symlink to an output":
        (tmp / "in" / "link.mtz").symlink_to(_copy(mtz, out / "run_predictions_0.mtz"))
        return ["dHKL", tmp / "in" / "link.mtz", out / "run"], out / "run_predictions_0.mtz", "output prefix"
    if kind == "output is a symlink to the input":
        (out / "run_0.mtz").symlink_to(data)
        return ["dHKL", data, out / "run"], data, "symbolic or hard link"
    if kind == "output is a hard link of the input":
        os.link(data, out / "run_xval_0.mtz")
        return ["dHKL", data, out / "run"], data, "symbolic or hard link"
    if kind == "second dataset of --separate-files":
        second = _copy(mtz, out / "run_1.mtz")
        return ["--separate-files", "dHKL", data, second, out / "run"], second, "output prefix"
    if kind == "input in the checkpoint folder":
        inside = _copy(mtz, out / "run_0.ckpt" / "data.mtz")
        return ["dHKL", inside, out / "run"], inside, "output prefix"
    if kind == "input in a cache folder":
        inside = _copy(mtz, out / ".careless_online_cache" / "0123456789abcdef" / "data.mtz")
        return ["dHKL", inside, out / "run"], inside, "cache folder"
    if kind == "--model-in is the output model":
        model = _copy(mtz, out / "run_0.keras")  # never loaded: refused first
        return ["--model-in", model, "dHKL", data, out / "run"], model, "output prefix"
    if kind == "--groups-file is the history output":
        groups = out / "run_history.csv"
        groups.write_text(f"{data} * a\n")
        return ["--groups-file", groups, "dHKL", data, out / "run"], groups, "output prefix"
    if kind == "live folder holding an output":
        inside = _copy(mtz, out / "run_0.mtz")
        return ["--live", "--dmin", "3", "dHKL", out, out / "run"], inside, "output prefix"
    if kind == "live folder that would take the outputs":
        return ["--live", "--dmin", "3", "dHKL", tmp / "in", tmp / "in" / "run"], data, "take the run's own output"
    if kind == "live glob that would take the outputs":
        return ["--live", "--dmin", "3", "dHKL", tmp / "in" / "*.mtz", tmp / "in" / "merged"], data, \
            "take the run's own output"
    raise ValueError(kind)


OVERWRITES = ["input named as an output", "input is a symlink to an output", "output is a symlink to the input",
              "output is a hard link of the input", "second dataset of --separate-files",
              "input in the checkpoint folder", "input in a cache folder", "--model-in is the output model",
              "--groups-file is the history output", "live folder holding an output",
              "live folder that would take the outputs", "live glob that would take the outputs"]


@pytest.mark.parametrize("kind", OVERWRITES)
def test_an_output_that_is_an_input_is_refused_before_anything_is_read(kind, sim_files, tmp_path, capsys,
                                                                         monkeypatch):
    argv, kept, words = _overwrite_case(kind, tmp_path, sim_files["mtz"])
    before, digest = _files(tmp_path), _digest(kept)
    monkeypatch.setattr(checks, "keys_in_inputs", lambda *a: pytest.fail("an input was read"))
    line = _mono_refused(argv, capsys)
    assert words in line and ("choose another output prefix" in line or "--cache-dir" in line
                              or "outputs outside it" in line)
    assert _digest(kept) == digest and _files(tmp_path) == before  # the input intact, nothing written


def test_an_output_prefix_beside_its_inputs_is_fine(sim_files, tmp_path):
    """The guard refuses only real collisions: inputs named like another prefix's outputs pass."""
    from argparse import Namespace

    from careless_online.cli.overwrite import check_outputs_spare_inputs

    data = _copy(sim_files["mtz"], tmp_path / "run_0.mtz")  # another prefix's output, used as input
    args = Namespace(inputs=[str(data)], out=str(tmp_path / "second"), live=False, groups_file=None, model_in=None,
                     model_pdb=None)
    check_outputs_spare_inputs(args, str(tmp_path / ".careless_online_cache"))
    with pytest.raises(InputError, match="choose another output prefix"):
        check_outputs_spare_inputs(Namespace(**{**vars(args), "out": str(tmp_path / "run")}), "unused")


# ------------------------------------------------------------------ 3. CRLF line ends

def _crlf(source, target, from_chunk=0):
    """Copy a stream with CRLF line ends from chunk ``from_chunk`` on (0: the whole file, header included)."""
    text = open(source, "rb").read()
    cut = 0
    if from_chunk:
        cut = text.index(BEGIN)
        for _ in range(from_chunk):
            cut = text.index(BEGIN, cut + 1)
    target.write_bytes(text[:cut] + text[cut:].replace(b"\n", b"\r\n"))
    return str(target)


@pytest.mark.parametrize("from_chunk", [0, 24])
def test_crlf_streams_read_exactly_as_lf(from_chunk, sim_files, tmp_path):
    lf = readers.read_stream(sim_files["stream"])
    crlf = readers.read_stream(_crlf(sim_files["stream"], tmp_path / "crlf.stream", from_chunk))
    assert crlf.data.equals(lf.data) and crlf.image_cells == lf.image_cells and not crlf.damaged
    assert crlf.cell.parameters == lf.cell.parameters
    options = TableOptions(spacegroup=SIM_SPACEGROUP)
    assert build_cache([crlf.path], options, str(tmp_path / "c")).n_obs == \
        build_cache([sim_files["stream"]], options, str(tmp_path / "c")).n_obs


def test_crlf_stream_followed_live_reads_every_image(sim_files, tmp_path):
    stream = _crlf(sim_files["stream"], tmp_path / "live.stream", from_chunk=10)
    options = TableOptions(spacegroup=SIM_SPACEGROUP, dmin=3.0)
    cache = LiveCache([stream], options, str(tmp_path / "live"))
    assert cache.poll() == readers.read_stream(sim_files["stream"]).data["image"].nunique()


def test_a_crlf_groups_file_reads_as_lf(tmp_path):
    """The other text input, ``--groups-file``: CRLF lines give the same assignments."""
    from careless_online.io.groups import read_split_file

    lines = "a.stream * dark\nb.stream 3 light\n"
    (tmp_path / "lf.txt").write_bytes(lines.encode())
    (tmp_path / "crlf.txt").write_bytes(lines.replace("\n", "\r\n").encode())
    assert read_split_file(str(tmp_path / "crlf.txt")) == read_split_file(str(tmp_path / "lf.txt"))


# ------------------------------------------------------------------ 6. duplicates

def _twice(source, target):
    """A stream followed by all its chunks again (a stream concatenated with itself)."""
    text = open(source, "rb").read()
    target.write_bytes(text + text[text.index(BEGIN):])
    return str(target)


def _observations(manifest):
    columns = ["Hobs", "Kobs", "Lobs", "I", "SigI"]
    parts = [manifest.load_shard(i, columns) for i in range(len(manifest.shards))]
    rows = np.column_stack([np.concatenate([p[c] for p in parts]).astype(np.float64) for c in columns])
    return rows[np.lexsort(rows.T[::-1])]


def test_a_stream_concatenated_with_itself_counts_once(sim_files, tmp_path):
    options = TableOptions(spacegroup=SIM_SPACEGROUP)
    clean = build_cache([sim_files["stream"]], options, str(tmp_path / "c"))
    messages = []
    doubled = build_cache([_twice(sim_files["stream"], tmp_path / "twice.stream")], options, str(tmp_path / "c"),
                          shard_images=20, log=messages.append)  # several blocks: repeats across blocks
    assert doubled.n_obs == clean.n_obs and np.array_equal(_observations(doubled), _observations(clean))
    assert doubled.n_observed_images == clean.n_observed_images == clean.n_images
    n = clean.n_images
    assert f"dropped {n} duplicate images (same orientation and reflections as an earlier image) from " \
           f"{tmp_path / 'twice.stream'}" in messages


def test_an_mtz_with_every_row_twice_counts_once(sim_files, tmp_path):
    ds = rs.read_mtz(sim_files["mtz"])
    path = str(tmp_path / "rows_twice.mtz")
    rs.concat([ds, ds]).write_mtz(path)
    clean = build_cache([sim_files["mtz"]], TableOptions(), str(tmp_path / "c"))
    messages = []
    doubled = build_cache([path], TableOptions(), str(tmp_path / "c"), log=messages.append)
    assert doubled.n_obs == clean.n_obs and np.array_equal(_observations(doubled), _observations(clean))
    assert f"dropped {len(ds)} duplicate observations (rows repeated in their image: same image, H, K, L, I, SigI " \
           f"and metadata) from {path}" in messages


def test_a_repeated_image_is_dropped_in_live_mode(sim_files, tmp_path):
    messages = []
    options = TableOptions(spacegroup=SIM_SPACEGROUP, dmin=3.0)
    cache = LiveCache([_twice(sim_files["stream"], tmp_path / "twice.stream")], options, str(tmp_path / "live"),
                      log=messages.append)
    cache.poll()
    clean = build_cache([sim_files["stream"]], options, str(tmp_path / "c"))
    assert cache.manifest.n_obs == clean.n_obs
    assert any(m.startswith(f"dropped {clean.n_images} duplicate images") for m in messages)


def test_distinct_images_are_all_kept(sim_files, tmp_path):
    """No false repeats: the simulated images (and the MTZ of the same images) keep every observation."""
    for path, options in ((sim_files["stream"], TableOptions(spacegroup=SIM_SPACEGROUP)),
                          (sim_files["mtz"], TableOptions())):
        manifest = build_cache([path], options, str(tmp_path / "c"))
        assert manifest.n_obs == len(readers.read_file(path).data)
        assert "duplicate" not in manifest.info["report"]["summary"]


# ------------------------------------------------------------------ 7. defaults from the kept images

def test_images_dropped_for_their_cell_do_not_set_the_resolution(sim_files, tmp_path):
    """A run of a larger cell appended to a stream: its images are dropped and the default dmin stays."""
    from careless_online.simulate import simulate_to_files

    other = simulate_to_files(str(tmp_path / "big"), n_images=6, seed=5, formats=("stream",), dmin=3.0,
                              cell=(100.0, 100.0, 48.0, 90.0, 90.0, 90.0))["stream"]
    text, extra = open(sim_files["stream"], "rb").read(), open(other, "rb").read()
    mixed = tmp_path / "mixed.stream"
    mixed.write_bytes(text + extra[extra.index(BEGIN):])
    options = TableOptions(spacegroup=SIM_SPACEGROUP)
    clean = build_cache([sim_files["stream"]], options, str(tmp_path / "c"))
    both = build_cache([str(mixed)], options, str(tmp_path / "c"))
    assert "6 images dropped for their cell" in both.info["report"]["summary"]
    assert both.index.dmin == clean.index.dmin and len(both.index) == len(clean.index)


# ------------------------------------------------------------------ 8. the real cause

def test_a_one_row_mtz_is_one_observation_not_a_merged_file(sim_files, tmp_path):
    ds = rs.read_mtz(sim_files["mtz"])
    path = str(tmp_path / "one.mtz")
    ds.iloc[:1].copy().write_mtz(path)
    raw = readers.read_mtz(path)
    first = readers.read_mtz(sim_files["mtz"]).data.iloc[:1].reset_index(drop=True)
    assert len(raw.data) == 1 and raw.data.drop(columns="image").equals(first.drop(columns="image"))
    assert build_cache([path], TableOptions(), str(tmp_path / "c")).n_obs == 1
    with pytest.raises(InputError, match="this MTZ is merged"):
        readers.read_mtz(sim_files["truth"])


def _fake_unit(out, files):
    """A checkpoint unit of ``<out>_0.ckpt`` holding only ``files`` (each a few bytes), and ``<out>_0.keras``."""
    unit = out.parent / f"{out.name}_0.ckpt" / "step_00000002"
    unit.mkdir(parents=True)
    for name in files:
        (unit / name).write_text("{}")
    (out.parent / f"{out.name}_0.keras").write_bytes(b"model")
    return unit


def test_resume_without_state_json_points_at_the_saved_model(sim_files, tmp_path, capsys):
    out = tmp_path / "o"
    _fake_unit(out, ["model.keras", "MANIFEST.json"])
    line = _mono_refused(["--resume", "--spacegroups", SIM_SPACEGROUP, "dHKL", sim_files["stream"], out], capsys)
    assert "state.json is missing" in line and "step_00000002" in line
    assert f"--model-in {out}_0.keras and another output prefix" in line


def test_a_second_run_on_one_prefix_is_refused_naming_the_first(sim_files, tmp_path, capsys):
    out = tmp_path / "o"
    with PrefixLock(str(out)):  # the first run, holding the prefix
        line = _mono_refused(["dHKL", sim_files["mtz"], out], capsys)
    assert f"another careless_online run (PID {os.getpid()}) is writing to the output prefix {out}" in line
    assert f"{lock_path(out)}: another" in line and not os.path.exists(lock_path(out))


def test_the_lock_of_a_dead_run_is_taken_over(tmp_path):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    out = str(tmp_path / "o")
    with open(lock_path(out), "w") as handle:
        handle.write(f"{dead.pid}\n")  # left by a killed run: its PID, no lock held
    messages = []
    with PrefixLock(out, messages.append):
        assert open(lock_path(out)).read().strip() == str(os.getpid())
    assert messages == [f"taking over the lock of PID {dead.pid} on {out}: that run is no longer running"]
    assert not os.path.exists(lock_path(out))

