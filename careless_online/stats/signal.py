"""Mean signal-to-noise ratio (<F/SIGF>, <I/SIGI>) per resolution shell."""

import numpy as np
import pandas as pd

from careless_online.errors import DataError
from careless_online.stats import binning
from careless_online.stats.anomalous import stack_friedel
from careless_online.stats.correlation import group_keys
from careless_online.stats.inputs import has_friedel_columns

#: Value and uncertainty columns whose ratio is reported.
PAIRS = (("F", "SIGF"), ("I", "SIGI"))


def mean_ratio_per_group(value, sigma, group):
    """Mean of ``value / sigma`` within each group.

    Parameters
    ----------
    value, sigma : array-like of float, shape (n,)
    group : array-like, or list of array-like

    Returns
    -------
    pandas.Series
        Mean ratio per group (pairs with a non-positive sigma are ignored).
    """
    value, sigma = np.asarray(value, dtype=float), np.asarray(sigma, dtype=float)
    ratio = np.where(sigma > 0, value / np.where(sigma > 0, sigma, 1.0), np.nan)
    return pd.Series(ratio).groupby(group_keys(group)).mean()


def _ratio_column(ds, value, sigma, nshells):
    """Per-shell mean ratio of a binned DataSet."""
    arrays = (ds[value].to_numpy(dtype=float), ds[sigma].to_numpy(dtype=float))
    return binning.by_shell(mean_ratio_per_group, arrays, ds["bin"].to_numpy(), nshells)


def column_ratio_table(merged, value, sigma, bins=binning.DEFAULT_SHELLS, label=None):
    """Mean ``value / sigma`` of two named columns per resolution shell (careless.isigi's keys).

    Shells are made over all reflections; a reflection whose ``value`` is
    missing (e.g. ``I(+)`` of a reflection seen only as ``h-``) does not enter
    the mean or the count.

    Parameters
    ----------
    merged : reciprocalspaceship.DataSet
    value, sigma : str
        Column names, e.g. ``"I(+)"`` and ``"SIGI(+)"``.
    bins : int or array-like, optional
        Number of equal-count shells or shell edges (Å).
    label : str, optional
        Name of the ratio column (default ``"value/sigma"``).

    Returns
    -------
    pandas.DataFrame
        Shell table with the ratio and ``n``.
    """
    missing = [c for c in (value, sigma) if c not in merged.columns]
    if missing:
        raise DataError(f"no column {', '.join(missing)}")
    binned, edges = binning.assign_shells(merged, bins)
    nshells = len(edges) - 1
    return binning.shell_table(edges, **{label or f"{value}/{sigma}": _ratio_column(binned, value, sigma, nshells),
                                         "n": binning.count_by_shell(binned[value], binned["bin"], nshells)})


def isigi_table(merged, bins=binning.DEFAULT_SHELLS):
    """<F/SIGF> and <I/SIGI> per resolution shell.

    Parameters
    ----------
    merged : reciprocalspaceship.DataSet
        Merged reflections with any of the pairs F, SIGF and I, SIGI; when
        the Friedel columns (e.g. ``F(+)``, ``SIGF(+)``, ``F(-)``,
        ``SIGF(-)``) exist, the ratio is also reported over Friedel mates as
        separate reflections.
    bins : int or array-like, optional
        Number of equal-count shells or shell edges (Å).

    Returns
    -------
    pandas.DataFrame
        Shell table with ``F/SIGF``, ``I/SIGI`` (those available), their
        ``_anom`` versions for anomalous data, and ``n``.
    """
    pairs = [p for p in PAIRS if all(c in merged.columns for c in p)]
    if not pairs:
        raise DataError("no F, SIGF or I, SIGI columns")
    binned, edges = binning.assign_shells(merged, bins)
    nshells = len(edges) - 1
    columns = {f"{v}/{s}": _ratio_column(binned, v, s, nshells) for v, s in pairs}
    first = pairs[0][0]
    columns["n"] = binning.count_by_shell(binned[first], binned["bin"], nshells)
    for v, s in pairs:
        if has_friedel_columns(merged, v) and has_friedel_columns(merged, s):
            stacked = stack_friedel(merged, [v, s])
            stacked = stacked.assign_resolution_bins(bins=edges, return_labels=False)
            columns[f"{v}/{s}_anom"] = _ratio_column(stacked, v, s, nshells)
    return binning.shell_table(edges, **columns)
