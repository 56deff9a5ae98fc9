"""Quality of a merge of simulated data against the truth: CC(F) and CCanom."""

import numpy as np
import pandas as pd


def _joined(merged, truth, columns, truth_columns):
    """Rows of both tables (by H, K, L) with finite values in ``columns`` and ``truth_columns``."""
    joined = merged[columns].join(truth[truth_columns].add_suffix("_true"), how="inner")
    joined = joined.astype(float)
    return joined[np.isfinite(joined.to_numpy()).all(axis=1)]


def cc_f(merged, truth):
    """Pearson CC of the merged ``F`` with the true ``F`` over the reflections both have.

    Parameters
    ----------
    merged : rs.DataSet
        A merge with an ``F`` column (the Friedel mean with ``--output-columns ccp4``).
    truth : rs.DataSet
        The simulator's truth (``F``).

    Returns
    -------
    (float, int)
        The CC and the number of reflections.
    """
    joined = _joined(merged, truth, ["F"], ["F"])
    return float(np.corrcoef(joined["F"], joined["F_true"])[0, 1]), len(joined)


def cc_anom(merged, truth):
    """Pearson CC of the merged ``F(+) - F(-)`` with the true ``F(+) - F(-)`` (acentric pairs both measured)."""
    joined = _joined(merged, truth, ["F(+)", "F(-)"], ["F(+)", "F(-)"])
    if len(joined):
        centric = merged.loc[joined.index].label_centrics()["CENTRIC"].to_numpy()
        joined = joined[~centric]
    measured = joined["F(+)"] - joined["F(-)"]
    true = joined["F(+)_true"] - joined["F(-)_true"]
    return float(np.corrcoef(measured, true)[0, 1]), len(joined)


def resolution_matched(targets, pool, per_target=3):
    """Reflections of ``pool`` like ``targets``: the same spot count, the nearest resolutions.

    Parameters
    ----------
    targets, pool : pandas.DataFrame
        :func:`~careless_online.simulate.laue_oracle.reflection_spots` rows (``spots``, ``d``).
    per_target : int
        Pool reflections taken per target (each at most once in the result).

    Returns
    -------
    pandas.Index
        Of ``pool``'s H, K, L: for every target, the ``per_target`` reflections
        with as many spots whose ``|d - d_target|`` is smallest.
    """
    chosen = []
    for _, target in targets.iterrows():
        same = pool[pool["spots"] == target["spots"]]
        chosen.extend(same.index[np.argsort(np.abs(same["d"].to_numpy() - target["d"]))[:per_target]])
    return pd.Index(list(dict.fromkeys(chosen)))
