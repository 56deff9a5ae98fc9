"""The panels of the live report (matplotlib, Agg canvas, no pyplot state).

Each function returns a :class:`matplotlib.figure.Figure` with a title that
states the overall value, labelled axes with units, and a legend.
"""

import numpy as np

from careless_online.report.trend import CC_THRESHOLD
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

_SIZE = (6.0, 3.6)


def new_figure(nrows=1, ncols=1, size=_SIZE):
    """A figure with fixed margins (no constrained layout: it would cost most of the drawing time)."""
    figure = Figure(figsize=(size[0] * ncols, size[1]))
    FigureCanvasAgg(figure)
    axes = figure.subplots(nrows, ncols, squeeze=False)
    figure.subplots_adjust(left=0.13 if ncols == 1 else 0.08, right=0.97, bottom=0.24, top=0.88, wspace=0.35)
    return figure, axes


def _shell_axis(ax, shells):
    """Shell positions with their high-resolution limits as tick labels."""
    x = np.arange(len(shells))
    ax.set_xticks(x, [f"{s['d_min']:.2f}" for s in shells], rotation=45)
    ax.set_xlabel("resolution shell, high-resolution limit (Å)")
    ax.grid(alpha=0.3)
    return x


def _legend(ax, **options):
    """A legend, where something labelled was drawn."""
    if ax.get_legend_handles_labels()[0]:
        ax.legend(**options)


def _value(value, fmt="{:.3f}"):
    return fmt.format(value) if value is not None and np.isfinite(value) else "n/a"


def completeness_figure(shells, overall):
    """Completeness (%) and multiplicity by resolution shell."""
    figure, axes = new_figure(1, 2, size=(4.5, 3.6))
    left, right = axes[0]
    x = _shell_axis(left, shells)
    left.bar(x, [100.0 * s["completeness"] for s in shells], color="tab:blue", label="completeness")
    left.set_ylim(0, 105)
    left.set_ylabel("completeness (%)")
    left.legend(loc="lower left")
    x = _shell_axis(right, shells)
    right.plot(x, [s["multiplicity"] for s in shells], "o-", color="tab:green", label="multiplicity")
    right.set_ylabel("multiplicity (observations per reflection)")
    right.set_ylim(bottom=0)
    right.legend(loc="lower left")
    figure.suptitle(f"Completeness {100 * overall['completeness']:.1f} %, "
                    f"multiplicity {_value(overall['multiplicity'], '{:.1f}')} overall")
    return figure


def overall_trend_figure(trend, overall):
    """Overall completeness, multiplicity, CC1/2 and CCanom against images merged."""
    figure, axes = new_figure(1, 2, size=(4.5, 3.6))
    left, right = axes[0]
    images, completeness = trend.overall_series("completeness")
    left.plot(images, 100.0 * completeness, "o-", color="tab:blue", label="completeness (%)")
    left.set_ylim(0, 105)
    left.set_ylabel("completeness (%)")
    twin = left.twinx()
    twin.plot(*trend.overall_series("multiplicity"), "s--", color="tab:green", label="multiplicity")
    twin.set_ylim(bottom=0)
    twin.set_ylabel("multiplicity (obs. per reflection)")
    figure.subplots_adjust(wspace=0.45)  # room for the twin axis between the panels
    left.set_xlabel("images merged")
    left.grid(alpha=0.3)
    handles = left.get_legend_handles_labels()[0] + twin.get_legend_handles_labels()[0]
    left.legend(handles, [h.get_label() for h in handles], loc="lower right")
    for key, label, style in (("cchalf", "CC1/2", "o-"), ("ccanom", "CCanom", "s--")):
        right.plot(*trend.overall_series(key), style, label=f"{label} overall")
    right.axhline(0.0, color="black", linewidth=0.5)
    right.set_xlabel("images merged")
    right.set_ylabel("correlation (dimensionless)")
    right.grid(alpha=0.3)
    right.legend(loc="lower right")
    figure.suptitle(f"Against images merged: completeness {100 * overall['completeness']:.1f} %, multiplicity "
                    f"{_value(overall['multiplicity'], '{:.1f}')}, CC1/2 {_value(overall['cchalf'])}, "
                    f"CCanom {_value(overall['ccanom'])} now")
    return figure


def cc_figure(shells, overall, key, label, threshold=None):
    """A correlation (CC1/2 or CCanom) by resolution shell."""
    figure, axes = new_figure(size=_SIZE)
    ax = axes[0, 0]
    x = _shell_axis(ax, shells)
    ax.plot(x, [s[key] for s in shells], "o-", label=f"{label} (model-scaled halves)")
    if threshold is not None:
        ax.axhline(threshold, color="gray", linestyle=":", label=f"{label} = {threshold}")
    ax.axhline(0.0, color="black", linewidth=0.5)
    ax.set_ylim(min(-0.1, ax.get_ylim()[0]), 1.02)
    ax.set_ylabel(f"{label} (dimensionless)")
    ax.legend(loc="lower left")
    ax.set_title(f"{label} by shell: {_value(overall[key])} overall")
    return figure


def trend_figure(trend, shells, key, label):
    """A correlation of every shell against images merged (the stopping-hint panel)."""
    figure, axes = new_figure(size=_SIZE)
    ax = axes[0, 0]
    colors = [f"C{i % 10}" for i in range(len(shells))]
    for number, shell in enumerate(shells):
        images, values = trend.series(key, number)
        ax.plot(images, values, ".-", color=colors[number], label=f"{shell['d_max']:.2f}-{shell['d_min']:.2f} Å")
    if key == "cchalf":
        ax.axhline(CC_THRESHOLD, color="gray", linestyle=":")
    ax.set_xlabel("images merged")
    ax.set_ylabel(f"{label} (dimensionless)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize="x-small", ncol=2, title="shell")
    last = shells[-1][key] if shells else float("nan")
    ax.set_title(f"{label} per shell vs images merged (outer now {_value(last)})")
    return figure


def history_figure(history):
    """Loss and CCpred (train and test) against gradient step."""
    figure, axes = new_figure(1, 2, size=(4.5, 3.6))
    left, right = axes[0]
    for column, style in (("loss", "-"), ("NLL", "--")):
        if column in history:
            values = history[["step", column]].dropna()
            left.plot(values["step"], values[column], style, label=column)
    left.set_xlabel("gradient step")
    left.set_ylabel("loss per step (nats)")
    left.grid(alpha=0.3)
    _legend(left)
    for column, name in (("ccpred_train", "train"), ("ccpred_test", "test")):
        if column in history:
            values = history[["step", column]].dropna()
            right.plot(values["step"], values[column], "o-" if name == "train" else "s--", label=f"CCpred {name}")
    right.set_xlabel("gradient step")
    right.set_ylabel("CCpred (Spearman, per image)")
    right.grid(alpha=0.3)
    _legend(right)
    last = history.iloc[-1] if len(history) else {}
    figure.suptitle(f"Training: loss {_value(last.get('loss', np.nan), '{:.4g}')}, CCpred train "
                    f"{_value(last.get('ccpred_train', np.nan))} / test {_value(last.get('ccpred_test', np.nan))}")
    return figure


def peaks_figure(trend):
    """Anomalous map heights at the model's atoms against images merged."""
    figure, axes = new_figure(size=_SIZE)
    ax = axes[0, 0]
    series = trend.peak_series()
    for atom, (images, heights) in series.items():
        ax.plot(images, heights, ".-", label=atom)
    ax.set_xlabel("images merged")
    ax.set_ylabel("anomalous map height (σ)")
    ax.grid(alpha=0.3)
    _legend(ax, fontsize="x-small", ncol=2)
    mean = np.mean([h[-1] for _, h in series.values()]) if series else float("nan")
    ax.set_title(f"Anomalous peaks at {len(series)} model atoms: mean {_value(mean, '{:.1f}')} σ now")
    return figure
