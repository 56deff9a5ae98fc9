"""Completeness per resolution shell, against the full reciprocal ASU.

The expected reflections are those of the reciprocal ASU of the data's cell
and space group (systematic absences excluded) between the data's lowest and
highest resolution, from :func:`reciprocalspaceship.utils.generate_reciprocal_asu`.
(:func:`reciprocalspaceship.stats.compute_completeness` is not used because
its "anomalous" completeness counts single Friedel mates rather than pairs.)
"""

import numpy as np
import pandas as pd
import reciprocalspaceship as rs

from careless_online.stats import binning
from careless_online.stats.correlation import group_keys
from careless_online.stats.inputs import friedel_columns, has_friedel_columns


def fraction_per_group(numerator, denominator, group):
    """Ratio of sums ``sum(numerator) / sum(denominator)`` within each group.

    Parameters
    ----------
    numerator, denominator : array-like of float, shape (n,)
    group : array-like, or list of array-like

    Returns
    -------
    pandas.Series
    """
    frame = pd.DataFrame({"num": np.asarray(numerator, dtype=float),
                          "den": np.asarray(denominator, dtype=float)})
    sums = frame.groupby(group_keys(group)).sum()
    with np.errstate(divide="ignore", invalid="ignore"):
        return sums["num"] / sums["den"]


def full_asu(ds, dmax, dmin):
    """Every reflection of the reciprocal ASU of ``ds`` with dmin <= d <= dmax.

    Parameters
    ----------
    ds : reciprocalspaceship.DataSet
        Supplies cell and space group.
    dmax, dmin : float
        Resolution range in Å.

    Returns
    -------
    reciprocalspaceship.DataSet
        Indexed by H, K, L, no columns.
    """
    hkl = rs.utils.generate_reciprocal_asu(ds.cell, ds.spacegroup, dmin, anomalous=False)
    full = rs.DataSet({"H": hkl[:, 0], "K": hkl[:, 1], "L": hkl[:, 2]}, cell=ds.cell,
                      spacegroup=ds.spacegroup, merged=True).set_index(["H", "K", "L"])
    d = rs.utils.compute_dHKL(hkl, ds.cell)
    return full[(d <= dmax) & (d >= dmin)]


def _measured(ds, column, index):
    """Whether ``column`` is finite at each reflection of ``index``."""
    finite = ds.index[np.isfinite(ds[column].to_numpy(dtype=float))]
    return index.isin(finite).astype(float)


def completeness_table(merged, column="F", bins=binning.DEFAULT_SHELLS):
    """Completeness of a merged data set per resolution shell.

    Parameters
    ----------
    merged : reciprocalspaceship.DataSet
        Merged reflections in the reciprocal ASU.
    column : str, optional
        A reflection counts as measured where this column is finite; when
        ``column(+)`` and ``column(-)`` exist the Friedel mates are counted too.
    bins : int or array-like, optional
        Number of equal-count shells (made from the measured reflections) or
        shell edges (Å).

    Returns
    -------
    pandas.DataFrame
        Shell table with ``completeness`` (Friedel mates merged) and, for
        anomalous data, ``completeness_all`` (each Friedel mate of acentric
        reflections counted separately) and ``completeness_anomalous``
        (fraction of acentric reflections with both mates measured), and
        ``n_expected`` (reflections in the full ASU).
    """
    measured = merged[np.isfinite(merged[column].to_numpy(dtype=float))]
    _, edges = binning.assign_shells(measured, bins)
    full, _ = binning.assign_shells(full_asu(merged, edges[0], edges[-1]), edges)
    shell, nshells = full["bin"].to_numpy(), len(edges) - 1
    ones = np.ones(len(full))
    columns = {"completeness": binning.by_shell(
        fraction_per_group, (_measured(merged, column, full.index), ones), shell, nshells)}
    if has_friedel_columns(merged, column):
        plus, minus = (_measured(merged, c, full.index) for c in friedel_columns(column))
        acentric = (~full.label_centrics()["CENTRIC"]).to_numpy(dtype=float)
        columns["completeness_all"] = binning.by_shell(
            fraction_per_group, (plus + minus * acentric, 1.0 + acentric), shell, nshells)
        columns["completeness_anomalous"] = binning.by_shell(
            fraction_per_group, (plus * minus * acentric, acentric), shell, nshells)
    columns["n_expected"] = binning.count_by_shell(ones, shell, nshells)
    return binning.shell_table(edges, **columns)
