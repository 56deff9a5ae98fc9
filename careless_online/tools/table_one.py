"""The data-collection table of a paper ("table one") from a merge's output files.

Every number comes from the statistics commands' functions on shells shared by
all of them (equal-count shells of the merged reflections): completeness
(:mod:`careless_online.stats.completeness`), CC1/2 and CCanom between half-dataset
merges (:mod:`careless_online.stats.halves`, on intensities as careless.cchalf
does by default) and mean I/sigma(I) (:mod:`careless_online.stats.signal`);
multiplicity is the mean observation count ``N`` of the merged reflections.
Each statistic is given overall and in the highest-resolution shell.
"""

import numpy as np
import pandas as pd

from careless_online.errors import DataError
from careless_online.stats import binning
from careless_online.stats.completeness import completeness_table
from careless_online.stats.halves import ccanom_table, cchalf_table
from careless_online.stats.inputs import has_friedel_columns
from careless_online.stats.signal import isigi_table

#: Columns of the table.
OVERALL, OUTER = "overall", "outer shell"


def _first(table, prefix):
    """The first column of a shell table whose name starts with ``prefix``."""
    names = [c for c in table.columns if c.startswith(prefix)]
    if not names:
        raise DataError(f"no {prefix} column in the statistics")
    return table[names[0]]


def _both(series):
    """(overall, outer shell) values of a shell-table column."""
    return float(series[binning.OVERALL]), float(series.drop(binning.OVERALL).iloc[-1])


def _multiplicity(merged, edges):
    """Mean ``N`` overall and in the last shell (N(+) + N(-) for anomalous files without N)."""
    counts = merged["N"] if "N" in merged.columns else merged["N(+)"].fillna(0) + merged["N(-)"].fillna(0)
    binned, _ = binning.assign_shells(merged.assign(count=counts.to_numpy(float)), edges)
    outer = binned["bin"].to_numpy() == len(edges) - 2
    values = binned["count"].to_numpy(float)
    return float(values.mean()), float(values[outer].mean())


def table_one(merged, xval=None, bins=binning.DEFAULT_SHELLS):
    """Overall and outer-shell statistics of a merge.

    Parameters
    ----------
    merged : reciprocalspaceship.DataSet
        The merged file (``F`` or ``F(+)/F(-)``, ``I``, ``N``).
    xval : reciprocalspaceship.DataSet, optional
        Its half-dataset merges (for CC1/2 and, with Friedel columns, CCanom).
    bins : int
        Equal-count shells (the outer shell is the last).

    Returns
    -------
    pandas.DataFrame
        Index: the statistics; columns :data:`OVERALL` and :data:`OUTER`.
    """
    column = "F" if "F" in merged.columns else "F(+)"
    measured = merged[np.isfinite(merged[column].to_numpy(float))]
    _, edges = binning.assign_shells(measured, bins)
    rows = {
        "High resolution limit (A)": (float(edges[-1]), float(edges[-1])),
        "Low resolution limit (A)": (float(edges[0]), float(edges[-2])),
        "Unique reflections": (float(len(measured)), float(_count_outer(measured, edges))),
        "Multiplicity": _multiplicity(measured, edges),
        "Completeness (%)": _both(100 * completeness_table(merged, column, edges)["completeness"]),
        "Mean I/sigma(I)": _both(_first(isigi_table(merged, edges), "I/")),
    }
    if xval is not None:
        quantity = "I" if "I" in xval.columns else "F"
        rows["CC1/2"] = _both(_first(cchalf_table(xval, quantity, edges, ("pearson",), anomalous=False), "CC1/2"))
        if has_friedel_columns(xval, quantity):
            rows["CCanom"] = _both(_first(ccanom_table(xval, quantity, edges, ("pearson",)), "CCanom"))
    return pd.DataFrame.from_dict(rows, orient="index", columns=[OVERALL, OUTER])


def _count_outer(measured, edges):
    binned, _ = binning.assign_shells(measured, edges)
    return int(np.sum(binned["bin"].to_numpy() == len(edges) - 2))


#: Decimals of each statistic in the printed table.
DECIMALS = {"High resolution limit (A)": 2, "Low resolution limit (A)": 2, "Unique reflections": 0,
            "Multiplicity": 1, "Completeness (%)": 1, "Mean I/sigma(I)": 1, "CC1/2": 3, "CCanom": 3}


def paper_lines(table):
    """Lines ``statistic<TAB>overall (outer shell)`` as a paper prints them (resolution as a range)."""
    low, high = table.loc["Low resolution limit (A)"], table.loc["High resolution limit (A)"]
    lines = [f"Resolution (A)\t{low[OVERALL]:.2f}-{high[OVERALL]:.2f} ({low[OUTER]:.2f}-{high[OUTER]:.2f})"]
    for name, row in table.iterrows():
        if "resolution limit" in name:
            continue
        digits = DECIMALS.get(name, 3)
        lines.append(f"{name}\t{row[OVERALL]:.{digits}f} ({row[OUTER]:.{digits}f})")
    return lines
