"""careless_online's outputs read the way careless 0.5.4's scripts read careless's own (careless is not installed).

The scripts (careless.cchalf, ccanom, rsplit, isigi, completeness, ccpred,
image_ccpred) open the files with ``rs.read_mtz``, stack Friedel pairs with
``stack_anomalous``, and look columns up by careless's names or by MTZ type;
``benchmarks/careless_compat.py`` runs the scripts themselves.  Merges here are
``--naive`` (no training): they go through the same writers as learned ones.
"""

import io

import numpy as np
import pandas as pd
import pytest
import reciprocalspaceship as rs
from scipy.optimize import minimize

from careless_online.cli import cchalf, isigi, rsplit
from careless_online.cli.main import main
from careless_online.stats.halves import ccanom_table, cchalf_table
from careless_online.stats.inputs import read_mtz

SG = "P 43 21 2"
KEYS = "dHKL,XDET,YDET"
CARELESS_PAIRS = ["F(+)", "SigF(+)", "F(-)", "SigF(-)", "I(+)", "SigI(+)", "I(-)", "SigI(-)", "N(+)", "N(-)"]


@pytest.fixture(scope="module")
def merges(sim_files, tmp_path_factory):
    """Naive merges of the shared simulation: anomalous and not, careless's columns and CCP4-style ones."""
    folder = tmp_path_factory.mktemp("compat")
    runs = {"anom": ["--anomalous"], "mono": [], "ccp4": ["--anomalous", "--output-columns", "ccp4"]}
    for name, extra in runs.items():
        assert main(["mono", "--disable-progress-bar", "--naive", "--merge-half-datasets", "--spacegroups", SG,
                     "--cache-dir", str(folder / "cache"), *extra, KEYS, str(sim_files["stream"]),
                     str(folder / name)]) == 0
    return folder


def first_of_type(ds, mtz_type):
    """The first column of an MTZ type, as careless picks intensity and sigma keys."""
    matches = ds.dtypes[ds.dtypes == mtz_type].keys()
    return matches[0] if len(matches) else None


def test_anomalous_merge_has_careless_columns_and_centric_convention(merges):
    ds = rs.read_mtz(str(merges / "anom_0.mtz"))
    assert list(ds.columns) == CARELESS_PAIRS
    assert [ds.dtypes[c].mtztype for c in CARELESS_PAIRS] == list("GLGLKMKMRR")
    centric = ds.label_centrics()["CENTRIC"].to_numpy()
    assert centric.any() and ds.loc[centric, [c for c in CARELESS_PAIRS if "(-)" in c]].isna().all().all()
    # careless.cchalf and rsplit stack the pairs: no mean column is in the way, careless's names come out
    stacked = ds.stack_anomalous()
    assert list(stacked.columns) == ["F", "SigF", "I", "SigI", "N"]
    assert len(stacked) == len(ds) + (~centric).sum()  # a centric reflection once, an acentric one twice
    # careless.completeness
    completeness = rs.stats.compute_completeness(ds, bins=3)
    assert 0 < completeness.loc["overall", ("completeness", "anomalous")] <= 1


def test_mono_merge_puts_intensities_first(merges):
    ds = rs.read_mtz(str(merges / "mono_0.mtz"))
    assert list(ds.columns) == ["I", "SigI", "F", "SigF", "N"]
    assert [ds.dtypes[c].mtztype for c in ds.columns] == list("JQFQR")
    # careless.isigi takes the first intensity and the first sigma column: I and its own SigI
    assert (first_of_type(ds, "J"), first_of_type(ds, "Q")) == ("I", "SigI")


def careless_halves(xval, columns):
    """careless.cchalf's pairing: stack each half, join on H, K, L and repeat."""
    halves = [xval.loc[xval["half"] == h].copy() for h in (0, 1)]
    if "F(+)" in xval.columns:
        halves = [h.stack_anomalous() for h in halves]
    return halves[0][[*columns, "repeat"]].merge(halves[1][[*columns, "repeat"]], on=["H", "K", "L", "repeat"],
                                                  suffixes=("1", "2")).dropna()


def careless_cc(paired, first, second, bins=3):
    """Pearson CC per equal-count dHKL bin, binned as careless's scripts bin."""
    paired = paired.compute_dHKL()
    paired["bin"], _ = rs.utils.bin_by_percentile(paired["dHKL"], bins, ascending=False)
    return paired.groupby("bin")[[first, second]].apply(lambda df: df.corr()[first][second]).to_numpy()


@pytest.mark.parametrize("name", ["anom", "mono"])
def test_cchalf_as_careless_computes_it_agrees(merges, name):
    path = merges / f"{name}_xval_0.mtz"
    paired = careless_halves(rs.read_mtz(str(path)), ["F", "SigF", "I", "SigI"])
    theirs = careless_cc(paired, "I1", "I2")
    ours = cchalf_table(read_mtz(path, merged=True), "I", bins=3, methods=("pearson",))["CC1/2_pearson"]
    np.testing.assert_allclose(ours.iloc[:3].to_numpy(float), theirs, atol=1e-4)


def test_ccanom_as_careless_computes_it_agrees(merges):
    path = merges / "anom_xval_0.mtz"
    xval = rs.read_mtz(str(path))
    both = xval.loc[(xval["N(+)"] > 0) & (xval["N(-)"] > 0)].copy()  # careless.ccanom's rows: acentric pairs
    assert not both.label_centrics()["CENTRIC"].any()
    both["Danom"] = both["F(+)"] - both["F(-)"]
    halves = [both.loc[both["half"] == h, ["Danom", "repeat"]] for h in (0, 1)]
    paired = halves[0].merge(halves[1], on=["H", "K", "L", "repeat"], suffixes=("1", "2"))
    ours = ccanom_table(read_mtz(path, merged=True), "F", bins=3, methods=("pearson",))["CCanom_pearson"]
    np.testing.assert_allclose(ours.iloc[:3].to_numpy(float), careless_cc(paired, "Danom1", "Danom2"), atol=1e-4)


def test_rsplit_flags_give_careless_rsplit(merges, capsys):
    path = merges / "anom_xval_0.mtz"
    paired = careless_halves(rs.read_mtz(str(path)), ["F"]).compute_dHKL()
    paired["bin"], _ = rs.utils.bin_by_percentile(paired["dHKL"], 3, ascending=False)

    def careless_rsplit(df):  # careless.rsplit: amplitudes, the second half scaled by the best k
        x, y = df["F1"].to_numpy(float), df["F2"].to_numpy(float)
        return np.sqrt(2) * minimize(lambda k: np.sum(np.abs(x - k * y)) / np.sum(x + k * y), 1.0).fun

    theirs = paired.groupby("bin")[["F1", "F2"]].apply(careless_rsplit).to_numpy()
    tables = {}
    for flags in ((), ("--use-structure-factors",), ("--use-structure-factors", "--fit-scale")):
        assert rsplit.main([str(path), "-b", "3", *flags]) in (0, None)
        tables[flags] = pd.read_csv(io.StringIO(capsys.readouterr().out), index_col=0)["Rsplit"].iloc[:3]
    np.testing.assert_allclose(tables[("--use-structure-factors", "--fit-scale")], theirs, atol=2e-3)
    assert not np.allclose(tables[()], tables[("--use-structure-factors",)])  # I and F differ
    # the best scale can only lower Rsplit
    fitted, plain = tables[("--use-structure-factors", "--fit-scale")], tables[("--use-structure-factors",)]
    assert (fitted <= plain + 1e-9).all() and (fitted < plain - 1e-6).any()


def test_predictions_have_careless_columns(merges):
    predictions = rs.read_mtz(str(merges / "anom_predictions_0.mtz"))
    types = {"asu_id": "I", "image_id": "I", "file_id": "I", "test": "I", "Iobs": "J", "SigIobs": "Q",
             "Ipred": "J", "SigIpred": "Q"}
    assert {c: predictions.dtypes[c].mtztype for c in types} == types
    # careless.image_ccpred numbers the images of each ASU from 1
    batch = predictions["image_id"] - predictions.groupby("asu_id").transform("min")["image_id"] + 1
    assert batch.min() == 1 and batch.nunique() == predictions["image_id"].nunique()


def test_ccp4_columns_flag_restores_the_old_layout(merges):
    ds = rs.read_mtz(str(merges / "ccp4_0.mtz"))
    assert list(ds.columns)[:5] == ["F", "SIGF", "I", "SIGI", "N"] and "SIGF(+)" in ds.columns
    with pytest.raises(ValueError, match="duplicate column names"):
        ds.stack_anomalous()  # why careless's scripts need the default layout
    # the same merge in both layouts reads the same in careless_online
    careless_layout = read_mtz(merges / "anom_0.mtz", merged=True)
    ccp4_layout = read_mtz(merges / "ccp4_0.mtz", merged=True)
    for column in ["F", "SIGF", "I", "SIGI", "N", "F(+)", "SIGF(-)", "N(-)"]:
        np.testing.assert_allclose(careless_layout[column].to_numpy(float), ccp4_layout[column].to_numpy(float),
                                   rtol=1e-5, err_msg=column)


@pytest.mark.parametrize("command", [isigi.main, cchalf.main])
def test_stats_commands_read_both_layouts(merges, command, capsys):
    printed = []
    for name in ("anom", "ccp4"):
        path = merges / (f"{name}_0.mtz" if command is isigi.main else f"{name}_xval_0.mtz")
        assert command([str(path), "-b", "3"]) in (0, None)
        printed.append(capsys.readouterr().out)
    assert printed[0] == printed[1] and "nan" not in printed[0].split("\n")[1]


def test_cchalf_defaults_to_intensities(merges, capsys):
    path = str(merges / "mono_xval_0.mtz")
    tables = []
    for flags in ([], ["--intensities"], ["--use-structure-factors"]):
        assert cchalf.main([path, "-b", "3", "--overall", "--method", "pearson", *flags]) in (0, None)
        tables.append(capsys.readouterr().out)
    paired = careless_halves(rs.read_mtz(path), ["F", "I"])
    assert tables[0] == tables[1] != tables[2]
    cc_i, cc_f = (np.corrcoef(paired[f"{c}1"], paired[f"{c}2"])[0, 1] for c in ("I", "F"))
    assert abs(cc_i - cc_f) > 1e-3  # the two flags compare different quantities


def test_unknown_output_columns_is_refused(sim_files, tmp_path, capsys):
    with pytest.raises(SystemExit) as stopped:
        main(["mono", "--naive", "--spacegroups", SG, "--output-columns", "phenix", KEYS,
              str(sim_files["stream"]), str(tmp_path / "x")])
    assert stopped.value.code == 2 and "--output-columns" in capsys.readouterr().err
    assert not list(tmp_path.iterdir())


def test_isigi_keys_give_the_mean_ratio_of_the_named_columns_as_careless_isigi(merges, capsys):
    """careless.isigi's --intensity-key/--uncertainty-key: one Friedel half of an anomalous file, either layout."""
    raw = rs.read_mtz(str(merges / "anom_0.mtz"))
    expected = np.nanmean(raw["I(+)"].to_numpy(float) / raw["SigI(+)"].to_numpy(float))
    printed = []
    for name, keys in (("anom", ["I(+)", "SigI(+)"]), ("ccp4", ["I(+)", "SIGI(+)"])):
        assert isigi.main([str(merges / f"{name}_0.mtz"), "--overall", "--intensity-key", keys[0],
                           "--uncertainty-key", keys[1]]) in (0, None)
        printed.append(capsys.readouterr().out)
    overall = [float(line.split(",")[-2]) for text in printed for line in text.splitlines()
               if line.startswith("overall")]
    assert overall == pytest.approx([expected, expected], rel=1e-3)
    assert np.count_nonzero(np.isfinite(raw["I(+)"].to_numpy(float))) < len(raw)  # some h- only: NaN rows skipped
