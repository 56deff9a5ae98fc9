"""Every figure: a title naming the data, labelled axes with units, a legend, the overall value."""

import numpy as np
import pandas as pd

from careless_online.stats.binning import OVERALL
from careless_online.stats.plots import (CCPRED_NOTE, data_name, history_figure, image_cc_figure, peaks_figure,
                                         shell_figure)


def _visible(figure):
    return [ax for ax in figure.axes if ax.get_visible()]


def _legend(ax):
    legend = ax.get_legend()
    assert legend is not None
    return [t.get_text() for t in legend.get_texts()]


def test_data_name_drops_folder_and_extension():
    assert data_name("/some/run/out/hewl_xval_0.mtz") == "hewl_xval_0"


def test_shell_figure_names_data_and_gives_overall_values():
    table = pd.DataFrame({"d_min": [4.0, 3.0, 3.0], "CC1/2_pearson": [0.99, 0.9, 0.95]},
                         index=pd.Index(["1", "2", OVERALL], name="shell"))
    figure = shell_figure(table, ["CC1/2_pearson"], "CC1/2 (no unit)", title="CC1/2 of hewl_xval_0")
    (ax,) = _visible(figure)
    assert ax.get_title() == "CC1/2 of hewl_xval_0"
    assert "(Å)" in ax.get_xlabel() and ax.get_ylabel() == "CC1/2 (no unit)"
    assert _legend(ax) == ["CC1/2_pearson (overall 0.95)"]
    assert len(ax.get_lines()) == 2  # the shells and the overall value's dotted line
    assert list(ax.get_lines()[0].get_ydata()) == [0.99, 0.9]  # the overall row is not a shell


def test_peaks_figure_tells_atoms_from_other_peaks():
    table = pd.DataFrame({"atom": ["A/SE 1/SE", "A/SE 2/SE", "peak 1"], "element": ["Se", "Se", None],
                          "height_sigma": [10.0, 12.0, 3.5], "nearest_atom": [None, None, "A/ATM 3/C"],
                          "distance": [np.nan, np.nan, 2.5]})
    (ax,) = _visible(peaks_figure(table, "Anomalous difference map of hewl_0"))
    assert ax.get_title() == "Anomalous difference map of hewl_0"
    assert "(σ)" in ax.get_ylabel() and ax.get_xlabel()
    assert _legend(ax) == ["selected atoms (mean 11.0 σ)", "other peaks (highest 3.5 σ)"]
    ticks = [t.get_text() for t in ax.get_xticklabels()]
    assert ticks == ["A/SE 1/SE", "A/SE 2/SE", "peak 1 (A/ATM 3/C, 2.5 Å)"]
    colors = {tuple(p.get_facecolor()) for p in ax.patches}
    assert len(colors) == 2


def test_history_figure_has_no_empty_panel_and_explains_ccpred():
    history = pd.DataFrame({"step": [100, 200], "loss": [10.0, 5.0], "NLL": [8.0, 4.0],
                            "NLL_test": [np.nan, np.nan],  # never evaluated: no panel
                            "ccpred_train": [0.8, 0.9], "ccpred_test": [0.7, 0.85]})
    figure = history_figure({"run_history.csv": history})
    axes = _visible(figure)
    assert [ax.get_title() for ax in axes] == ["loss", "NLL", "CCpred"]
    assert "run_history.csv" in figure._suptitle.get_text()
    for ax in axes:
        assert ax.has_data() and ax.get_xlabel() == "training step" and ax.get_ylabel()
        assert _legend(ax)
    assert _legend(axes[0]) == ["run_history.csv (last 5)"]
    assert _legend(axes[2]) == ["run_history.csv train (last 0.9)", "run_history.csv test (last 0.85)"]
    assert [t.get_text() for t in axes[2].texts] == [CCPRED_NOTE]
    assert axes[0].get_yscale() == "log"


def test_image_cc_figure_gives_medians():
    per_image = pd.DataFrame({"test": [0, 0, 0, 1], "cc": [0.5, 0.7, 0.9, 0.6]})
    (ax,) = _visible(image_cc_figure(per_image, "Per-image CCpred of hewl_predictions_0"))
    assert ax.get_title() == "Per-image CCpred of hewl_predictions_0"
    assert ax.get_xlabel() and ax.get_ylabel() == "images (count)"
    assert _legend(ax) == ["train (3 images, median 0.700)", "test (1 images, median 0.600)"]
