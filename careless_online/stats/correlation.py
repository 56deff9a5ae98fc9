"""Correlation coefficients computed separately within groups of observations.

All functions are vectorised with pandas group-by sums, so that thousands of
groups (images, resolution shells times repeats) cost one pass over the data.
Pairs in which either value (or the weight) is not finite are ignored.
"""

import numpy as np
import pandas as pd

#: Correlation methods understood by :func:`correlation_per_group`.
METHODS = ("pearson", "spearman")


def group_keys(group):
    """Normalise a group specification to a list of key arrays.

    Parameters
    ----------
    group : array-like, or list/tuple of array-likes
        One key per row, or several keys to be combined.

    Returns
    -------
    list of numpy.ndarray
    """
    several = isinstance(group, (list, tuple)) and len(group) > 0 and np.ndim(group[0]) > 0
    return [np.asarray(k) for k in group] if several else [np.asarray(group)]


def _frame(x, y, group, weights=None):
    """Collect x, y, weights and group keys into one frame of finite rows."""
    columns = {"x": np.asarray(x, dtype=float), "y": np.asarray(y, dtype=float)}
    columns["w"] = (np.ones_like(columns["x"]) if weights is None
                    else np.asarray(weights, dtype=float))
    keys = group_keys(group)
    names = [f"_g{i}" for i in range(len(keys))]
    for name, key in zip(names, keys):
        columns[name] = key
    frame = pd.DataFrame(columns)
    finite = np.isfinite(frame[["x", "y", "w"]].to_numpy()).all(axis=1)
    return frame[finite], names


def _group_index(result, names):
    """Drop the internal key names from a group-by result."""
    result.index.names = [None] * len(names)
    return result


def pearson_per_group(x, y, group, weights=None):
    """Pearson correlation of ``x`` and ``y`` within each group.

    Parameters
    ----------
    x, y : array-like of float, shape (n,)
        Paired values.
    group : array-like, shape (n,), or list of such arrays
        Group key of each pair; a list of arrays groups by their combination.
    weights : array-like of float, shape (n,), optional
        Non-negative weight of each pair (weighted Pearson correlation).

    Returns
    -------
    pandas.Series
        Correlation per group, indexed by group key (a MultiIndex when
        ``group`` is a list).  Groups with fewer than two pairs or without
        variance get NaN.
    """
    frame, names = _frame(x, y, group, weights)
    keys = [frame[n] for n in names]
    w = frame["w"]
    sw = w.groupby(keys).transform("sum")
    dx = frame["x"] - (w * frame["x"]).groupby(keys).transform("sum") / sw
    dy = frame["y"] - (w * frame["y"]).groupby(keys).transform("sum") / sw
    sums = pd.DataFrame({
        "xy": w * dx * dy,
        "xx": w * dx * dx,
        "yy": w * dy * dy,
        **{n: frame[n] for n in names},
    }).groupby(names, sort=True).sum()
    with np.errstate(divide="ignore", invalid="ignore"):
        cc = sums["xy"] / np.sqrt(sums["xx"] * sums["yy"])
    cc[~np.isfinite(cc)] = np.nan
    cc.name = "cc"
    return _group_index(cc, names)


def spearman_per_group(x, y, group):
    """Spearman rank correlation of ``x`` and ``y`` within each group.

    Ranks are taken within each group, ties receiving their average rank, as
    :func:`scipy.stats.spearmanr` does; the result is the Pearson correlation
    of the ranks.

    Parameters
    ----------
    x, y : array-like of float, shape (n,)
        Paired values (e.g. observed and predicted intensities).
    group : array-like, shape (n,), or list of such arrays
        Group key of each pair (e.g. the image id).

    Returns
    -------
    pandas.Series
        Correlation per group, indexed by group key; NaN for groups with
        fewer than two pairs or constant values.
    """
    frame, names = _frame(x, y, group)
    grouped = frame.groupby(names, sort=False)
    rx = grouped["x"].rank(method="average")
    ry = grouped["y"].rank(method="average")
    keys = [frame[n].to_numpy() for n in names]
    return pearson_per_group(rx.to_numpy(), ry.to_numpy(), keys if len(keys) > 1 else keys[0])


def correlation_per_group(x, y, group, method="pearson", weights=None):
    """Pearson or Spearman correlation within each group.

    Parameters
    ----------
    x, y : array-like of float, shape (n,)
    group : array-like, shape (n,), or list of such arrays
    method : {"pearson", "spearman"}
    weights : array-like of float, optional
        Only for ``method="pearson"``.

    Returns
    -------
    pandas.Series
        Correlation per group.
    """
    if method == "pearson":
        return pearson_per_group(x, y, group, weights=weights)
    if method == "spearman":
        if weights is not None:
            raise ValueError("weights are only supported for the Pearson correlation")
        return spearman_per_group(x, y, group)
    raise ValueError(f"unknown correlation method {method!r}; use one of {', '.join(METHODS)}")


def correlation(x, y, method="pearson", weights=None):
    """Correlation of two arrays over all finite pairs.

    Parameters
    ----------
    x, y : array-like of float, shape (n,)
    method : {"pearson", "spearman"}
    weights : array-like of float, optional
        Only for ``method="pearson"``.

    Returns
    -------
    float
        The correlation coefficient, NaN if undefined.
    """
    x = np.asarray(x, dtype=float)
    group = np.zeros(len(x), dtype=int)
    result = correlation_per_group(x, y, group, method=method, weights=weights)
    return float(result.iloc[0]) if len(result) else float("nan")


def count_per_group(x, group):
    """Number of finite values of ``x`` in each group.

    Parameters
    ----------
    x : array-like of float, shape (n,)
    group : array-like, shape (n,), or list of such arrays

    Returns
    -------
    pandas.Series
        Count per group.
    """
    frame, names = _frame(x, x, group)
    return _group_index(frame.groupby(names, sort=True).size().rename("n"), names)
