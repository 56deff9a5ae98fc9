"""ASU mapping, Friedel handling, reflection ids and the observation table."""

import gemmi
import numpy as np
import pandas as pd
import pytest
import reciprocalspaceship as rs

from careless_online.errors import InputError
from careless_online.io import readers
from careless_online.io.reflections import ReflectionIndex, map_to_asu
from careless_online.io.table import TableOptions, build_index, make_observations, resolve_symmetry

#: Real files and the space group to give (None: the file's own).
REAL = [("hewl_rotation_unmerged.mtz", None), ("hewl_unmerged_1000.mtz", None),
        ("pyp_laue_off_small.mtz", None), ("lysozyme_pal.stream", "P 43 21 2"), ("stills.expt", None)]


def _table(raw, **options):
    options = TableOptions(**options)
    index = build_index(raw, options)
    table, report = make_observations(raw, index, 0, 0, options)
    return table, report, index


@pytest.mark.parametrize("name,group", REAL)
def test_asu_mapping_agrees_with_gemmi(data_dir, name, group):
    raw = readers.read_file(str(data_dir / name))
    table, _, index = _table(raw, spacegroup=group, anomalous=True)
    sg = index.spacegroup
    asu, ops = gemmi.ReciprocalAsu(sg), sg.operations()
    mapped = [asu.to_asu([int(h), int(k), int(l)], ops) for h, k, l in table[["Hobs", "Kobs", "Lobs"]].to_numpy()]
    gemmi_hkl = np.array([m[0] for m in mapped])
    gemmi_plus = np.array([m[1] % 2 == 1 for m in mapped])  # odd ISYM: Friedel plus
    assert np.array_equal(table[["H", "K", "L"]].to_numpy(), gemmi_hkl)
    centric = rs.utils.is_centric(gemmi_hkl, sg)
    # centric reflections are stored as their plus member; acentric keep gemmi's sign
    assert np.array_equal(table["plus"].to_numpy().astype(bool)[~centric], gemmi_plus[~centric])
    assert np.array_equal(index.hkl[table["refl_id"]], gemmi_hkl)
    assert np.array_equal(index.plus[table["refl_id"]], gemmi_plus | centric)
    # both Friedel signs occur in these files, so the check above is not vacuous
    assert gemmi_plus.any() and (~gemmi_plus[~centric]).any()


@pytest.mark.parametrize("group", ["P 1", "P 1 21 1", "C 1 2 1", "P 43 21 2", "P 61 2 2", "R 3 :H", "I 41/a", "F d -3 m"])
def test_asu_mapping_is_that_of_rs(group):
    hkl = np.random.default_rng(1).integers(-25, 26, size=(4000, 3)).astype(np.int32)
    sg = gemmi.SpaceGroup(group)
    expected, isym = rs.utils.hkl_to_asu(hkl, sg)
    asu, plus = map_to_asu(hkl, sg)
    assert np.array_equal(asu, expected) and np.array_equal(plus, np.asarray(isym) % 2 == 1)


@pytest.mark.parametrize("name,group", REAL)
def test_friedel_mates_and_ids(data_dir, name, group):
    raw = readers.read_file(str(data_dir / name))
    _, _, index = _table(raw, spacegroup=group, anomalous=True)
    sg = index.spacegroup
    obs = raw.data[["H", "K", "L"]].to_numpy()
    obs = obs[~rs.utils.is_absent(obs, sg) & (index.cell.calculate_d_array(obs) >= index.dmin)]
    centric = rs.utils.is_centric(obs, sg)
    plus_ids = index.lookup(*map_to_asu(obs, sg))
    minus_ids = index.lookup(*map_to_asu(-obs, sg))
    assert (plus_ids >= 0).all() and (minus_ids >= 0).all()
    assert (plus_ids[~centric] != minus_ids[~centric]).all()
    assert (plus_ids[centric] == minus_ids[centric]).all()
    assert np.array_equal(index.hkl[plus_ids], index.hkl[minus_ids])
    # without anomalous, mates share one id
    merged = ReflectionIndex.from_cell(index.cell, sg, index.dmin, anomalous=False)
    assert np.array_equal(merged.lookup(*map_to_asu(obs, sg)), merged.lookup(*map_to_asu(-obs, sg)))
    assert len(index) == len(merged) + int((~merged.centric).sum())
    # ids are stable: the index rebuilt from its config gives the same ids
    rebuilt = ReflectionIndex.from_config(index.to_config())
    assert np.array_equal(rebuilt.hkl, index.hkl) and np.array_equal(rebuilt.plus, index.plus)
    assert np.array_equal(rebuilt.lookup(*map_to_asu(obs, sg)), plus_ids)


def test_index_covers_the_asu_once(data_dir):
    raw = readers.read_file(str(data_dir / "hewl_rotation_unmerged.mtz"))
    cell, sg = resolve_symmetry(raw, TableOptions())
    index = ReflectionIndex.from_cell(cell, sg, 3.0)
    expected = rs.utils.generate_reciprocal_asu(cell, sg, 3.0)
    assert len(index) == len(expected)
    assert (index.dHKL >= 3.0 - 1e-4).all()
    assert np.all(np.diff(index.dHKL) <= 1e-6)  # low resolution first
    assert not rs.utils.is_absent(index.hkl, sg).any()
    assert np.array_equal(index.lookup(index.hkl, index.plus), np.arange(len(index)))
    assert (index.lookup([[0, 0, 0]], [True]) == -1).all()


def _sorted(table):
    columns = ["image_id", "Hobs", "Kobs", "Lobs"]
    return table.sort_values(columns).reset_index(drop=True)


def test_stream_and_mtz_give_the_same_table(sim_files):
    stream = readers.read_file(sim_files["stream"])
    mtz = readers.read_file(sim_files["mtz"])
    t_mtz, r_mtz, index = _table(mtz, dmin=3.0)
    options = TableOptions(spacegroup="P 43 21 2", dmin=3.0)
    assert build_index(stream, options).to_config()["n_reflections"] == len(index)
    t_stream, r_stream = make_observations(stream, index, 0, 0, options)
    assert len(t_stream) == len(t_mtz) == r_mtz.read > 1000
    a, b = _sorted(t_stream), _sorted(t_mtz)
    for c in ("image_id", "Hobs", "Kobs", "Lobs", "H", "K", "L", "plus", "refl_id"):
        assert np.array_equal(a[c], b[c]), c
    # the stream prints I and sigma with 2 decimals
    np.testing.assert_allclose(a["I"], b["I"], atol=0.006)
    np.testing.assert_allclose(a["SigI"], b["SigI"], atol=0.006)
    np.testing.assert_allclose(a["XDET"], b["XDET"], atol=0.06)


def test_refl_ids_match_truth(sim_files):
    truth = rs.read_mtz(sim_files["truth"])
    table, _, index = _table(readers.read_file(sim_files["mtz"]), dmin=3.0)
    truth_hkl = truth.get_hkls()
    # the truth is written in the same ASU convention
    assert np.array_equal(map_to_asu(truth_hkl, index.spacegroup)[0], truth_hkl)
    truth_ids = index.lookup(truth_hkl, np.ones(len(truth_hkl), bool))
    assert (truth_ids >= 0).all()
    assert len(np.unique(truth_ids)) == len(truth_hkl) == len(index)
    assert set(np.unique(table["refl_id"])) <= set(truth_ids)
    # each observation's |F| truth is that of its reflection id
    truth_f = pd.Series(truth["F"].to_numpy(), index=truth_ids)
    assert np.isfinite(truth_f.loc[table["refl_id"]]).all()


def _with_absent_noise(raw, n, outliers, seed):
    """Add ``n`` observations at absent positions (00l, l odd) of pure noise."""
    rng = np.random.default_rng(seed)
    data = raw.data
    extra = data.iloc[rng.integers(0, len(data), n)].copy()
    extra[["H", "K"]] = 0
    extra["L"] = (2 * rng.integers(0, 6, n) + 1).astype(np.int32)
    extra["SigI"] = np.float32(5.0)
    extra["I"] = (5.0 * rng.normal(size=n)).astype(np.float32)
    extra.iloc[:outliers, extra.columns.get_loc("I")] = 50.0
    return readers.RawReflections(pd.concat([data, extra], ignore_index=True), raw.cell, raw.spacegroup,
                                  raw.image_cells, raw.path)


def test_noise_at_absent_positions_is_dropped(sim_files):
    raw = _with_absent_noise(readers.read_file(sim_files["mtz"]), 80, outliers=8, seed=1)
    table, report, _ = _table(raw, dmin=3.0)
    assert report.dropped["systematic absence"] == 80
    assert not rs.utils.is_absent(table[["Hobs", "Kobs", "Lobs"]].to_numpy(), "P 43 21 2").any()


@pytest.mark.parametrize("truth_group,cell,claimed,seed", [
    ("P 1", (79.1, 79.1, 38.0, 90, 90, 90), "P 43 21 2", 3),
    ("P 1", (50.0, 60.0, 70.0, 90, 90, 90), "P 21 21 21", 4),
    ("P 1 21 1", (50.0, 60.0, 70.0, 90, 90, 90), "P 21 21 21", 0),
    ("P 1 21 1", (50.0, 60.0, 70.0, 90, 90, 90), "P 21 21 21", 4),
])
def test_observed_absences_refuse_the_group(tmp_path, truth_group, cell, claimed, seed):
    from careless_online.simulate import simulate_to_files

    paths = simulate_to_files(str(tmp_path / "x"), n_images=50, seed=seed, formats=("mtz",),
                              spacegroup=truth_group, cell=cell, dmin=3.0)
    raw = readers.read_file(paths["mtz"])
    with pytest.raises(InputError, match="contradicts the data") as err:
        _table(raw, spacegroup=claimed)
    assert str(err.value).startswith(paths["mtz"]) and claimed in str(err.value)
    # the true group itself is accepted
    _table(raw)


def test_cell_outliers_dropped_and_counted(tmp_path):
    from careless_online.simulate import simulate_to_files

    paths = simulate_to_files(str(tmp_path / "j"), n_images=40, seed=5, formats=("stream",), dmin=3.5,
                              cell_jitter=0.04)
    images = pd.read_csv(paths["images"])
    ref = np.array([79.1, 79.1, 38.0])
    deviation = np.abs(images[["a", "b", "c"]].to_numpy() / ref - 1).max(axis=1)
    tolerance = 0.05
    bad = np.flatnonzero(deviation > tolerance)
    assert 0 < len(bad) < len(images)
    raw = readers.read_file(paths["stream"])
    table, report, _ = _table(raw, spacegroup="P 43 21 2", cell_tolerance=tolerance)
    assert report.images_dropped_cell == len(bad)
    assert report.dropped["image cell off reference"] == int(np.isin(raw.data["image"], bad).sum())
    assert set(np.unique(table["image_id"])) == set(range(len(images))) - set(bad)
    # a wide tolerance keeps every image
    _, report, _ = _table(raw, spacegroup="P 43 21 2", cell_tolerance=0.5)
    assert report.images_dropped_cell == 0


@pytest.mark.parametrize("options, message", [
    ({"cell_tolerance": 0.0}, "--cell-tolerance must be a positive"),
    ({"cell_tolerance": -0.1}, "--cell-tolerance must be a positive"),
    ({"dmin": 0.0}, "--dmin must be positive"),
    ({"dmin": float("nan")}, "--dmin must be positive"),
    ({"isigi_cutoff": float("inf")}, "--isigi-cutoff must be a number"),
    ({"image_key": " "}, "--image-key is empty"),
])
def test_table_options_are_validated_at_construction(options, message):
    with pytest.raises(InputError, match=message):
        TableOptions(**options)
