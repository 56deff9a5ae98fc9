"""Figures of the statistics tables (matplotlib, Agg canvas, no pyplot state)."""

import os

import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from careless_online.io.atomic import write_atomically
from careless_online.stats.binning import OVERALL
from careless_online.stats.history import CC_COLUMNS, LOSS_COLUMNS, history_metrics


def new_figure(nrows=1, ncols=1, size=(6.0, 4.0)):
    """A figure with an Agg canvas and a grid of axes.

    Parameters
    ----------
    nrows, ncols : int, optional
    size : tuple of float, optional
        Size of one panel in inches.

    Returns
    -------
    figure : matplotlib.figure.Figure
    axes : numpy.ndarray of matplotlib.axes.Axes, shape (nrows, ncols)
    """
    figure = Figure(figsize=(size[0] * ncols, size[1] * nrows), layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.subplots(nrows, ncols, squeeze=False)
    return figure, axes


def supported_image_formats():
    """The file name extensions (without the dot) a figure can be saved as, e.g. ``png``, ``pdf``, ``svg``."""
    return set(FigureCanvasAgg.get_supported_filetypes())


def save_figure(figure, path, dpi=150):
    """Write a figure to an image file (format from the file name), atomically.

    Parameters
    ----------
    figure : matplotlib.figure.Figure
    path : str or os.PathLike
    dpi : int, optional
    """
    write_atomically(os.fspath(path), lambda tmp: figure.savefig(tmp, dpi=dpi))


def data_name(path):
    """The name a figure gives its data: the file name without folder and extension.

    Parameters
    ----------
    path : str or os.PathLike

    Returns
    -------
    str
        E.g. ``hewl_xval_0`` for ``out/hewl_xval_0.mtz``.
    """
    return os.path.splitext(os.path.basename(str(path)))[0]


def _overall(table, column):
    """The overall value of a column of a shell table, or NaN."""
    if OVERALL not in table.index or column not in table.columns:
        return float("nan")
    return float(pd.to_numeric(table.loc[OVERALL, column], errors="coerce"))


def shell_figure(table, columns, ylabel, title):
    """Plot statistics of a shell table against resolution.

    Each line's legend entry gives the overall value (the table's ``overall``
    row), which also appears as a dotted horizontal line.

    Parameters
    ----------
    table : pandas.DataFrame
        A shell table (see :mod:`careless_online.stats.binning`).
    columns : sequence of str
        Columns to plot, one line each.
    ylabel : str
        Label of the y axis, with its unit.
    title : str
        Title naming the statistic and the data (see :func:`data_name`).

    Returns
    -------
    matplotlib.figure.Figure
    """
    shells = table.drop(index=OVERALL, errors="ignore")
    figure, axes = new_figure()
    ax = axes[0, 0]
    x = np.arange(len(shells))
    for column in columns:
        overall = _overall(table, column)
        label = column if np.isnan(overall) else f"{column} (overall {overall:.3g})"
        line, = ax.plot(x, shells[column].to_numpy(dtype=float), marker="o", label=label)
        if not np.isnan(overall):
            ax.axhline(overall, color=line.get_color(), linestyle=":", linewidth=1)
    ax.set_xticks(x, [f"{d:.2f}" for d in shells["d_min"]], rotation=45)
    ax.set_xlabel("resolution shell, high-resolution limit (Å)")
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small")
    ax.set_title(title)
    return figure


#: y-axis labels (with units) of the history panels.
HISTORY_LABELS = {
    "loss": "loss, −ELBO share per step (nats)",
    "NLL": "NLL per step (nats)",
    "KL_F": "KL of F per step (nats)",
    "KL_Sigma": "KL of scales per step (nats)",
    "NLL_test": "held-out NLL per observation (nats)",
    "grad_norm": "global gradient norm",
    "CCpred": "CCpred, mean of per-image\nSpearman CC (Iobs, Ipred)",
}

#: Note on the CCpred panel: it is not the pooled value of careless_online.ccpred.
CCPRED_NOTE = ("mean of per-image CCs on up to --validation-images images;\n"
               "careless_online.ccpred pools all observations (higher)")


def _history_series(histories, panel):
    """(label, steps, values, style) of each non-empty curve of a history panel."""
    series = []
    for name, history in histories.items():
        metrics = [c for c in CC_COLUMNS if c in history] if panel == "CCpred" else [panel]
        for metric in metrics:
            if metric not in history:
                continue
            values = history[["step", metric]].dropna()
            values = values[np.isfinite(values[metric].to_numpy(dtype=float))]
            if values.empty:
                continue
            split = f" {metric.split('_')[-1]}" if panel == "CCpred" else ""
            label = f"{name}{split} (last {values[metric].iloc[-1]:.3g})"
            series.append((label, values["step"], values[metric], "--" if metric == "ccpred_test" else "-"))
    return series


def history_figure(histories, title=None):
    """Plot loss terms and CCpred of training histories against step.

    Only metrics with at least one finite value get a panel; loss terms are
    drawn on a log scale when all their values are positive.  Legend entries
    give each curve's last value.  The CCpred panel says that it shows the
    mean of per-image correlations (the training monitor), not the pooled
    correlation that ``careless_online.ccpred`` reports.

    Parameters
    ----------
    histories : dict of str to pandas.DataFrame
        Histories (with a ``step`` column) by run name.
    title : str, optional
        Figure title; by default "training history of" the run names.

    Returns
    -------
    matplotlib.figure.Figure
    """
    present = {m for h in histories.values() for m in history_metrics(h)}
    candidates = [m for m in LOSS_COLUMNS if m in present] + (["CCpred"] if present & set(CC_COLUMNS) else [])
    panels = [(panel, series) for panel in candidates if (series := _history_series(histories, panel))]
    ncols = min(3, max(1, len(panels)))
    nrows = max(1, -(-len(panels) // ncols))
    figure, axes = new_figure(nrows, ncols, size=(4.5, 3.4))
    for ax, (panel, series) in zip(axes.flat, panels):
        for label, steps, values, style in series:
            ax.plot(steps, values, style, label=label)
        if panel != "CCpred" and all((values > 0).all() for _, _, values, _ in series):
            ax.set_yscale("log")
        if panel == "CCpred":
            ax.text(0.02, 0.02, CCPRED_NOTE, transform=ax.transAxes, fontsize="x-small", va="bottom")
        ax.set_title(panel)
        ax.set_xlabel("training step")
        ax.set_ylabel(HISTORY_LABELS.get(panel, panel))
        ax.grid(alpha=0.3)
        ax.legend(fontsize="x-small")
    for ax in list(axes.flat)[len(panels):]:
        ax.set_visible(False)
    figure.suptitle(title or f"Training history of {', '.join(histories)}")
    return figure


def _peak_label(row):
    """Tick label of a peak table row: the atom, or the peak with its nearest atom."""
    nearest = row.get("nearest_atom")
    if isinstance(nearest, str) and nearest and np.isfinite(row.get("distance", np.nan)):
        return f"{row['atom']} ({nearest}, {row['distance']:.1f} Å)"
    return str(row["atom"])


def peaks_figure(table, title):
    """Bar chart of anomalous map peak heights.

    Selected atoms (e.g. Se) are orange, the highest other peaks grey; the
    legend gives the mean height at the selected atoms and the highest other
    peak, whose ratio tells whether the anomalous signal is real.

    Parameters
    ----------
    table : pandas.DataFrame
        Columns ``atom``, ``element`` and ``height_sigma``, e.g. from
        :func:`careless_online.stats.maps.anomalous_peak_table`.
    title : str
        Title naming the data (see :func:`data_name`).

    Returns
    -------
    matplotlib.figure.Figure
    """
    figure, axes = new_figure(size=(max(5.0, 0.5 * len(table) + 2.5), 4.0))
    ax = axes[0, 0]
    heights = table["height_sigma"].to_numpy(dtype=float)
    is_atom = ~table["element"].fillna("").eq("").to_numpy()
    x = np.arange(len(table))
    groups = ((is_atom, "tab:orange", "selected atoms", "mean"), (~is_atom, "tab:gray", "other peaks", "highest"))
    for mask, color, name, summary in groups:
        if mask.any():
            value = heights[mask].mean() if summary == "mean" else heights[mask].max()
            ax.bar(x[mask], heights[mask], color=color, label=f"{name} ({summary} {value:.1f} σ)")
    ax.set_xticks(x, [_peak_label(row) for _, row in table.iterrows()], rotation=60, ha="right")
    ax.set_xlabel("selected atom, or other peak (nearest atom, distance)")
    ax.set_ylabel("anomalous map height (σ)")
    ax.grid(axis="y", alpha=0.3)
    if len(table):
        ax.legend(fontsize="small")
    ax.set_title(title)
    return figure


def image_cc_figure(per_image, title):
    """Histogram of per-image CCpred for training and held-out images.

    Parameters
    ----------
    per_image : pandas.DataFrame
        Columns ``test`` and ``cc`` (see
        :func:`careless_online.stats.predictions.image_cc_table`).
    title : str
        Title naming the data (see :func:`data_name`).

    Returns
    -------
    matplotlib.figure.Figure
    """
    figure, axes = new_figure()
    ax = axes[0, 0]
    bins = np.linspace(-1.0, 1.0, 41)
    for value, name in ((0, "train"), (1, "test")):
        cc = per_image.loc[per_image["test"] == value, "cc"].dropna()
        if len(cc):
            ax.hist(cc, bins=bins, alpha=0.6, label=f"{name} ({len(cc)} images, median {cc.median():.3f})")
    ax.set_xlabel("per-image CCpred (correlation of Iobs and Ipred)")
    ax.set_ylabel("images (count)")
    ax.legend(fontsize="small")
    ax.set_title(title)
    return figure
