"""CCpred: how well the model's predicted intensities match the observations.

Works on a predictions file (``<base>_predictions_<i>.mtz``): one row per
observation with ``Iobs``, ``Ipred``, ``image_id``, ``file_id`` and ``test``
(1 for images held out of training).
"""

import numpy as np
import pandas as pd

from careless_online.stats import binning
from careless_online.stats.correlation import correlation_per_group, count_per_group

#: Columns a predictions file must have.
PREDICTION_COLUMNS = ("image_id", "test", "Iobs", "Ipred")

#: Names of the two splits, by value of the ``test`` column.
SPLITS = {0: "train", 1: "test"}


def ccpred_table(predictions, bins=binning.DEFAULT_SHELLS, method="pearson"):
    """CCpred per resolution shell, for training and held-out observations.

    Parameters
    ----------
    predictions : reciprocalspaceship.DataSet
        Observations with ``Iobs``, ``Ipred`` and ``test`` columns.
    bins : int or array-like, optional
        Number of equal-count shells or shell edges (Å), shared by both splits.
    method : {"pearson", "spearman"}, optional

    Returns
    -------
    pandas.DataFrame
        Shell table with columns ``CCpred_train``, ``CCpred_test``,
        ``n_train`` and ``n_test`` (NaN where a split has no observations).
    """
    binned, edges = binning.assign_shells(predictions, bins)
    nshells = len(edges) - 1
    shell = binned["bin"].to_numpy()
    split = binned["test"].to_numpy(dtype=int)
    iobs, ipred = binned["Iobs"].to_numpy(dtype=float), binned["Ipred"].to_numpy(dtype=float)
    columns = {}
    for value, name in SPLITS.items():
        mask = split == value
        arrays = (iobs[mask], ipred[mask])
        columns[f"CCpred_{name}"] = binning.by_shell(
            lambda x, y, g: correlation_per_group(x, y, g, method=method), arrays, shell[mask],
            nshells)
    for value, name in SPLITS.items():
        mask = split == value
        columns[f"n_{name}"] = binning.count_by_shell(iobs[mask], shell[mask], nshells)
    return binning.shell_table(edges, **columns)


def image_cc_table(predictions, method="spearman"):
    """Correlation between observed and predicted intensities on each image.

    Parameters
    ----------
    predictions : pandas.DataFrame or reciprocalspaceship.DataSet
        Observations with ``image_id``, ``test``, ``Iobs``, ``Ipred`` and,
        optionally, ``file_id`` (images are then told apart per file).
    method : {"spearman", "pearson"}, optional

    Returns
    -------
    pandas.DataFrame
        One row per image: ``file_id`` (if present), ``image_id``, ``test``,
        ``n`` (finite pairs) and ``cc``.
    """
    keys = [k for k in ("file_id", "image_id") if k in predictions.columns]
    ids = [predictions[k].to_numpy(dtype=int) for k in keys]
    iobs = predictions["Iobs"].to_numpy(dtype=float)
    ipred = predictions["Ipred"].to_numpy(dtype=float)
    cc = correlation_per_group(iobs, ipred, ids, method=method)
    n = count_per_group(np.where(np.isfinite(ipred), iobs, np.nan), ids)
    test = pd.Series(predictions["test"].to_numpy(dtype=int)).groupby(ids).max()
    table = pd.DataFrame({"test": test, "n": n.reindex(test.index).fillna(0).astype(int),
                          "cc": cc.reindex(test.index)})
    table.index.names = keys
    return table.reset_index()


def image_cc_summary(per_image):
    """Mean and median per-image correlation, for training and held-out images.

    Parameters
    ----------
    per_image : pandas.DataFrame
        The output of :func:`image_cc_table`.

    Returns
    -------
    pandas.DataFrame
        Index ``split`` (``train``, ``test``); columns ``images`` (with a
        defined correlation), ``mean_cc`` and ``median_cc``.
    """
    rows = {}
    for value, name in SPLITS.items():
        cc = per_image.loc[per_image["test"] == value, "cc"].dropna()
        rows[name] = {"images": len(cc), "mean_cc": cc.mean(), "median_cc": cc.median()}
    return pd.DataFrame.from_dict(rows, orient="index").rename_axis("split")
