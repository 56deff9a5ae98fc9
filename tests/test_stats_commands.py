"""Every statistics command driven through ``main(argv)`` on real ``careless_online mono`` outputs."""

import numpy as np
import pandas as pd
import pytest
import reciprocalspaceship as rs

from careless_online.cli import (ccanom, cchalf, ccpred, completeness, image_ccpred, isigi, plot_history,
                                 rsplit)
from careless_online.cli.main import main
from careless_online.simulate import simulate_to_files

KEYS = "dHKL,XDET,YDET,ewald_offset"


def _merge(mtz, base):
    assert main(["mono", "--disable-progress-bar", "--anomalous", "--iterations", "500", "--merge-half-datasets",
                 "--validation-frequency", "100", KEYS, str(mtz), str(base)]) == 0


@pytest.fixture(scope="module")
def merges(tmp_path_factory):
    folder = tmp_path_factory.mktemp("stats")
    clean = simulate_to_files(str(folder / "clean"), n_images=80, seed=3, formats=("mtz",),
                              mean_counts=1e5, background=0.0)
    _merge(clean["mtz"], folder / "out" / "clean")
    noise = rs.read_mtz(clean["mtz"])
    rng = np.random.default_rng(0)
    # pure noise: a constant sigma (real sigmas would carry the true intensities) and a positive mean
    sigma = float(np.median(noise["SIGI"]))
    noise["SIGI"] = np.full(len(noise), sigma, dtype=np.float32)
    noise["I"] = (sigma * (2.0 + rng.normal(size=len(noise)))).astype(np.float32)
    noise = noise.astype({"I": "J", "SIGI": "Q"})
    noise.write_mtz(str(folder / "noise.mtz"))
    _merge(folder / "noise.mtz", folder / "out" / "noise")
    return folder / "out"


def _table(command, argv, tmp_path):
    out = tmp_path / "table.csv"
    assert command.main([*map(str, argv), "-o", str(out)]) == 0
    return pd.read_csv(out, comment="#")


def test_cchalf_is_one_for_clean_data_and_zero_for_noise(merges, tmp_path):
    clean = _table(cchalf, [merges / "clean_xval_0.mtz", "--overall"], tmp_path).iloc[-1]
    noise = _table(cchalf, [merges / "noise_xval_0.mtz", "--overall"], tmp_path).iloc[-1]
    pearson = [c for c in clean.index if "pearson" in c.lower()][0]
    assert clean[pearson] > 0.95
    assert abs(noise[pearson]) < 0.15


def test_shell_tables_and_figures(merges, tmp_path):
    table = _table(cchalf, [merges / "clean_xval_0.mtz", "-b", 5, "-i", tmp_path / "cc.png"], tmp_path)
    assert len(table) == 6  # five shells and the overall row
    assert (tmp_path / "cc.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    anom = _table(ccanom, [merges / "clean_xval_0.mtz"], tmp_path)
    assert np.isfinite(anom.select_dtypes("number").to_numpy()).any()
    split_clean = _table(rsplit, [merges / "clean_xval_0.mtz", "--overall"], tmp_path).iloc[-1]
    split_noise = _table(rsplit, [merges / "noise_xval_0.mtz", "--overall"], tmp_path).iloc[-1]
    value = [c for c in split_clean.index if "rsplit" in c.lower()][0]
    assert split_clean[value] < split_noise[value]


def test_prediction_tables(merges, tmp_path):
    pred = _table(ccpred, [merges / "clean_predictions_0.mtz"], tmp_path).iloc[-1]
    train = [c for c in pred.index if "train" in c.lower() and "cc" in c.lower()][0]
    assert pred[train] > 0.9
    per_image = _table(image_ccpred, [merges / "clean_predictions_0.mtz"], tmp_path)
    assert per_image["image_id"].nunique() == len(per_image) > 50
    assert per_image["cc"].median() > 0.8


def test_merged_file_tables(merges, tmp_path):
    full = _table(completeness, [merges / "clean_0.mtz", "--overall"], tmp_path).iloc[-1]
    assert 0.9 < full["completeness"] <= 1.0
    signal = _table(isigi, [merges / "clean_0.mtz", "--overall"], tmp_path).iloc[-1]
    noise = _table(isigi, [merges / "noise_0.mtz", "--overall"], tmp_path).iloc[-1]
    assert signal["F/SIGF"] > noise["F/SIGF"]


def test_plot_history(merges, tmp_path):
    table = _table(plot_history, [merges / "clean_history.csv", "-i", tmp_path / "h.png"], tmp_path)
    assert (tmp_path / "h.png").stat().st_size > 1000
    assert "loss" in set(table["metric"])
