"""Quality of a merge of simulated data against the truth: CC(F) and CCanom."""

import numpy as np
import pandas as pd

from careless_online.stats.reference import cc_to_reference


def _overall(merged, truth, anomalous, cc="CC", n="n"):
    """The overall row of :func:`careless_online.stats.reference.cc_to_reference` in one shell: (CC, count)."""
    row = cc_to_reference(merged, truth, anomalous=anomalous, bins=1).loc["overall"]
    return float(row[cc]), int(row[n])


def cc_f(merged, truth):
    """Pearson CC of the merged ``F`` with the true ``F`` over the reflections both have.

    Parameters
    ----------
    merged : rs.DataSet
        A merge with an ``F`` column (internal names, :func:`careless_online.io.layout.to_internal`).
    truth : rs.DataSet
        The simulator's truth (``F``).

    Returns
    -------
    (float, int)
        The CC and the number of reflections.
    """
    return _overall(merged, truth, anomalous=False)


def cc_anom(merged, truth):
    """Pearson CC of the merged ``F(+) - F(-)`` with the true ``F(+) - F(-)`` (acentric pairs both measured)."""
    return _overall(merged, truth, anomalous=True, cc="CCanom", n="n_anom")


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
