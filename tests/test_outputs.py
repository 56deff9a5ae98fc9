"""Output files: exact intensity moments, predictions MTZ (ISYM, streaming, ranges),
wavelength, atomic replacement and full-disk errors."""

import errno
import os
import tracemalloc

import gemmi
import numpy as np
import pytest
import reciprocalspaceship as rs
import scipy.stats

from careless_online.errors import InputError
from careless_online.io import atomic, writers
from careless_online.io.reflections import ReflectionIndex
from careless_online.io.wavelength import file_wavelength, input_wavelength

from conftest import DATA

CELL = gemmi.UnitCell(40.0, 50.0, 60.0, 90.0, 90.0, 90.0)
SG = gemmi.SpaceGroup("P 21 21 21")


@pytest.fixture(scope="module")
def index():
    return ReflectionIndex.from_cell(CELL, SG, 4.0, anomalous=True)


def parts(index, n_parts, rows, seed=0):
    """Random prediction parts over the reflections of ``index``."""
    rng = np.random.default_rng(seed)
    for _ in range(n_parts):
        ids = rng.integers(0, len(index), rows)
        yield {"refl_id": ids, "image_id": rng.integers(0, 50, rows), "file_id": np.zeros(rows),
               "test": rng.integers(0, 2, rows), "Iobs": rng.normal(10, 3, rows), "SigIobs": np.full(rows, 2.0),
               "Ipred": rng.gamma(2.0, 5.0, rows), "SigIpred": np.full(rows, 1.5)}


# --------------------------------------------------------------------------- intensity moments

@pytest.mark.parametrize("loc, scale", [(0.0, 1.0), (-2.0, 0.5), (3.0, 1.0), (50.0, 0.5), (-8.0, 1.0)])
def test_intensity_moments_are_exact(loc, scale):
    q = scipy.stats.truncnorm(-loc / scale, np.inf, loc=loc, scale=scale)
    i, sigi = writers.intensity_moments(np.array([loc]), np.array([scale]))
    np.testing.assert_allclose(i, q.moment(2), rtol=1e-6)
    np.testing.assert_allclose(sigi, np.sqrt(q.moment(4) - q.moment(2) ** 2), rtol=1e-5)


def test_merged_sigi_uses_exact_moments(index):
    # a weak reflection (loc near 0): the Gaussian approximation is off by tens of percent
    loc = np.full(len(index), 0.2)
    scale = np.full(len(index), 1.0)
    q = scipy.stats.truncnorm(-0.2, np.inf, loc=0.2, scale=1.0)
    f, sigf = np.full(len(index), q.mean()), np.full(len(index), q.std())
    i, sigi = writers.intensity_moments(loc, scale)
    ds = writers.merged_table(index, f, sigf, np.ones(len(index)), i, sigi)
    exact = np.sqrt(q.moment(4) - q.moment(2) ** 2)
    np.testing.assert_allclose(ds["SIGI(+)"].dropna(), exact, rtol=1e-5)
    np.testing.assert_allclose(ds["I(+)"].dropna(), q.moment(2), rtol=1e-6)
    approximate = np.sqrt(4 * q.mean() ** 2 * q.std() ** 2 + 2 * q.std() ** 4)
    assert abs(approximate - exact) / exact > 0.1


# --------------------------------------------------------------------------- predictions MTZ

def test_predictions_isym_marks_friedel_minus(index, tmp_path):
    path = str(tmp_path / "p.mtz")
    data = list(parts(index, 2, 500))
    writers.write_predictions(index, 1000, data, path)
    raw = gemmi.read_mtz_file(path)
    isym = np.asarray(raw.column_with_label("M/ISYM"))
    plus = index.plus[np.concatenate([p["refl_id"] for p in data])]
    assert set(isym[plus]) == {1} and set(isym[~plus]) == {2}
    ds = rs.read_mtz(path)  # rs applies M/ISYM: the observed index of a minus mate is -H
    observed = ds.reset_index()[["H", "K", "L"]].to_numpy()
    stored = index.hkl[np.concatenate([p["refl_id"] for p in data])]
    np.testing.assert_array_equal(observed[plus], stored[plus])
    np.testing.assert_array_equal(observed[~plus], -stored[~plus])
    asu, isym_back = rs.utils.hkl_to_asu(observed, SG)
    np.testing.assert_array_equal(asu, stored)
    np.testing.assert_array_equal(isym_back % 2 == 1, plus)


def test_predictions_read_back_with_gemmi_and_rs(index, tmp_path):
    path = str(tmp_path / "p.mtz")
    data = list(parts(index, 3, 400))
    writers.write_predictions(index, 1200, data, path, wavelength=0.98)
    mtz = gemmi.read_mtz_file(path)
    assert mtz.nreflections == 1200 and mtz.spacegroup.xhm() == SG.xhm()
    assert [d.wavelength for d in mtz.datasets] == [0.98, 0.98]
    ids = np.concatenate([p["refl_id"] for p in data])
    d = index.dHKL[ids]
    assert mtz.resolution_high() == pytest.approx(d.min(), rel=1e-5)
    assert mtz.resolution_low() == pytest.approx(d.max(), rel=1e-5)
    for name in ("Iobs", "Ipred", "image_id"):
        values = np.concatenate([p[name] for p in data]).astype(np.float32)
        column = mtz.column_with_label(name)
        np.testing.assert_array_equal(np.asarray(column), values)
        assert column.min_value == pytest.approx(values.min()) and column.max_value == pytest.approx(values.max())
    ds = rs.read_mtz(path)
    assert len(ds) == 1200 and not ds.merged
    np.testing.assert_allclose(ds["SigIpred"], 1.5)


def test_predictions_row_count_is_checked(index, tmp_path):
    with pytest.raises(ValueError, match="expected 999"):
        writers.write_predictions(index, 999, parts(index, 1, 100), str(tmp_path / "p.mtz"))
    assert not os.listdir(tmp_path)


def _peak_bytes(index, path, n_parts, rows):
    tracemalloc.start()
    try:
        writers.write_predictions(index, None, parts(index, n_parts, rows), path)
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_predictions_memory_is_one_part(index, tmp_path):
    rows = 20000
    small = _peak_bytes(index, str(tmp_path / "a.mtz"), 4, rows)
    large = _peak_bytes(index, str(tmp_path / "b.mtz"), 40, rows)
    file_bytes = os.path.getsize(tmp_path / "b.mtz")
    # ten times the data, the same peak: the file (13 MB) is never held in memory
    assert large < 1.3 * small
    assert large < file_bytes / 4
    assert gemmi.read_mtz_file(str(tmp_path / "b.mtz")).nreflections == 40 * rows


# --------------------------------------------------------------------------- wavelength

def test_wavelength_of_inputs(tmp_path):
    assert file_wavelength(DATA / "stills.expt") == pytest.approx(1.2713057, rel=1e-6)
    stream = file_wavelength(DATA / "lysozyme_pal.stream")
    assert stream == pytest.approx(12398.42 / 9700.0, rel=0.02)
    assert file_wavelength(DATA / "stills.refl") == file_wavelength(DATA / "stills.expt")  # the pair's beam
    assert file_wavelength(DATA / "hewl_rotation_unmerged.mtz") is None  # records 0
    assert input_wavelength([DATA / "stills.refl", DATA / "lysozyme_pal.stream"]) == pytest.approx((stream + 1.2713057) / 2)
    assert input_wavelength([DATA / "hewl_rotation_unmerged.mtz"]) is None


def test_merged_mtz_carries_wavelength(index, tmp_path):
    n = len(index)
    ds = writers.merged_table(index, np.ones(n), np.ones(n), np.ones(n))
    path = writers.write_mtz(ds, str(tmp_path / "m.mtz"), wavelength=1.1)
    assert {d.wavelength for d in gemmi.read_mtz_file(path).datasets} == {1.1}


# --------------------------------------------------------------------------- atomic writes, full disk

def test_failed_write_keeps_previous_file(tmp_path):
    path = tmp_path / "out.csv"
    path.write_text("old complete file\n")
    with pytest.raises(KeyboardInterrupt):
        with atomic.atomic_path(str(path)) as tmp:
            with open(tmp, "w") as handle:
                handle.write("half of a new")
            raise KeyboardInterrupt
    assert path.read_text() == "old complete file\n"
    assert os.listdir(tmp_path) == ["out.csv"]


def test_stale_temporary_is_removed_by_next_write(tmp_path):
    path = tmp_path / "fig.png"
    stale = tmp_path / ".fig.tmp99999.png"
    stale.write_bytes(b"killed")
    atomic.write_atomically(str(path), lambda tmp: open(tmp, "wb").write(b"png"))
    assert sorted(os.listdir(tmp_path)) == ["fig.png"] and path.read_bytes() == b"png"


def _full_disk(*args, **kwargs):
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def test_full_disk_while_writing_predictions(index, tmp_path, monkeypatch):
    path = tmp_path / "p.mtz"
    writers.write_predictions(index, 1000, parts(index, 2, 500), str(path))
    before = path.read_bytes()
    calls = []

    def fill_disk_on_second_part(*args):
        calls.append(1)
        if len(calls) == 2:
            _full_disk()
        return block(*args)

    block = writers._prediction_block
    monkeypatch.setattr(writers, "_prediction_block", fill_disk_on_second_part)
    with pytest.raises(InputError) as error:
        writers.write_predictions(index, 1000, parts(index, 2, 500, seed=1), str(path))
    assert "no space left on device" in str(error.value) and str(path) in str(error.value)
    assert "\n" not in str(error.value)
    assert path.read_bytes() == before and os.listdir(tmp_path) == ["p.mtz"]


def test_full_disk_while_writing_merged_mtz(index, tmp_path, monkeypatch):
    n = len(index)
    path = tmp_path / "m.mtz"
    ds = writers.merged_table(index, np.ones(n), np.ones(n), np.ones(n))
    writers.write_mtz(ds, str(path))
    before = path.read_bytes()

    class HalfWritten:
        def __init__(self, mtz):
            self.mtz = mtz

        def write_to_file(self, tmp):
            with open(tmp, "wb") as handle:
                handle.write(self.mtz.write_to_bytes()[:100])
            _full_disk()

    to_gemmi = writers._to_gemmi
    monkeypatch.setattr(writers, "_to_gemmi", lambda *a: HalfWritten(to_gemmi(*a)))
    with pytest.raises(InputError, match="no space left on device"):
        writers.write_mtz(ds, str(path))
    assert path.read_bytes() == before and os.listdir(tmp_path) == ["m.mtz"]


def test_gemmi_write_failure_is_one_line(index, tmp_path):
    n = len(index)
    ds = writers.merged_table(index, np.ones(n), np.ones(n), np.ones(n))
    with pytest.raises(InputError, match="cannot write"):
        writers.write_mtz(ds, str(tmp_path / "missing_folder" / "m.mtz"))


def test_other_errors_are_not_turned_into_write_errors(index, tmp_path):
    def broken_parts():
        yield from parts(index, 1, 10)
        raise RuntimeError("a bug, not a full disk")

    with pytest.raises(RuntimeError, match="a bug"):
        writers.write_predictions(index, None, broken_parts(), str(tmp_path / "p.mtz"))
    assert not os.listdir(tmp_path)


def test_full_disk_during_a_merge_is_one_line_and_keeps_outputs(sim_files, tmp_path, monkeypatch, capsys):
    from careless_online.cli.main import main

    args = ["mono", "--disable-progress-bar", "--spacegroups", "P 43 21 2", "--naive", "--cache-dir",
            str(tmp_path / "cache"), "dHKL", sim_files["stream"], str(tmp_path / "out" / "n")]
    assert main(args) == 0
    predictions = tmp_path / "out" / "n_predictions_0.mtz"
    before = predictions.read_bytes()
    monkeypatch.setattr(writers, "_prediction_block", _full_disk)
    capsys.readouterr()
    with pytest.raises(SystemExit) as stopped:
        main(args)
    err = capsys.readouterr().err.strip().splitlines()
    assert stopped.value.code == 2 and len(err) == 1
    assert "no space left on device" in err[0] and "n_predictions_0.mtz" in err[0]
    assert predictions.read_bytes() == before
    assert not [p for p in os.listdir(tmp_path / "out") if ".tmp" in p]


def test_predictions_isym_is_the_symmetry_operator_of_the_observed_index(index, tmp_path):
    # observed indices anywhere in reciprocal space, mapped to the ASU as the readers do
    rng = np.random.default_rng(3)
    observed = index.hkl[rng.integers(0, len(index), 400)] * rng.choice([-1, 1], size=(400, 3))
    asu, isym = rs.utils.hkl_to_asu(observed, SG)
    from careless_online.io.reflections import map_to_asu

    ids = index.lookup(*map_to_asu(observed, SG))
    keep = ids >= 0
    part = next(parts(index, 1, int(keep.sum())))
    part.update(refl_id=ids[keep], Hobs=observed[keep, 0], Kobs=observed[keep, 1], Lobs=observed[keep, 2])
    path = str(tmp_path / "p.mtz")
    writers.write_predictions(index, None, [part], path)
    assert len(set(np.asarray(gemmi.read_mtz_file(path).column_with_label("M/ISYM")))) > 2
    back = rs.read_mtz(path).reset_index()[["H", "K", "L"]].to_numpy()
    np.testing.assert_array_equal(back, observed[keep])  # every original index comes back
