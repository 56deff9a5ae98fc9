"""Statistics between half-dataset merges: CC1/2, CCanom and Rsplit.

A half-dataset file (``<base>_xval_<i>.mtz``) holds, for every repeat, two
merges of disjoint halves of the images (column ``half`` 0 or 1).  Each
statistic pairs the two halves on H, K, L within a repeat, is computed per
resolution shell within each repeat, and is averaged over the repeats.
"""

import numpy as np
import pandas as pd
import reciprocalspaceship as rs
from scipy.optimize import minimize_scalar

from careless_online.stats import binning
from careless_online.stats.anomalous import anomalous_differences, stack_friedel
from careless_online.stats.correlation import METHODS, correlation_per_group, group_keys
from careless_online.stats.inputs import has_friedel_columns

#: Columns that identify a half-dataset merge.
HALF_COLUMNS = ("repeat", "half")


def pair_halves(xval, column):
    """Pair the two half-dataset values of each reflection within each repeat.

    Parameters
    ----------
    xval : reciprocalspaceship.DataSet
        Half-dataset merges indexed by H, K, L with columns ``repeat``,
        ``half`` and ``column``.
    column : str
        The value to pair.

    Returns
    -------
    reciprocalspaceship.DataSet
        Indexed by H, K, L; columns ``repeat``, ``<column>_0`` and
        ``<column>_1``; only reflections measured in both halves.
    """
    frame = pd.DataFrame({
        "repeat": xval["repeat"].to_numpy(dtype=int),
        "half": xval["half"].to_numpy(dtype=int),
        "value": xval[column].to_numpy(dtype=float),
    }, index=xval.index).reset_index()
    frame = frame[np.isfinite(frame["value"])]
    keys = list(xval.index.names) + ["repeat"]
    halves = [frame[frame["half"] == h].drop(columns="half")
              .rename(columns={"value": f"{column}_{h}"}) for h in (0, 1)]
    paired = halves[0].merge(halves[1], on=keys, how="inner")
    return rs.DataSet(paired, cell=xval.cell, spacegroup=xval.spacegroup, merged=True).set_index(
        list(xval.index.names))


def _friedel_mode(xval, column, anomalous):
    """Decide whether to use the Friedel columns of ``column``."""
    if anomalous == "auto":
        return has_friedel_columns(xval, column)
    return bool(anomalous)


def half_values(xval, column, anomalous="auto"):
    """The per-reflection values compared between halves.

    Parameters
    ----------
    xval : reciprocalspaceship.DataSet
        Half-dataset merges.
    column : str
        ``"F"`` or ``"I"`` (or any merged column).
    anomalous : bool or "auto"
        Use the Friedel mates ``column(+)``, ``column(-)`` as separate
        reflections; ``"auto"``: when those columns exist.

    Returns
    -------
    reciprocalspaceship.DataSet
        Columns ``repeat``, ``half`` and ``column``.
    """
    if _friedel_mode(xval, column, anomalous):
        return stack_friedel(xval, [column], keep=HALF_COLUMNS)
    return xval[list(HALF_COLUMNS) + [column]]


def _shell_statistics(paired, column, bins, statistics):
    """Shell table of statistics between ``<column>_0`` and ``<column>_1``."""
    binned, edges = binning.assign_shells(paired, bins)
    arrays = (binned[f"{column}_0"], binned[f"{column}_1"])
    shell, repeat = binned["bin"].to_numpy(), binned["repeat"].to_numpy()
    nshells = len(edges) - 1
    columns = {name: binning.by_shell(metric, arrays, shell, nshells, replicate=repeat)
               for name, metric in statistics.items()}
    columns["n"] = binning.count_by_shell(arrays[0], shell, nshells, replicate=repeat)
    return binning.shell_table(edges, **columns)


def _correlations(prefix, methods):
    """Named correlation metrics for :func:`_shell_statistics`."""
    return {f"{prefix}_{m}": (lambda x, y, g, m=m: correlation_per_group(x, y, g, method=m))
            for m in methods}


def cchalf_table(xval, column="F", bins=binning.DEFAULT_SHELLS, methods=METHODS, anomalous="auto"):
    """CC1/2 per resolution shell.

    Parameters
    ----------
    xval : reciprocalspaceship.DataSet
        Half-dataset merges (columns ``repeat``, ``half`` and the data).
    column : str, optional
        ``"F"`` (amplitudes) or ``"I"`` (intensities).
    bins : int or array-like, optional
        Number of equal-count shells or shell edges (Å).
    methods : sequence of {"pearson", "spearman"}, optional
    anomalous : bool or "auto", optional
        Treat Friedel mates as separate reflections (see :func:`half_values`).

    Returns
    -------
    pandas.DataFrame
        Shell table with columns ``CC1/2_<method>`` and ``n`` (pairs per repeat).
    """
    paired = pair_halves(half_values(xval, column, anomalous), column)
    return _shell_statistics(paired, column, bins, _correlations("CC1/2", methods))


def ccanom_table(xval, column="F", bins=binning.DEFAULT_SHELLS, methods=METHODS):
    """CCanom: correlation of anomalous differences between halves, per shell.

    Parameters
    ----------
    xval : reciprocalspaceship.DataSet
        Half-dataset merges with ``column(+)`` and ``column(-)``.
    column : str, optional
        ``"F"`` or ``"I"``; the difference is ``column(+) - column(-)``.
    bins : int or array-like, optional
    methods : sequence of {"pearson", "spearman"}, optional

    Returns
    -------
    pandas.DataFrame
        Shell table with columns ``CCanom_<method>`` and ``n``; acentric
        reflections with both mates in both halves only.
    """
    differences = anomalous_differences(xval, column, keep=HALF_COLUMNS)
    paired = pair_halves(differences, "D" + column)
    return _shell_statistics(paired, "D" + column, bins, _correlations("CCanom", methods))


def rsplit_per_group(x, y, group):
    """Rsplit of paired half-dataset values within each group.

    ``Rsplit = sum|x - y| / (sqrt(2) * 0.5 * sum(x + y))``.

    Parameters
    ----------
    x, y : array-like of float, shape (n,)
        Values (intensities) from the two halves.
    group : array-like, or list of array-like

    Returns
    -------
    pandas.Series
        Rsplit per group.
    """
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    frame = pd.DataFrame({"num": np.abs(x - y), "den": 0.5 * (x + y)})
    sums = frame.groupby(group_keys(group)).sum()
    with np.errstate(divide="ignore", invalid="ignore"):
        return (sums["num"] / (np.sqrt(2.0) * sums["den"])).rename("Rsplit")


def _split_ratio(k, x, y):
    """``sum|x - k y| / sum(x + k y)``, the ratio Rsplit is sqrt(2) times."""
    return np.sum(np.abs(x - k * y)) / np.sum(x + k * y)


def scaled_rsplit_per_group(x, y, group):
    """Rsplit within each group with the second half scaled by the factor ``k`` that minimizes it.

    ``Rsplit = sqrt(2) * min_k sum|x - k y| / sum(x + k y)``, careless.rsplit's
    definition (it scales the halves' amplitudes so); with ``k = 1`` it is
    :func:`rsplit_per_group`.  ``k`` is searched in ``[0.1, 10]``.

    Parameters
    ----------
    x, y : array-like of float, shape (n,)
    group : array-like, or list of array-like

    Returns
    -------
    pandas.Series
        Rsplit per group.
    """
    frame = pd.DataFrame({"x": np.asarray(x, dtype=float), "y": np.asarray(y, dtype=float)})
    out = {}
    for key, rows in frame.groupby(group_keys(group)):
        xs, ys = rows["x"].to_numpy(), rows["y"].to_numpy()
        best = minimize_scalar(_split_ratio, bounds=(0.1, 10.0), args=(xs, ys), method="bounded")
        out[key[0] if isinstance(key, tuple) and len(key) == 1 else key] = np.sqrt(2.0) * float(best.fun)
    return pd.Series(out, name="Rsplit", dtype=float)


def rsplit_table(xval, column="I", bins=binning.DEFAULT_SHELLS, anomalous="auto", fit_scale=False):
    """Rsplit per resolution shell.

    Parameters
    ----------
    xval : reciprocalspaceship.DataSet
        Half-dataset merges.
    column : str, optional
        The intensity column (``"F"``: amplitudes, as careless.rsplit).
    bins : int or array-like, optional
    anomalous : bool or "auto", optional
        Treat Friedel mates as separate reflections (see :func:`half_values`).
    fit_scale : bool, optional
        Scale the second half by the factor that minimizes Rsplit in each
        shell (:func:`scaled_rsplit_per_group`, careless.rsplit's definition).

    Returns
    -------
    pandas.DataFrame
        Shell table with columns ``Rsplit`` and ``n``.
    """
    paired = pair_halves(half_values(xval, column, anomalous), column)
    metric = scaled_rsplit_per_group if fit_scale else rsplit_per_group
    return _shell_statistics(paired, column, bins, {"Rsplit": metric})
