"""Indexing settings chosen per image: how many images each setting got, and how confident the choices are.

Works on a predictions file (``<base>_predictions_<i>.mtz``) of a merge whose
model chose every image's setting (``--reindexing-ops``): its
``setting``, ``setting_margin``, ``setting_confidence`` and
``setting_ambiguous`` columns are per image (repeated on every observation),
and its history names the operators
(:data:`careless_online.ambiguity.outputs.HISTORY_PREFIX`).
"""

import numpy as np
import pandas as pd

from careless_online.ambiguity.outputs import AMBIGUOUS_MARGIN, SETTING_COLUMNS
from careless_online.stats.binning import OVERALL

#: Columns a predictions file with setting choices must have.
SETTINGS_REQUIRED = ("image_id", *SETTING_COLUMNS)


def image_settings(predictions):
    """One row per image: ``setting``, ``margin``, ``confidence``, ``ambiguous`` (and ``test`` if present).

    Parameters
    ----------
    predictions : pandas.DataFrame or reciprocalspaceship.DataSet
        Observations with :data:`SETTINGS_REQUIRED` (``file_id`` tells images of different files apart).
    """
    keys = [k for k in ("file_id", "image_id") if k in predictions.columns]
    columns = {"setting": "setting", "setting_margin": "margin", "setting_confidence": "confidence",
               "setting_ambiguous": "ambiguous"}
    if "test" in predictions.columns:
        columns["test"] = "test"
    frame = pd.DataFrame({new: np.asarray(predictions[old]) for old, new in columns.items()})
    for key in keys:
        frame[key] = np.asarray(predictions[key], dtype=np.int64)
    per_image = frame.groupby(keys, sort=True).first()
    per_image["setting"] = per_image["setting"].astype(int)
    per_image["ambiguous"] = per_image["ambiguous"].astype(bool)
    return per_image


def setting_table(per_image, operators=None):
    """Images per setting and the confidence of their choices, with an overall row.

    Parameters
    ----------
    per_image : pandas.DataFrame
        From :func:`image_settings`.
    operators : list of str, optional
        Triplets of the settings (by position); without them the settings are numbered.

    Returns
    -------
    pandas.DataFrame
        Indexed by setting (and ``overall``): ``operator``, ``images``,
        ``fraction``, ``median_margin`` (standard deviations of Fisher's z),
        ``median_confidence``, ``ambiguous`` (images whose margin is under
        :data:`AMBIGUOUS_MARGIN`) and ``ambiguous_fraction``.
    """
    n_settings = max(len(operators or []), int(per_image["setting"].max()) + 1 if len(per_image) else 0)
    rows = {}
    for j in range(n_settings):
        rows[str(j)] = _summary(per_image[per_image["setting"] == j], len(per_image),
                                operators[j] if operators and j < len(operators) else "")
    rows[OVERALL] = _summary(per_image, len(per_image), "all")
    table = pd.DataFrame.from_dict(rows, orient="index")
    table.index.name = "setting"
    return table


def _summary(images, total, operator):
    return {"operator": operator, "images": len(images), "fraction": len(images) / total if total else np.nan,
            "median_margin": float(np.median(images["margin"])) if len(images) else np.nan,
            "median_confidence": float(np.median(images["confidence"])) if len(images) else np.nan,
            "ambiguous": int(images["ambiguous"].sum()),
            "ambiguous_fraction": float(images["ambiguous"].mean()) if len(images) else np.nan}


def margin_figure(per_image, operators, title):
    """Histogram of the per-image margins, one series per setting, with the threshold of the ambiguous flag.

    Returns
    -------
    matplotlib.figure.Figure
    """
    from careless_online.stats.plots import new_figure

    figure, axes = new_figure()
    ax = axes[0, 0]
    margins = per_image["margin"].to_numpy(float)
    top = float(np.nanmax(margins)) if len(margins) else 1.0
    bins = np.linspace(0.0, max(top, AMBIGUOUS_MARGIN + 1.0), 41)
    for j, group in per_image.groupby("setting"):
        name = operators[j] if operators and j < len(operators) else f"setting {j}"
        ax.hist(group["margin"], bins=bins, alpha=0.6, label=f"{name}: {len(group)} images")
    ax.axvline(AMBIGUOUS_MARGIN, color="k", linestyle="--",
               label=f"ambiguous below {AMBIGUOUS_MARGIN:g} ({int(per_image['ambiguous'].sum())} of "
                     f"{len(per_image)} images)")
    ax.set_xlabel("margin over the runner-up setting (SD of Fisher's z)")
    ax.set_ylabel("images (count)")
    ax.legend(fontsize="small")
    ax.set_title(title)
    return figure
