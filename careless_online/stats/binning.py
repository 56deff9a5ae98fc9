"""Resolution shells and the shell-by-shell tables every statistic reports.

Shells are made by :meth:`reciprocalspaceship.DataSet.assign_resolution_bins`:
given a number of shells, it cuts at percentiles of the resolution, so each
shell holds about the same number of reflections (equal-count shells).

A *shell table* is a :class:`pandas.DataFrame` indexed by shell label
(``"1"`` … ``"N"``, lowest resolution first, then ``"overall"``) with columns
``d_max`` and ``d_min`` (Å) followed by the statistics.
"""

import numpy as np
import pandas as pd

from careless_online.errors import DataError
from careless_online.stats.correlation import count_per_group

#: Default number of resolution shells.
DEFAULT_SHELLS = 10

#: How shells are made, for help texts.
SHELLS_HELP = ("resolution shells hold equal numbers of reflections "
               "(reciprocalspaceship DataSet.assign_resolution_bins)")

#: Label of the row summarising all shells.
OVERALL = "overall"


def assign_shells(ds, bins=DEFAULT_SHELLS):
    """Assign each reflection to a resolution shell.

    Parameters
    ----------
    ds : reciprocalspaceship.DataSet
        Reflections indexed by H, K, L, with cell and space group.
    bins : int or array-like of float
        Number of equal-count shells, or shell edges in Å (descending);
        reflections outside explicit edges are dropped.

    Returns
    -------
    binned : reciprocalspaceship.DataSet
        A copy of ``ds`` with an integer column ``bin`` (0 = lowest resolution).
    edges : numpy.ndarray of float, shape (nshells + 1,)
        Shell edges in Å, from low to high resolution.
    """
    if len(ds) == 0:
        raise DataError("no reflections to assign to resolution shells")
    binned, edges = ds.assign_resolution_bins(bins=bins, return_labels=False, return_edges=True)
    edges = np.asarray(edges, dtype=float)
    if edges[0] < edges[-1]:
        raise ValueError("shell edges must be given from low to high resolution (descending d)")
    return binned, edges


def by_shell(metric, arrays, shell, nshells, replicate=None):
    """Evaluate a per-group statistic in every shell and overall.

    Parameters
    ----------
    metric : callable
        ``metric(*arrays, group) -> pandas.Series`` indexed by group, such as
        :func:`careless_online.stats.correlation.pearson_per_group`.
    arrays : sequence of array-like, each of shape (n,)
        Data passed to ``metric``; rows where any of them is not finite are
        left out.
    shell : array-like of int, shape (n,)
        Shell of each row (0 … nshells - 1).
    nshells : int
        Number of shells (empty shells get NaN).
    replicate : array-like, shape (n,), optional
        Independent replicates (e.g. half-dataset repeats): the statistic is
        computed within each and averaged over them.

    Returns
    -------
    pandas.Series
        Indexed by shell label ``"1"`` … ``str(nshells)`` and ``"overall"``.
    """
    arrays = [np.asarray(a, dtype=float) for a in arrays]
    finite = np.logical_and.reduce([np.isfinite(a) for a in arrays])
    arrays = [a[finite] for a in arrays]
    shell = np.asarray(shell)[finite]
    if replicate is None:
        replicate = np.zeros(len(shell), dtype=int)
    else:
        replicate = np.asarray(replicate)[finite]
    per_shell = metric(*arrays, [shell, replicate]).groupby(level=0).mean()
    per_shell = per_shell.reindex(range(nshells))
    overall = metric(*arrays, replicate).mean() if len(shell) else np.nan
    values = np.append(per_shell.to_numpy(dtype=float), overall)
    return pd.Series(values, index=shell_labels(nshells))


def count_by_shell(values, shell, nshells, replicate=None):
    """Number of finite values in every shell and overall.

    Parameters
    ----------
    values : array-like of float, shape (n,)
    shell : array-like of int, shape (n,)
    nshells : int
    replicate : array-like, shape (n,), optional
        With replicates, the mean count per replicate.

    Returns
    -------
    pandas.Series of Int64
        Indexed like :func:`by_shell`.
    """
    counts = by_shell(count_per_group, (values,), shell, nshells, replicate=replicate)
    return counts.fillna(0).round().astype("Int64")


def shell_labels(nshells):
    """Row labels of a shell table: ``"1"`` … ``str(nshells)``, ``"overall"``.

    Parameters
    ----------
    nshells : int

    Returns
    -------
    list of str
    """
    return [str(i + 1) for i in range(nshells)] + [OVERALL]


def shell_table(edges, **columns):
    """Assemble a shell table.

    Parameters
    ----------
    edges : array-like of float, shape (nshells + 1,)
        Shell edges in Å, from low to high resolution.
    **columns : pandas.Series
        Statistics indexed by :func:`shell_labels`; keyword order is column order.

    Returns
    -------
    pandas.DataFrame
        Index ``shell``; columns ``d_max``, ``d_min`` and the statistics.
    """
    edges = np.asarray(edges, dtype=float)
    labels = shell_labels(len(edges) - 1)
    table = pd.DataFrame(
        {"d_max": np.append(edges[:-1], edges[0]), "d_min": np.append(edges[1:], edges[-1])},
        index=pd.Index(labels, name="shell"),
    )
    for name, values in columns.items():
        values = pd.Series(values)
        values.index = values.index.astype(str)
        table[name] = values.reindex(labels)
    return table
