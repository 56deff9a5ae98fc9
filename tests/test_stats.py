"""Tests of careless_online.stats and the statistics commands.

Synthetic data with known answers: noise models with analytic correlations,
full and partial reciprocal ASUs, a small model with sulfur anomalous scatterers.
"""

from pathlib import Path

import gemmi
import numpy as np
import pandas as pd
import pytest
import reciprocalspaceship as rs
import scipy.stats

from careless_online.cli import (anomalous_peaks, ccanom, cchalf, ccpred, completeness,
                                 image_ccpred, isigi, plot_history, rsplit)
from careless_online.stats import binning
from careless_online.stats.completeness import completeness_table
from careless_online.stats.correlation import correlation, pearson_per_group, spearman_per_group
from careless_online.stats.halves import ccanom_table, cchalf_table, rsplit_table
from careless_online.stats.history import history_summary
from careless_online.stats.maps import anomalous_peak_table
from careless_online.stats.predictions import ccpred_table, image_cc_summary, image_cc_table
from careless_online.stats.reference import cc_to_reference
from careless_online.stats.signal import isigi_table

DATA = Path(__file__).resolve().parent / "data"
CELL = gemmi.UnitCell(40.0, 50.0, 60.0, 90.0, 90.0, 90.0)
SPACEGROUP = gemmi.SpaceGroup("P 21 21 21")


# --------------------------------------------------------------------------- synthetic data

def asu(dmin=2.0, cell=CELL, spacegroup=SPACEGROUP):
    """An empty merged DataSet holding every reflection of the reciprocal ASU to dmin."""
    hkl = rs.utils.generate_reciprocal_asu(cell, spacegroup, dmin, anomalous=False)
    ds = rs.DataSet({"H": hkl[:, 0], "K": hkl[:, 1], "L": hkl[:, 2]}, cell=cell,
                    spacegroup=spacegroup, merged=True)
    return ds.infer_mtz_dtypes().set_index(["H", "K", "L"])


def put(ds, column, values, dtype):
    """Set a column from an array, with an MTZ dtype."""
    ds[column] = rs.DataSeries(np.asarray(values), index=ds.index, dtype=dtype)


def merged_columns(ds, f, sigf, f_plus=None, f_minus=None):
    """Fill the merged-file columns (F, SIGF, I, SIGI, N and, optionally, Friedel columns)."""
    put(ds, "F", f, "F")
    put(ds, "SIGF", sigf, "Q")
    put(ds, "I", f, "J")
    put(ds, "SIGI", sigf, "Q")
    put(ds, "N", np.full(len(ds), 3), "I")
    if f_plus is not None:
        for sign, values in (("+", f_plus), ("-", f_minus)):
            put(ds, f"F({sign})", values, "G")
            put(ds, f"SIGF({sign})", np.full(len(ds), 1.0), "L")
            put(ds, f"I({sign})", values, "K")
            put(ds, f"SIGI({sign})", np.full(len(ds), 1.0), "M")
            put(ds, f"N({sign})", np.full(len(ds), 2), "I")
    return ds


def xval_file(truth, noise, repeats=2, seed=0, delta=None, shared=False):
    """Half-dataset merges: every half is truth + independent Gaussian noise.

    ``noise`` is the noise sd; ``shared`` makes both halves identical; ``delta``
    (anomalous differences) adds Friedel columns F(+/-) = truth +/- delta/2 + noise.
    """
    rng = np.random.default_rng(seed)
    template = asu()
    parts = []
    for repeat in range(repeats):
        draws = [rng.normal(size=(3, len(template)))] * 2 if shared else \
            [rng.normal(size=(3, len(template))) for _ in range(2)]
        for half, e in enumerate(draws):
            ds = template.copy()
            plus = minus = None
            if delta is not None:
                plus, minus = truth + delta / 2 + noise * e[1], truth - delta / 2 + noise * e[2]
            merged_columns(ds, truth + noise * e[0], np.ones(len(ds)), plus, minus)
            put(ds, "repeat", np.full(len(ds), repeat), "I")
            put(ds, "half", np.full(len(ds), half), "I")
            parts.append(ds)
    return rs.concat(parts)


@pytest.fixture(scope="module")
def truth():
    """Truth values (mean 10, sd 1) on the ASU of CELL to 2 A (about 7900 reflections)."""
    return 10.0 + np.random.default_rng(42).normal(size=len(asu()))


# --------------------------------------------------------------------------- correlations

def test_spearman_per_group_matches_scipy():
    rng = np.random.default_rng(1)
    x = rng.normal(size=600)
    y = np.round(x + rng.normal(size=600), 1)  # ties
    group = rng.integers(0, 6, size=600)
    ours = spearman_per_group(x, y, group)
    for g in range(6):
        assert ours[g] == pytest.approx(scipy.stats.spearmanr(x[group == g], y[group == g])[0])


def test_weighted_pearson_equals_repetition():
    x, y = np.array([1.0, 2.0, 3.0, 5.0]), np.array([2.0, 1.0, 4.0, 4.0])
    weights = np.array([1, 2, 1, 3])
    repeated = pearson_per_group(np.repeat(x, weights), np.repeat(y, weights), np.zeros(7))
    weighted = pearson_per_group(x, y, np.zeros(4), weights=weights.astype(float))
    assert weighted[0] == pytest.approx(repeated[0])
    assert np.isnan(correlation([1.0, 2.0], [3.0, 3.0]))


# --------------------------------------------------------------------------- half datasets

def test_cchalf_identical_halves_is_one(truth):
    table = cchalf_table(xval_file(truth, 1.0, shared=True), bins=5)
    assert np.allclose(table[["CC1/2_pearson", "CC1/2_spearman"]], 1.0)


def test_cchalf_independent_halves_is_zero():
    noise_only = xval_file(np.zeros(len(asu())), 1.0, seed=3)
    table = cchalf_table(noise_only, bins=5)
    assert abs(table.loc["overall", "CC1/2_pearson"]) < 0.05
    assert (table[["CC1/2_pearson", "CC1/2_spearman"]].abs() < 0.1).all().all()


def test_cchalf_known_snr(truth):
    """Halves = truth (sd 1) + noise (sd 1): CC1/2 = 1 / (1 + 1) = 0.5."""
    table = cchalf_table(xval_file(truth, 1.0, seed=4), bins=5, methods=("pearson",))
    assert table.loc["overall", "CC1/2_pearson"] == pytest.approx(0.5, abs=0.03)
    assert (table["CC1/2_pearson"] - 0.5).abs().max() < 0.08
    assert table.loc["1", "n"] == pytest.approx(len(truth) / 5, rel=0.05)


def test_cchalf_uses_friedel_mates_when_present(truth):
    delta = np.random.default_rng(5).normal(size=len(truth))
    xval = xval_file(truth, 1.0, seed=6, delta=delta)
    stacked = cchalf_table(xval, bins=3, methods=("pearson",))
    merged = cchalf_table(xval, bins=3, methods=("pearson",), anomalous=False)
    centric = asu().label_centrics()["CENTRIC"].to_numpy()
    assert stacked.loc["overall", "n"] == pytest.approx(len(truth) + (~centric).sum(), abs=1)
    assert merged.loc["overall", "n"] == len(truth)
    # Friedel mates carry truth +/- delta/2: variance 1.25 over noise 1
    assert stacked.loc["overall", "CC1/2_pearson"] == pytest.approx(1.25 / 2.25, abs=0.03)


def test_ccanom_known_differences(truth):
    """Differences (sd 1) + noise of two mates (sd 0.5 each): CC = 1 / (1 + 2 * 0.25)."""
    delta = np.random.default_rng(7).normal(size=len(truth))
    xval = xval_file(truth, 0.5, seed=8, delta=delta)
    centric = np.tile(asu().label_centrics()["CENTRIC"].to_numpy(), 4)
    xval.loc[centric, "F(-)"] = 1000.0  # must be ignored
    table = ccanom_table(xval, bins=4)
    assert table.loc["overall", "CCanom_pearson"] == pytest.approx(1 / 1.5, abs=0.03)
    assert table.loc["overall", "CCanom_spearman"] == pytest.approx(
        6 / np.pi * np.arcsin(1 / 3), abs=0.03)  # Spearman of a bivariate normal
    assert table.loc["overall", "n"] == (~centric[:len(truth)]).sum()


def test_rsplit(truth):
    assert np.allclose(rsplit_table(xval_file(truth, 1.0, shared=True), bins=4)["Rsplit"], 0.0)
    # E|e1 - e2| = 2 sd / sqrt(pi) for Gaussian noise; mean intensity 10
    table = rsplit_table(xval_file(truth, 1.0, seed=9), bins=4)
    expected = (2 / np.sqrt(np.pi)) / (np.sqrt(2) * 10.0)
    assert table.loc["overall", "Rsplit"] == pytest.approx(expected, rel=0.03)


# --------------------------------------------------------------------------- merged data

def test_completeness_full_and_half():
    full = merged_columns(asu(), np.ones(len(asu())), np.ones(len(asu())))
    assert np.allclose(completeness_table(full, bins=5)["completeness"], 1.0)
    rng = np.random.default_rng(10)
    half = full[rng.random(len(full)) < 0.5]
    table = completeness_table(half, bins=5)
    assert table.loc["overall", "completeness"] == pytest.approx(0.5, abs=0.02)
    assert (table["completeness"] - 0.5).abs().max() < 0.06


def test_anomalous_completeness():
    ds = asu()
    n = len(ds)
    minus = np.where(np.random.default_rng(11).random(n) < 0.5, 1.0, np.nan)
    merged_columns(ds, np.ones(n), np.ones(n), np.ones(n), minus)
    table = completeness_table(ds, bins=4)
    assert np.allclose(table["completeness"], 1.0)
    assert table.loc["overall", "completeness_anomalous"] == pytest.approx(0.5, abs=0.03)


def test_isigi_on_anomalous_file():
    ds = asu()
    n = len(ds)
    minus = np.where(ds.label_centrics()["CENTRIC"], np.nan, 4.0)
    merged_columns(ds, np.full(n, 10.0), np.full(n, 2.0), np.full(n, 4.0), minus)
    table = isigi_table(ds, bins=3)
    assert np.allclose(table["F/SIGF"], 5.0)
    assert np.allclose(table["I/SIGI_anom"], 4.0)
    assert table.loc["overall", "n"] == n


def test_cc_to_reference(truth):
    """Merged = truth (sd 1) + noise (sd 0.5): CC = 1 / sqrt(1.25)."""
    rng = np.random.default_rng(12)
    delta = rng.normal(size=len(truth))
    reference = merged_columns(asu(), truth, np.ones(len(truth)), truth + delta / 2,
                               truth - delta / 2)
    noisy = [x + 0.5 * rng.normal(size=len(truth))
             for x in (truth, truth + delta / 2, truth - delta / 2)]
    merged = merged_columns(asu(), noisy[0], np.ones(len(truth)), noisy[1], noisy[2])
    table = cc_to_reference(merged, reference, "F", anomalous=True, bins=4)
    assert list(table.index) == ["1", "2", "3", "4", "overall"]
    assert table.loc["overall", "CC"] == pytest.approx(1 / np.sqrt(1.25), abs=0.02)
    # differences: sd 1 against noise of two mates, 2 * 0.25
    assert table.loc["overall", "CCanom"] == pytest.approx(1 / np.sqrt(1.5), abs=0.02)
    assert np.allclose(cc_to_reference(reference, reference, bins=2)["CC"], 1.0)


# --------------------------------------------------------------------------- predictions

def predictions(n_images=40, per_image=60, seed=13):
    """Observations on images; even images are training, odd ones held out."""
    rng = np.random.default_rng(seed)
    template = asu()
    rows = rng.integers(0, len(template), size=n_images * per_image)
    ds = template.iloc[rows].copy()
    ds.merged = False
    image = np.repeat(np.arange(n_images), per_image)
    ipred = rng.gamma(2.0, 10.0, size=len(ds))
    iobs = ipred + rng.normal(scale=1.0 + 0.5 * (image % 5), size=len(ds)) * np.sqrt(ipred)
    for name, values, dtype in (("image_id", image, "I"), ("file_id", np.zeros(len(ds)), "I"),
                                ("test", image % 2, "I"), ("Iobs", iobs, "J"),
                                ("SigIobs", np.sqrt(ipred), "Q"), ("Ipred", ipred, "J"),
                                ("SigIpred", np.ones(len(ds)), "Q")):
        put(ds, name, values, dtype)
    return ds.compute_dHKL()


def _amplitudes(ds, f, sigf):
    out = ds.copy()
    out["F"] = rs.DataSeries(f, index=ds.index, dtype="SFAmplitude")
    out["SIGF"] = rs.DataSeries(sigf, index=ds.index, dtype="Stddev")
    return out


def test_truth_figures_after_an_overall_scale_and_b():
    from careless_online.stats.truth import (flatness_after_b, scale_and_b, sigf_calibration_by_shell,
                                             strongest_error)

    rng = np.random.default_rng(4)
    ref = asu(2.5)
    s2 = 1 / ref.compute_dHKL()["dHKL"].to_numpy() ** 2
    ftrue = rng.rayleigh(size=len(ref)) * np.exp(-10 * s2)
    truth = _amplitudes(ref, ftrue, np.ones(len(ref)))
    sigf = 0.01 * ftrue.mean() * np.where(s2 > np.median(s2), 1.0, 0.2)  # low resolution over-confident 5x
    f = 3.0 * np.exp(-8.0 * s2 / 4) * ftrue + sigf * rng.standard_normal(len(ref))
    f[np.argsort(-ftrue)[:3]] *= 0.9  # the strongest crushed by 10 %
    merged = _amplitudes(ref, f, sigf)
    _, edges = binning.assign_shells(truth, 10)
    fit = scale_and_b(merged, truth, edges)
    assert fit["k"] == pytest.approx(3.0, rel=0.02) and fit["B"] == pytest.approx(8.0, abs=0.5)
    assert flatness_after_b(merged, truth, edges)["ratio_flat_after_b_pct"] < 1.0
    z = sigf_calibration_by_shell(merged, truth, edges)
    assert len(z["rms_z_shells"]) == 10
    assert z["rms_z_shells"][0] > 3 > 1.3 > z["rms_z_shells"][-1] and z["median_abs_z_shells"][-1] < 1
    strongest = strongest_error(merged, truth, edges, n=20)
    assert strongest["strongest_max_err"] == pytest.approx(0.1, abs=0.02)
    assert len(strongest["strongest_errors"]) == 20 and min(strongest["strongest_d"]) >= 2.5 - 1e-6


def test_image_ccpred_matches_scipy():
    data = predictions()
    table = image_cc_table(data)
    assert len(table) == 40 and (table["n"] == 60).all()
    frame = pd.DataFrame(data.to_numpy(), columns=data.columns)
    for _, row in table.iterrows():
        on_image = frame[frame["image_id"] == row["image_id"]]
        expected = scipy.stats.spearmanr(on_image["Iobs"], on_image["Ipred"])[0]
        assert row["cc"] == pytest.approx(expected)
        assert row["test"] == row["image_id"] % 2
    summary = image_cc_summary(table)
    held_out = table.loc[table["test"] == 1, "cc"]
    assert summary.loc["test", "mean_cc"] == pytest.approx(held_out.mean())


def test_ccpred_splits():
    data = predictions()
    train = data["test"].to_numpy() == 0
    data.loc[train, "Ipred"] = data.loc[train, "Iobs"]
    table = ccpred_table(data, bins=4)
    assert np.allclose(table["CCpred_train"], 1.0)
    test = ~train
    expected = np.corrcoef(data["Iobs"][test].to_numpy(float), data["Ipred"][test].to_numpy(float))
    assert table.loc["overall", "CCpred_test"] == pytest.approx(expected[0, 1])
    assert table.loc["overall", "n_test"] == test.sum()


# --------------------------------------------------------------------------- history

def history_frame():
    step = np.arange(1, 51) * 10
    return pd.DataFrame({
        "step": step, "elapsed_s": step * 0.1, "loss": 1000.0 / step, "NLL": 900.0 / step,
        "KL_F": 50.0 + 0 * step, "KL_Sigma": 1.0 + 0 * step, "grad_norm": 10.0 / np.sqrt(step),
        "ccpred_train": 1 - 1 / np.sqrt(step),
        "ccpred_test": np.where(step % 100 == 0, 0.5 + step / 1000.0 - (step == 500) * 0.2, np.nan),
        "NLL_test": np.where(step % 100 == 0, 800.0 / step, np.nan),
    })


def test_history_summary():
    table = history_summary({"run": history_frame()}).set_index("metric")
    assert table.loc["loss", "best_step"] == 500 and table.loc["loss", "last"] == 2.0
    assert table.loc["ccpred_test", "best_step"] == 400
    assert table.loc["ccpred_test", "last"] == pytest.approx(0.8)


# --------------------------------------------------------------------------- anomalous map

def small_structure(rng):
    """A P 21 21 21 model with two sulfur atoms among 40 light atoms."""
    cell = gemmi.UnitCell(20.0, 24.0, 28.0, 90.0, 90.0, 90.0)
    st = gemmi.Structure()
    st.cell = cell
    st.spacegroup_hm = "P 21 21 21"
    model, chain = gemmi.Model("1"), gemmi.Chain("A")
    for i, element in enumerate(["S", "S"] + ["C"] * 30 + ["O"] * 8):
        residue = gemmi.Residue()
        residue.name, residue.seqid = ("MET" if element == "S" else "GLY"), gemmi.SeqId(i + 1, " ")
        atom = gemmi.Atom()
        atom.name, atom.element = ("SD" if element == "S" else element), gemmi.Element(element)
        atom.pos = cell.orthogonalize(gemmi.Fractional(*rng.random(3)))
        atom.b_iso, atom.occ = 15.0, 1.0
        residue.add_atom(atom)
        chain.add_residue(residue)
    model.add_chain(chain)
    st.add_model(model)
    st.setup_entities()
    return st


def friedel_amplitudes(st, dmin, f_double_prime):
    """|F(+)| and |F(-)| by direct summation, with f'' for some elements."""
    spacegroup = gemmi.SpaceGroup(st.spacegroup_hm)
    ds = asu(dmin, st.cell, spacegroup)
    hkl = ds.get_hkls()
    stol2 = 0.25 / rs.utils.compute_dHKL(hkl, st.cell) ** 2
    total = {+1: 0j, -1: 0j}
    for cra in st[0].all():
        atom = cra.atom
        f0 = np.vectorize(atom.element.it92.calculate_sf)(stol2) * np.exp(-atom.b_iso * stol2)
        f = f0 + 1j * f_double_prime.get(atom.element.name, 0.0)
        xyz = st.cell.fractionalize(atom.pos)
        for op in spacegroup.operations():
            position = np.array(op.apply_to_xyz([xyz.x, xyz.y, xyz.z]))
            for sign in (+1, -1):
                total[sign] = total[sign] + f * np.exp(2j * np.pi * sign * (hkl @ position))
    n = len(ds)
    return merged_columns(ds, np.abs(total[1]), np.ones(n), np.abs(total[1]), np.abs(total[-1]))


@pytest.fixture(scope="module")
def anomalous_model():
    st = small_structure(np.random.default_rng(14))
    return st, friedel_amplitudes(st, 2.0, {"S": 4.0})


def test_anomalous_peaks_at_sulfurs(anomalous_model):
    st, merged = anomalous_model
    table = anomalous_peak_table(merged, st, elements="S", n_peaks=3)
    atoms, others = table[table["element"] == "S"], table[table["element"] == ""]
    assert len(atoms) == 2 and len(others) == 3
    assert (atoms["height_sigma"] > 5.0).all()
    assert atoms["height_sigma"].min() > others["height_sigma"].max()
    assert (others["distance"].notna()).all()


# --------------------------------------------------------------------------- command lines

def run(main, argv, capsys):
    """Run a command's main and return its standard output."""
    assert main(argv) == 0
    return capsys.readouterr().out


def read_printed(text):
    """Parse a printed table (skipping '#' comment lines)."""
    from io import StringIO
    return pd.read_csv(StringIO(text), comment="#")


def is_png(path):
    png_magic = b"\x89PNG\r\n\x1a\n"
    return path.exists() and path.stat().st_size > 0 and path.read_bytes()[:8] == png_magic


@pytest.fixture(scope="module")
def files(tmp_path_factory, truth):
    """Synthetic outputs of `careless_online mono` written to disk."""
    folder = tmp_path_factory.mktemp("stats")
    delta = np.random.default_rng(15).normal(size=len(truth))
    paths = {name: folder / f"{name}.mtz" for name in ("xval", "merged", "predictions")}
    xval_file(truth, 1.0, seed=16, delta=delta).write_mtz(str(paths["xval"]))
    merged_columns(asu(), truth, np.ones(len(truth)), truth + delta / 2,
                   truth - delta / 2).write_mtz(str(paths["merged"]))
    predictions().write_mtz(str(paths["predictions"]))
    paths["history"] = folder / "history.csv"
    history_frame().to_csv(paths["history"], index=False)
    return paths


@pytest.mark.parametrize("main, key, column, expected", [
    (cchalf.main, "xval", "CC1/2_pearson", 1.25 / 2.25),
    (ccanom.main, "xval", "CCanom_pearson", 1 / 3),
    (rsplit.main, "xval", "Rsplit", 2 / (np.sqrt(np.pi) * np.sqrt(2) * 10)),
    (completeness.main, "merged", "completeness", 1.0),
    (isigi.main, "merged", "F/SIGF_anom", 10.0),
])
def test_shell_commands(main, key, column, expected, files, tmp_path, capsys):
    csv, png = tmp_path / "table.csv", tmp_path / "figure.png"
    printed = read_printed(run(main, [str(files[key]), "-b", "4", "-o", str(csv), "-i", str(png)],
                               capsys))
    assert list(printed["shell"]) == ["1", "2", "3", "4", "overall"]
    written = pd.read_csv(csv).set_index("shell")
    assert written.loc["overall", column] == pytest.approx(expected, rel=0.06)
    assert is_png(png)
    overall = read_printed(run(main, [str(files[key]), "--overall"], capsys))
    assert list(overall["shell"]) == ["overall"]


def test_prediction_commands(files, tmp_path, capsys):
    table = read_printed(run(ccpred.main, [str(files["predictions"]), "-b", "3"], capsys))
    assert {"CCpred_train", "CCpred_test", "n_train", "n_test"} <= set(table.columns)
    png = tmp_path / "images.png"
    text = run(image_ccpred.main, [str(files["predictions"]), "-i", str(png)], capsys)
    per_image = read_printed(text)
    assert len(per_image) == 40 and "# test: mean CC" in text
    assert is_png(png)
    summary = read_printed(run(image_ccpred.main, [str(files["predictions"]), "--overall"], capsys))
    assert summary.set_index("split").loc["train", "mean_cc"] == pytest.approx(
        per_image.loc[per_image["test"] == 0, "cc"].mean(), abs=1e-3)


def test_plot_history_command(files, tmp_path, capsys):
    png = tmp_path / "history.png"
    table = read_printed(run(plot_history.main, [str(files["history"]), "-i", str(png)], capsys))
    assert is_png(png)
    assert table.set_index("metric").loc["ccpred_test", "best_step"] == 400


def test_anomalous_peaks_command(anomalous_model, tmp_path, capsys):
    st, merged = anomalous_model
    mtz, pdb, png = tmp_path / "anom.mtz", tmp_path / "model.pdb", tmp_path / "peaks.png"
    merged.write_mtz(str(mtz))
    st.write_pdb(str(pdb))
    table = read_printed(run(anomalous_peaks.main, [str(mtz), str(pdb), "-n", "2", "-i", str(png)],
                             capsys))
    assert list(table["element"].fillna("")) == ["S", "S", "", ""]
    assert (table["height_sigma"].iloc[:2] > 5).all()
    assert is_png(png)


@pytest.mark.parametrize("main, extra, missing", [
    (cchalf.main, [], "repeat, half"),
    (cchalf.main, ["--use-structure-factors"], "F, repeat, half"),
    (ccanom.main, [], "F(+), F(-), repeat, half"),
    (rsplit.main, [], "repeat, half"),
    (ccpred.main, [], "image_id, test, Iobs, Ipred"),
    (image_ccpred.main, [], "image_id, test, Iobs, Ipred"),
    (completeness.main, [], "F"),
    (isigi.main, [], "F, SIGF"),
    (anomalous_peaks.main, ["model.pdb"], "F(+), F(-)"),
])
def test_wrong_file_is_one_line_error(main, extra, missing, capsys):
    unmerged = str(DATA / "hewl_unmerged_1000.mtz")
    with pytest.raises(SystemExit) as exit_info:
        main([unmerged, *extra])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and unmerged in err and f"missing column(s) {missing} " in err


def test_missing_and_unreadable_files(tmp_path, capsys):
    for argv in ([str(tmp_path / "absent.mtz")], [str(DATA / "README.md")]):
        with pytest.raises(SystemExit) as exit_info:
            cchalf.main(argv)
        assert exit_info.value.code == 2
        err = capsys.readouterr().err.strip()
        assert "\n" not in err and argv[0] in err
    no_step = tmp_path / "no_step.csv"
    no_step.write_text("epoch,loss\n1,2.0\n")
    for path, problem in ((DATA / "README.md", "not a CSV training history"),
                          (no_step, "missing column step")):
        with pytest.raises(SystemExit) as exit_info:
            plot_history.main([str(path)])
        assert exit_info.value.code == 2 and problem in capsys.readouterr().err
