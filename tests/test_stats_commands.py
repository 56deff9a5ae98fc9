"""Every statistics command driven through ``main(argv)`` on real ``careless_online mono`` outputs."""

import os

import numpy as np
import pandas as pd
import pytest
import reciprocalspaceship as rs

from careless_online.cli import (ccanom, cchalf, ccpred, completeness, image_ccpred, isigi, plot_history,
                                 rsplit, stats_args)
from careless_online.cli.main import main
from careless_online.simulate import simulate_to_files
from careless_online.stats.plots import save_figure

KEYS = "dHKL,XDET,YDET,ewald_offset"


#: Steps of the clean and the noise merges.  Measured (80 images, seed 3): clean CC1/2 0.978 after 500 steps, 0.969
#: after 350 (asserted > 0.95), CCanom 0.34 / 0.20 (noise 0.01 / 0.001), CCpred 0.994 / 0.991; the noise merge's
#: CC1/2 stays near 0 (0.02 after 500 steps, 0.05 after 200; asserted < 0.15), so it takes fewer steps.
CLEAN_STEPS, NOISE_STEPS = 350, 200


def _merge(mtz, base, steps):
    # the posterior's own SIGF: the statistics commands are tested here, not the calibration (test_start_and_calibration)
    assert main(["mono", "--disable-progress-bar", "--anomalous", "--iterations", str(steps), "--merge-half-datasets",
                 "--validation-frequency", "100", "--no-sigf-calibration", KEYS, str(mtz), str(base)]) == 0


@pytest.fixture(scope="module")
def merges(tmp_path_factory):
    folder = tmp_path_factory.mktemp("stats")
    clean = simulate_to_files(str(folder / "clean"), n_images=80, seed=3, formats=("mtz",),
                              mean_counts=1e5, background=0.0)
    _merge(clean["mtz"], folder / "out" / "clean", CLEAN_STEPS)
    noise = rs.read_mtz(clean["mtz"])
    rng = np.random.default_rng(0)
    # pure noise: a constant sigma (real sigmas would carry the true intensities) and a positive mean
    sigma = float(np.median(noise["SIGI"]))
    noise["SIGI"] = np.full(len(noise), sigma, dtype=np.float32)
    noise["I"] = (sigma * (2.0 + rng.normal(size=len(noise)))).astype(np.float32)
    noise = noise.astype({"I": "J", "SIGI": "Q"})
    noise.write_mtz(str(folder / "noise.mtz"))
    _merge(folder / "noise.mtz", folder / "out" / "noise", NOISE_STEPS)
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


@pytest.fixture
def figures(monkeypatch):
    """The matplotlib figures the commands save (they are still written)."""
    saved = []

    def keep(figure, path):
        saved.append(figure)
        save_figure(figure, path)

    monkeypatch.setattr(stats_args, "save_figure", keep)
    return saved


def _readable(figure, data, folder):
    """Assert a figure has a title naming ``data`` (not a path), labelled axes and legends.

    Returns the texts of its titles and legends.
    """
    axes = [ax for ax in figure.axes if ax.get_visible()]
    titles = [figure._suptitle.get_text() if figure._suptitle else ""] + [ax.get_title() for ax in axes]
    assert any(data in title for title in titles), titles
    assert not any(str(folder) in title for title in titles), titles
    legends = []
    for ax in axes:
        assert ax.has_data() and ax.get_title()
        assert ax.get_xlabel() and ax.get_ylabel()
        legend = ax.get_legend()
        assert legend is not None and legend.get_texts()
        legends += [t.get_text() for t in legend.get_texts()]
    return titles, legends


def test_shell_tables_and_figures(merges, tmp_path, figures):
    table = _table(cchalf, [merges / "clean_xval_0.mtz", "-b", 5, "-i", tmp_path / "cc.png"], tmp_path)
    assert len(table) == 6  # five shells and the overall row
    assert (tmp_path / "cc.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    _, legends = _readable(figures[-1], "clean_xval_0", merges)
    overall = table.set_index("shell").loc["overall", "CC1/2_pearson"]
    assert f"CC1/2_pearson (overall {overall:.3g})" in legends
    for command, argv in ((ccanom, ["clean_xval_0.mtz"]), (rsplit, ["clean_xval_0.mtz"]),
                          (ccpred, ["clean_predictions_0.mtz"]), (completeness, ["clean_0.mtz"]),
                          (isigi, ["clean_0.mtz"]), (image_ccpred, ["clean_predictions_0.mtz"])):
        _table(command, [merges / argv[0], "-i", tmp_path / "f.png"], tmp_path)
        _readable(figures[-1], argv[0][:-4], merges)
    # the clean simulation has a selenium anomalous signal, the noise merge none
    anom_clean = _table(ccanom, [merges / "clean_xval_0.mtz", "--overall"], tmp_path).iloc[-1]
    anom_noise = _table(ccanom, [merges / "noise_xval_0.mtz", "--overall"], tmp_path).iloc[-1]
    assert anom_clean["CCanom_pearson"] > anom_noise["CCanom_pearson"] + 0.1
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


def test_plot_history_reports_last_and_best_and_draws_every_metric(merges, tmp_path, figures):
    table = _table(plot_history, [merges / "clean_history.csv", "-i", tmp_path / "h.png"], tmp_path)
    assert (tmp_path / "h.png").stat().st_size > 1000
    history = pd.read_csv(merges / "clean_history.csv")
    loss = table.set_index("metric").loc["loss"]
    assert loss["last"] == pytest.approx(history["loss"].iloc[-1], rel=1e-4)
    assert loss["best"] == pytest.approx(history["loss"].min(), rel=1e-4)
    assert loss["best_step"] == history["step"][history["loss"].idxmin()]
    cc = table.set_index("metric").loc["ccpred_test"]
    assert cc["best"] == pytest.approx(history["ccpred_test"].max(), rel=1e-4)
    titles, legends = _readable(figures[-1], "clean_history", merges)
    # one panel per metric with finite values, no empty panel; CCpred says what it averages
    assert set(titles[1:]) == {"loss", "NLL", "KL_F", "KL_Sigma", "NLL_test", "grad_norm", "CCpred"}
    notes = [t.get_text() for ax in figures[-1].axes for t in ax.texts]
    assert any("per-image" in n and "careless_online.ccpred" in n for n in notes)
    assert any(label.startswith("clean_history.csv test (last ") for label in legends)


def test_statistics_csv_is_replaced_atomically(tmp_path, monkeypatch):
    import argparse
    import io

    from careless_online.cli.stats_args import emit

    out = tmp_path / "table.csv"
    out.write_text("previous complete table\n")
    real = pd.DataFrame.to_csv

    def interrupted(self, target=None, **kwargs):
        if not isinstance(target, (str, os.PathLike)):
            return real(self, target, **kwargs)
        with open(target, "w") as handle:
            handle.write("half a ta")
        raise KeyboardInterrupt  # killed while writing

    monkeypatch.setattr(pd.DataFrame, "to_csv", interrupted)
    args = argparse.Namespace(output=str(out), image=None)
    with pytest.raises(KeyboardInterrupt):
        emit(pd.DataFrame({"a": [1.0]}), args, stream=io.StringIO())
    assert out.read_text() == "previous complete table\n" and os.listdir(tmp_path) == ["table.csv"]
