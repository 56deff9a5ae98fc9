"""The panels of the live report of several datasets (matplotlib, Agg canvas).

Like :mod:`careless_online.report.figures`: each function returns a
:class:`matplotlib.figure.Figure` with a title stating the current values,
labelled axes with units and a legend.  Datasets are named by ``names``.
"""

import numpy as np

from careless_online.report.figures import _legend, _value, new_figure
from careless_online.report.trend import CC_THRESHOLD

#: Datasets named in a title before it says "...".
_TITLE_DATASETS = 4


def _listing(items):
    """``a, b, c, ...`` of the first few items."""
    items = list(items)
    more = ", ..." if len(items) > _TITLE_DATASETS else ""
    return ", ".join(items[:_TITLE_DATASETS]) + more


def _pair(names, follower):
    return f"{names[follower.dataset]} − {names[follower.reference]}"


def datasets_overview_figure(names, trends):
    """Overall completeness and CC1/2 of every dataset against its images merged.

    Parameters
    ----------
    names : list of str
    trends : list of careless_online.report.trend.Trend
        Each dataset's points (from its own report).
    """
    figure, axes = new_figure(1, 2, size=(4.5, 3.6))
    left, right = axes[0]
    latest = []
    for number, (name, trend) in enumerate(zip(names, trends)):
        color = f"C{number % 10}"
        images, completeness = trend.overall_series("completeness")
        left.plot(images, 100.0 * completeness, "o-", color=color, label=name)
        images, cchalf = trend.overall_series("cchalf")
        right.plot(images, cchalf, "o-", color=color, label=name)
        latest.append(f"{name} {_value(cchalf[-1] if len(cchalf) else np.nan)}")
    left.set_ylim(0, 105)
    left.set_ylabel("completeness (%)")
    right.axhline(CC_THRESHOLD, color="gray", linestyle=":", label=f"CC1/2 = {CC_THRESHOLD}")
    right.set_ylim(min(-0.1, right.get_ylim()[0]), 1.02)
    right.set_ylabel("CC1/2 overall (dimensionless)")
    for ax in (left, right):
        ax.set_xlabel("images merged of the dataset")
        ax.grid(alpha=0.3)
        _legend(ax, loc="lower right", fontsize="small")
    figure.suptitle(f"Datasets: overall CC1/2 now {_listing(latest)}")
    return figure


def difference_heights_figure(names, followers):
    """Difference-map heights at the followed model atoms against images merged of the state.

    One panel per state: a line per followed atom (the largest ``|height|``
    at the latest map), and the largest positive and negative peak heights
    of each map.

    Parameters
    ----------
    names : list of str
    followers : list of careless_online.report.difference.DifferenceFollower
        With a model.
    """
    figure, axes = new_figure(1, max(len(followers), 1), size=(9.0 if len(followers) < 2 else 6.0, 4.0))
    figure.subplots_adjust(top=0.80, bottom=0.16)  # room for the panel titles under the figure's
    strongest = []
    for ax, follower in zip(axes[0], followers):
        images, series = follower.height_series()
        for number, (atom, heights) in enumerate(series.items()):
            ax.plot(images, heights, ".-", color=f"C{number % 10}", label=atom)
        images, highest, deepest = follower.extreme_series()
        ax.plot(images, highest, "^--", color="black", alpha=0.6, label="highest peak")
        ax.plot(images, deepest, "v--", color="gray", alpha=0.6, label="deepest peak")
        ax.axhline(0.0, color="black", linewidth=0.5)
        ax.set_xlabel(f"images merged of {names[follower.dataset]}")
        ax.set_ylabel("difference map height (σ)")
        ax.grid(alpha=0.3)
        _legend(ax, fontsize="x-small", ncol=2)
        atoms = follower.record["atoms"]
        top = f"{atoms[0]['atom']} {atoms[0]['height_sigma']:+.1f} σ" if atoms else "no map yet"
        ax.set_title(f"{_pair(names, follower)}: strongest {top} now", fontsize="medium")
        deepest_now = deepest[-1] if len(deepest) else np.nan
        strongest.append(f"{_pair(names, follower)} {_value(deepest_now, '{:+.1f}')} σ")
    figure.suptitle(f"Difference map heights over time; deepest peak now: {_listing(strongest)}")
    return figure


def difference_signal_figure(names, followers):
    """rms ΔF and rms σ(ΔF) of every state against its images merged.

    Parameters
    ----------
    names : list of str
    followers : list of careless_online.report.difference.DifferenceFollower
    """
    figure, axes = new_figure(size=(6.0, 3.6))
    ax = axes[0, 0]
    ratios = []
    for number, follower in enumerate(followers):
        images, rms_df, rms_sigdf = follower.rms_series()
        color = f"C{number % 10}"
        ax.plot(images, rms_df, "o-", color=color, label=f"rms ΔF {_pair(names, follower)}")
        ax.plot(images, rms_sigdf, "s:", color=color, label=f"rms σ(ΔF) {_pair(names, follower)}")
        ratio = rms_df[-1] / rms_sigdf[-1] if len(images) else np.nan
        ratios.append(f"{_pair(names, follower)} {_value(ratio, '{:.2f}')}")
    ax.set_xlabel("images merged of the state")
    ax.set_ylabel("rms difference (F units of the reference)")
    ax.set_ylim(bottom=0)
    ax.grid(alpha=0.3)
    _legend(ax, fontsize="x-small")
    ax.set_title(f"Difference signal, rms ΔF / rms σ(ΔF) now: {_listing(ratios)}", fontsize="medium")
    return figure
