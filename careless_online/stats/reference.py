"""Correlation of merged data with a reference (e.g. the simulator's truth)."""

import os

import numpy as np

from careless_online.stats import binning
from careless_online.stats.anomalous import anomalous_differences
from careless_online.stats.correlation import correlation_per_group
from careless_online.stats.inputs import friedel_columns, read_mtz


def _as_dataset(data, required):
    """Read ``data`` if it is a path, checking for ``required`` columns."""
    if isinstance(data, (str, os.PathLike)):
        return read_mtz(data, required=required, merged=True, what="merged MTZ file")
    return data


def _matched(merged, reference, column, ref_column):
    """Join merged and reference values on H, K, L (both mapped to the ASU)."""
    ours = merged[[column]].hkl_to_asu()[[column]]
    theirs = reference[[ref_column]].hkl_to_asu()[[ref_column]]
    joined = ours.rename(columns={column: "merged"}).join(
        theirs.rename(columns={ref_column: "reference"}), how="inner")
    finite = np.isfinite(joined["merged"].to_numpy(dtype=float)) & np.isfinite(
        joined["reference"].to_numpy(dtype=float))
    return joined[finite]


def _cc_columns(joined, edges, method, cc_name, n_name):
    """Per-shell correlation and count columns of a matched table."""
    binned = joined.assign_resolution_bins(bins=edges, return_labels=False)
    arrays = (binned["merged"], binned["reference"])
    shell, nshells = binned["bin"].to_numpy(), len(edges) - 1
    return {
        cc_name: binning.by_shell(lambda x, y, g: correlation_per_group(x, y, g, method=method),
                                        arrays, shell, nshells),
        n_name: binning.count_by_shell(arrays[0], shell, nshells),
    }


def cc_to_reference(merged, reference, column="F", anomalous=False, bins=None,
                    reference_column=None, method="pearson"):
    """Correlation of merged values with reference values, overall and per shell.

    Parameters
    ----------
    merged : reciprocalspaceship.DataSet or path
        Merged data (e.g. ``<base>_0.mtz``).
    reference : reciprocalspaceship.DataSet or path
        Reference data, e.g. the simulator's truth with ``F``, ``F(+)``, ``F(-)``.
    column : str, optional
        Column of ``merged`` to compare (``"F"`` or ``"I"``).
    anomalous : bool, optional
        Also compare anomalous differences ``column(+) - column(-)`` of
        acentric reflections with those of the reference (both files must
        then hold their reflections in the same reciprocal ASU, as
        reciprocalspaceship writes them).
    bins : int or array-like, optional
        Number of equal-count shells (default 10) or shell edges (Å); shells
        are made from the reflections present in both files.
    reference_column : str, optional
        Column of ``reference`` to compare against; default ``column``.
    method : {"pearson", "spearman"}, optional

    Returns
    -------
    pandas.DataFrame
        Shell table (see :mod:`careless_online.stats.binning`) with columns
        ``CC`` and ``n``, and with ``anomalous`` also ``CCanom`` and
        ``n_anom``; ``table.loc["overall", "CC"]`` is the overall value.
    """
    ref_column = column if reference_column is None else reference_column
    need = [column, *friedel_columns(column)] if anomalous else [column]
    need_ref = [ref_column, *friedel_columns(ref_column)] if anomalous else [ref_column]
    merged = _as_dataset(merged, need)
    reference = _as_dataset(reference, need_ref)
    joined = _matched(merged, reference, column, ref_column)
    _, edges = binning.assign_shells(joined, binning.DEFAULT_SHELLS if bins is None else bins)
    columns = _cc_columns(joined, edges, method, "CC", "n")
    if anomalous:
        ours = anomalous_differences(merged, column)
        theirs = anomalous_differences(reference, ref_column)
        dname, dref = "D" + column, "D" + ref_column
        differences = ours.rename(columns={dname: "merged"}).join(
            theirs.rename(columns={dref: "reference"}), how="inner")
        differences = differences[differences["merged"].notna() & differences["reference"].notna()]
        columns.update(_cc_columns(differences, edges, method, "CCanom", "n_anom"))
    return binning.shell_table(edges, **columns)
