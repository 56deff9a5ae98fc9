"""Figures of the statistics tables (matplotlib, Agg canvas, no pyplot state)."""

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

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


def save_figure(figure, path, dpi=150):
    """Write a figure to an image file (format from the file name).

    Parameters
    ----------
    figure : matplotlib.figure.Figure
    path : str or os.PathLike
    dpi : int, optional
    """
    figure.savefig(path, dpi=dpi)


def shell_figure(table, columns, ylabel, title=None):
    """Plot statistics of a shell table against resolution.

    Parameters
    ----------
    table : pandas.DataFrame
        A shell table (see :mod:`careless_online.stats.binning`).
    columns : sequence of str
        Columns to plot, one line each.
    ylabel : str
    title : str, optional

    Returns
    -------
    matplotlib.figure.Figure
    """
    shells = table.drop(index=OVERALL, errors="ignore")
    figure, axes = new_figure()
    ax = axes[0, 0]
    x = np.arange(len(shells))
    for column in columns:
        ax.plot(x, shells[column].to_numpy(dtype=float), marker="o", label=column)
    ax.set_xticks(x, [f"{d:.2f}" for d in shells["d_min"]], rotation=45)
    ax.set_xlabel("resolution shell, high-resolution limit (Å)")
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    if len(columns) > 1:
        ax.legend()
    if title:
        ax.set_title(title)
    return figure


def history_figure(histories):
    """Plot loss terms and CCpred of training histories against step.

    Loss terms are drawn on a log scale when all their values are positive.

    Parameters
    ----------
    histories : dict of str to pandas.DataFrame
        Histories (with a ``step`` column) by run name.

    Returns
    -------
    matplotlib.figure.Figure
    """
    present = {m for h in histories.values() for m in history_metrics(h)}
    panels = [m for m in LOSS_COLUMNS if m in present]
    if present & set(CC_COLUMNS):
        panels.append("CCpred")
    ncols = min(3, max(1, len(panels)))
    nrows = max(1, -(-len(panels) // ncols))
    figure, axes = new_figure(nrows, ncols, size=(4.5, 3.2))
    for ax, panel in zip(axes.flat, panels):
        for name, history in histories.items():
            metrics = [c for c in CC_COLUMNS if c in history] if panel == "CCpred" else [panel]
            for metric in metrics:
                values = history[["step", metric]].dropna() if metric in history else None
                if values is None or values.empty:
                    continue
                label = name if panel != "CCpred" else f"{name} {metric.split('_')[-1]}"
                style = "--" if metric == "ccpred_test" else "-"
                ax.plot(values["step"], values[metric], style, label=label)
                if panel != "CCpred" and (values[metric] > 0).all():
                    ax.set_yscale("log")
        ax.set_title(panel)
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
        if ax.has_data() and (len(histories) > 1 or panel == "CCpred"):
            ax.legend(fontsize="small")
    for ax in list(axes.flat)[len(panels):]:
        ax.set_visible(False)
    return figure


def peaks_figure(table):
    """Bar chart of anomalous map peak heights.

    Parameters
    ----------
    table : pandas.DataFrame
        Columns ``atom`` and ``height_sigma``, e.g. from
        :func:`careless_online.stats.maps.anomalous_peak_table`.

    Returns
    -------
    matplotlib.figure.Figure
    """
    figure, axes = new_figure(size=(max(4.0, 0.5 * len(table) + 2.0), 4.0))
    ax = axes[0, 0]
    is_peak = table["element"].fillna("").eq("").to_numpy()
    colors = np.where(is_peak, "tab:gray", "tab:orange")
    ax.bar(np.arange(len(table)), table["height_sigma"].to_numpy(dtype=float), color=colors)
    ax.set_xticks(np.arange(len(table)), table["atom"], rotation=60, ha="right")
    ax.set_ylabel("anomalous map height (σ)")
    ax.grid(axis="y", alpha=0.3)
    return figure


def image_cc_figure(per_image):
    """Histogram of per-image CCpred for training and held-out images.

    Parameters
    ----------
    per_image : pandas.DataFrame
        Columns ``test`` and ``cc`` (see
        :func:`careless_online.stats.predictions.image_cc_table`).

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
            ax.hist(cc, bins=bins, alpha=0.6, label=f"{name} ({len(cc)} images)")
    ax.set_xlabel("per-image CCpred")
    ax.set_ylabel("images")
    ax.legend()
    return figure
