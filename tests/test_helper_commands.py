"""careless's helper commands: bfactor, apply_bfactor, friedelize/unfriedelize, xds2mtz, filter_image, table_one."""

import gemmi
import numpy as np
import pandas as pd
import pytest
import reciprocalspaceship as rs

from careless_online.cli import (apply_bfactor, bfactor, cchalf, completeness, filter_image, friedelize, isigi,
                                 table_one, unfriedelize, xds2mtz, ccanom)

HKL_TYPES = {"H": "H", "K": "H", "L": "H"}
CELL, GROUP = gemmi.UnitCell(40.0, 50.0, 60.0, 90, 90, 90), gemmi.SpaceGroup("P 21 21 21")


def _asu(dmin, anomalous=False):
    hkl = rs.utils.generate_reciprocal_asu(CELL, GROUP, dmin, anomalous=anomalous)
    return hkl, rs.utils.compute_dHKL(hkl, CELL)


def _merged(b, rng, dmin=1.6):
    """A merged table whose intensities follow Wilson's law with B factor ``b`` (exponential, acentric-like)."""
    hkl, d = _asu(dmin)
    intensity = rng.exponential(np.exp(-b / (2 * d ** 2)))
    sigma = 0.05 * intensity + 1e-3
    ds = rs.DataSet({"H": hkl[:, 0], "K": hkl[:, 1], "L": hkl[:, 2], "F": np.sqrt(intensity), "SIGF": 0.5 * sigma,
                     "I": intensity, "SIGI": sigma, "N": np.full(len(d), 4)}, cell=CELL, spacegroup=GROUP,
                    merged=True).astype(HKL_TYPES).set_index(["H", "K", "L"])
    return ds.astype({"F": "F", "SIGF": "Q", "I": "J", "SIGI": "Q", "N": "I"})


def test_bfactor_recovers_a_known_b_and_apply_bfactor_adds_to_it(tmp_path, capsys):
    path = tmp_path / "b20.mtz"
    _merged(20.0, np.random.default_rng(1)).write_mtz(str(path))
    assert bfactor.main([str(path), "-c", "0"]) == 0
    b, error = map(float, capsys.readouterr().out.split(":")[1].split("A^2")[0].split("+-"))
    assert abs(b - 20.0) < max(3 * error, 1.0)
    out = tmp_path / "b35.mtz"
    assert apply_bfactor.main([str(path), str(out), "-b", "15"]) == 0
    capsys.readouterr()
    assert bfactor.main([str(out), "-c", "0"]) == 0
    b2 = float(capsys.readouterr().out.split(":")[1].split("+-")[0])
    assert b2 - b == pytest.approx(15.0, abs=0.05)
    rescaled, original = rs.read_mtz(str(out)), rs.read_mtz(str(path))
    ratio_f = (rescaled["F"] / original["F"]).to_numpy()
    ratio_i = (rescaled["I"] / original["I"]).to_numpy()
    assert np.allclose(ratio_f ** 2, ratio_i, rtol=1e-4) and np.all(ratio_f < 1)
    assert np.allclose(rescaled["SIGF"] / original["SIGF"], ratio_f, rtol=1e-4)


def test_apply_bfactor_never_overwrites_its_input(tmp_path, capsys):
    path = tmp_path / "m.mtz"
    _merged(10.0, np.random.default_rng(2)).write_mtz(str(path))
    before = path.read_bytes()
    with pytest.raises(SystemExit) as stop:
        apply_bfactor.main([str(path), str(path), "-b", "5"])
    assert stop.value.code == 2 and "overwrite" in capsys.readouterr().err
    assert path.read_bytes() == before


def _unmerged(rng, n_images=30, per_image=300):
    """Unmerged observations (random indices as indexed, in P 21 21 21) with a true anomalous signal."""
    hkl, _ = _asu(2.0, anomalous=True)
    truth = rng.exponential(1.0, len(hkl))
    pick = rng.integers(0, len(hkl), n_images * per_image)
    ops = [op for op in GROUP.operations()]
    rows = []
    for j, i in enumerate(pick):
        h = ops[j % len(ops)].apply_to_hkl(hkl[i].tolist())
        rows.append(h)
    rows = np.array(rows)
    intensity = truth[pick] + rng.normal(0, 0.01, len(pick))
    ds = rs.DataSet({"H": rows[:, 0], "K": rows[:, 1], "L": rows[:, 2], "I": intensity,
                     "SIGI": np.full(len(pick), 0.01), "BATCH": np.repeat(np.arange(1, n_images + 1), per_image)},
                    cell=CELL, spacegroup=GROUP, merged=False).astype(HKL_TYPES).set_index(["H", "K", "L"])
    return ds.astype({"I": "J", "SIGI": "Q", "BATCH": "B"})


def _merge(ds, anomalous=False):
    merged = rs.algorithms.merge(ds, "I", "SIGI", anomalous=anomalous)
    return merged.astype({c: "I" for c in merged.columns if c.startswith("N")})


def test_friedelize_and_unfriedelize_round_trip_to_the_anomalous_merge(tmp_path):
    ds = _unmerged(np.random.default_rng(3))
    path = tmp_path / "unmerged.mtz"
    ds.write_mtz(str(path))
    plus, minus = tmp_path / "plus.mtz", tmp_path / "minus.mtz"
    assert friedelize.main([str(path), "-p", str(plus), "-m", str(minus)]) == 0
    halves = [rs.read_mtz(str(p)) for p in (plus, minus)]
    assert len(halves[0]) + len(halves[1]) == len(ds) and len(halves[1]) > 0
    for half, parity in zip(halves, (1, 0)):
        acentric = ~half.label_centrics()["CENTRIC"].to_numpy()
        assert np.all(half.hkl_to_asu()["M/ISYM"].to_numpy()[acentric] % 2 == parity)
    merged_paths = [tmp_path / "plus_merged.mtz", tmp_path / "minus_merged.mtz"]
    for half, out in zip(halves, merged_paths):
        _merge(half).write_mtz(str(out))
    joined_path = tmp_path / "anom.mtz"
    assert unfriedelize.main([*map(str, merged_paths), str(joined_path)]) == 0
    joined = rs.read_mtz(str(joined_path))
    expected = _merge(ds, anomalous=True)  # rs writes I(-) = I(+) for centric reflections, careless NaN
    common = joined.index.intersection(expected.index)
    assert len(common) > 0.9 * len(expected)
    acentric = ~joined.loc[common].label_centrics()["CENTRIC"].to_numpy()
    for column in ("I(+)", "I(-)"):
        assert np.allclose(joined.loc[common, column].to_numpy(float)[acentric],
                           expected.loc[common, column].to_numpy(float)[acentric], equal_nan=True, rtol=1e-5)
    centric = joined.label_centrics()["CENTRIC"].to_numpy()
    assert centric.any() and np.isnan(joined["I(-)"].to_numpy(float)[centric]).all()
    assert joined["I(+)"].dtype.mtztype == "K" and joined["SIGI(-)"].dtype.mtztype == "M"


XDS_HEADER = """!FORMAT=XDS_ASCII    MERGE=FALSE    FRIEDEL'S_LAW=FALSE
!SPACE_GROUP_NUMBER=   19
!UNIT_CELL_CONSTANTS=    40.000    50.000    60.000  90.000  90.000  90.000
!X-RAY_WAVELENGTH=  0.979
!NUMBER_OF_ITEMS_IN_EACH_DATA_RECORD=12
!ITEM_H=1
!ITEM_K=2
!ITEM_L=3
!ITEM_IOBS=4
!ITEM_SIGMA(IOBS)=5
!ITEM_XD=6
!ITEM_YD=7
!ITEM_ZD=8
!ITEM_RLP=9
!ITEM_PEAK=10
!ITEM_CORR=11
!ITEM_PSI=12
!END_OF_HEADER
"""


def test_xds2mtz_round_trips_an_xds_ascii_file(tmp_path, capsys):
    rng = np.random.default_rng(4)
    rows = [(int(rng.integers(-10, 10)), int(rng.integers(-10, 10)), int(rng.integers(1, 12)),
             float(rng.uniform(1, 1000)), float(rng.uniform(1, 30)), float(rng.uniform(0, 2000)),
             float(rng.uniform(0, 2000)), round(float(rng.uniform(0.6, 20.4)), 1) + 0.01, 1.0, 100.0, 90.0, 10.0) for _ in range(60)]
    rows[5] = rows[5][:4] + (-1.0,) + rows[5][5:]  # rejected by XDS
    lines = [f"{h:6d}{k:6d}{l:6d} {i:.3E} {s:.3E} {x:7.1f} {y:7.1f} {z:8.2f} {r:.4f} {p:4.0f} {c:3.0f} {psi:7.2f}"
             for h, k, l, i, s, x, y, z, r, p, c, psi in rows]
    path = tmp_path / "XDS_ASCII.HKL"
    path.write_text(XDS_HEADER + "\n".join(lines) + "\n!END_OF_DATA\n")
    out = tmp_path / "xds.mtz"
    assert xds2mtz.main([str(path), str(out)]) == 0
    assert "1 rejected" in capsys.readouterr().out
    ds = rs.read_mtz(str(out))
    kept = [r for j, r in enumerate(rows) if j != 5]
    assert len(ds) == 59 and ds.spacegroup.number == 19 and ds.cell.c == pytest.approx(60.0)
    assert np.allclose(ds["I"].to_numpy(), [r[3] for r in kept], rtol=1e-3)
    assert np.array_equal(ds.reset_index()["L"].to_numpy(), [r[2] for r in kept])
    assert np.array_equal(ds["BATCH"].to_numpy(), np.round([r[7] for r in kept]))
    assert {"SIGI", "XDET", "YDET", "ZDET"} <= set(ds.columns) and ds["I"].dtype.mtztype == "J"


def test_xds2mtz_refuses_a_file_without_the_xds_header(tmp_path, capsys):
    path = tmp_path / "XDS_ASCII.HKL"
    path.write_text("1 2 3 4 5\n")
    with pytest.raises(SystemExit) as stop:
        xds2mtz.main([str(path), str(tmp_path / "x.mtz")])
    assert stop.value.code == 2 and "not an XDS_ASCII.HKL" in capsys.readouterr().err
    assert not (tmp_path / "x.mtz").exists()


def test_filter_image_drops_the_images_whose_ccpred_is_low(tmp_path, capsys):
    rng = np.random.default_rng(5)
    inputs = [_unmerged(rng, n_images=6, per_image=50), _unmerged(rng, n_images=4, per_image=50)]
    inputs[1]["BATCH"] = (inputs[1]["BATCH"].to_numpy() * 10).astype(np.int32)  # numbering need not start at 1
    inputs[1] = inputs[1].astype({"BATCH": "B"})
    paths = [tmp_path / f"in{i}.mtz" for i in range(2)]
    parts, offset, bad = [], 0, {2, 7}  # global image numbers with useless predictions
    for file_id, (ds, path) in enumerate(zip(inputs, paths)):
        ds.write_mtz(str(path))
        _, rank = np.unique(ds["BATCH"].to_numpy(), return_inverse=True)
        image_id = rank + offset
        offset = image_id.max() + 1
        iobs = ds["I"].to_numpy(float)
        ipred = np.where(np.isin(image_id, list(bad)), rng.normal(size=len(iobs)), iobs + rng.normal(0, 0.01, len(iobs)))
        parts.append(pd.DataFrame({"image_id": image_id, "file_id": file_id, "Iobs": iobs,
                                   "SigIobs": ds["SIGI"].to_numpy(float), "Ipred": ipred, "test": 0}))
    table = pd.concat(parts, ignore_index=True)
    predictions = rs.DataSet(table.assign(H=1, K=1, L=1), cell=CELL, spacegroup=GROUP, merged=False)
    predictions = predictions.astype(HKL_TYPES).set_index(["H", "K", "L"]).astype(
        {"image_id": "I", "file_id": "I", "test": "I", "Iobs": "J", "SigIobs": "Q", "Ipred": "J"})
    pred_path = tmp_path / "merge_predictions_0.mtz"
    predictions.write_mtz(str(pred_path))
    assert filter_image.main([str(pred_path), *map(str, paths), "-c", "0.5", "-o", str(tmp_path / "kept")]) == 0
    kept = [rs.read_mtz(str(tmp_path / f"kept_{i}.mtz")) for i in range(2)]
    assert sorted(set(inputs[0]["BATCH"]) - set(kept[0]["BATCH"])) == [3]
    assert sorted(set(inputs[1]["BATCH"]) - set(kept[1]["BATCH"])) == [20]
    assert len(kept[0]) == len(inputs[0]) - 50 and len(kept[1]) == len(inputs[1]) - 50


def _halves(merged, rng, noise):
    """Half-dataset merges: the merged values with independent noise in each half (repeat 0)."""
    halves = []
    for half in (0, 1):
        part = merged.copy()
        for column in [c for c in merged.columns if c.startswith(("F", "I"))]:
            part[column] = merged[column].to_numpy(float) * (1 + noise * rng.normal(size=len(part)))
        part["repeat"], part["half"] = 0, half
        halves.append(part.astype({c: merged[c].dtype for c in merged.columns} | {"repeat": "I", "half": "I"}))
    return rs.concat(halves)


def _shell_value(command, argv, column_prefix, tmp_path, row):
    out = tmp_path / "stats.csv"
    assert command.main([*argv, "-o", str(out)]) == 0
    table = pd.read_csv(out, comment="#", index_col=0)
    table.index = table.index.astype(str)
    return float(table.loc[row, [c for c in table.columns if c.startswith(column_prefix)][0]])


def test_table_one_prints_the_numbers_of_the_statistics_commands(tmp_path, capsys):
    rng = np.random.default_rng(6)
    merged = _merged(15.0, rng, dmin=2.0)
    merged = merged[rng.uniform(size=len(merged)) < 0.9]  # 90 % complete
    anomalous = merged.copy()
    for column in ("F", "SIGF", "I", "SIGI", "N"):
        anomalous[column + "(+)"] = merged[column]
        anomalous[column + "(-)"] = merged[column].to_numpy(float) * (1.0 + 0.1 * rng.normal(size=len(merged)))
    types = {"F(+)": "G", "F(-)": "G", "SIGF(+)": "L", "SIGF(-)": "L", "I(+)": "K", "I(-)": "K", "SIGI(+)": "M",
             "SIGI(-)": "M", "N(+)": "I", "N(-)": "I"}
    anomalous = anomalous.astype(types)
    paths = {"merged": tmp_path / "m_0.mtz", "xval": tmp_path / "m_xval_0.mtz"}
    anomalous.write_mtz(str(paths["merged"]))
    _halves(anomalous, rng, 0.3).write_mtz(str(paths["xval"]))
    csv = tmp_path / "table.csv"
    assert table_one.main([str(paths["merged"]), str(paths["xval"]), "-b", "5", "-o", str(csv)]) == 0
    printed = capsys.readouterr().out
    table = pd.read_csv(csv, index_col=0)
    m, x = str(paths["merged"]), str(paths["xval"])
    expected = {
        "Completeness (%)": 100 * _shell_value(completeness, [m, "-b", "5"], "completeness", tmp_path, "overall"),
        "Mean I/sigma(I)": _shell_value(isigi, [m, "-b", "5"], "I/", tmp_path, "overall"),
        "CC1/2": _shell_value(cchalf, [x, "-b", "5", "--intensities", "--merge-friedel", "--method", "pearson"],
                              "CC1/2", tmp_path, "overall"),
        "CCanom": _shell_value(ccanom, [x, "-b", "5", "--intensities", "--method", "pearson"], "CCanom",
                               tmp_path, "overall"),
    }
    for name, value in expected.items():
        assert table.loc[name, "overall"] == pytest.approx(value, rel=1e-4), name
    assert table.loc["Completeness (%)", "overall"] == pytest.approx(90, abs=2)
    assert table.loc["Multiplicity", "overall"] == pytest.approx(4.0)
    outer = _shell_value(isigi, [m, "-b", "5"], "I/", tmp_path, "5")
    assert table.loc["Mean I/sigma(I)", "outer shell"] == pytest.approx(outer, rel=1e-4)
    assert "Resolution (A)" in printed and "CCanom" in printed
