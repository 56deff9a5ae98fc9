"""The live report under ``<out>_live/``, refreshed after every training round.

Files (each replaced atomically):

``status.json``
    Progress (``images``, ``images_waiting``, ``images_converted``,
    ``images_per_second``, ``lag_seconds``, ``steps``, ``elapsed_seconds``), ``shells`` and
    ``overall`` (see :mod:`careless_online.report.shells`), the
    ``stopping_hint``, the latest ``peaks`` and the report's own cost
    (``report_seconds`` of the latest update, ``report_fraction``: the
    report's time over the run's, the same figure the page shows);
    rewritten every round, and between rounds whenever new images have
    been converted (:meth:`LiveReport.arrived`); ``finished: true`` once
    the merge has ended (:meth:`LiveReport.finish`).
``*.png`` and ``index.html``
    The panels and the page that shows them; the page reloads itself every
    ``refresh_seconds`` until the merge has ended, then says "Finished".

Cost is bounded: completeness and multiplicity cost time proportional to the
unique reflections and are computed every round; the half-dataset merges
behind CC1/2 and CCanom (a pass of the model over the observations, see
:mod:`careless_online.report.halves`), the figures, the anomalous map and the
page are redone only when the time since they were last drawn is at least
``1 / max_fraction`` times what drawing them took, so drawing takes at most
about ``max_fraction`` of the run (and always at the end).
"""

import os
import time
from dataclasses import asdict, dataclass, field

import pandas as pd

from careless_online.errors import InputError
from careless_online.report import figures, page
from careless_online.report.halves import merge_halves
from careless_online.report.budget import BudgetedReport
from careless_online.report.files import figure_png, replace_bytes
from careless_online.report.shells import ShellLayout, shell_statistics
from careless_online.report.trend import Trend, stopping_hint
from careless_online.stats.maps import DEFAULT_ELEMENTS, anomalous_map, atom_peaks, select_atoms


@dataclass
class RoundProgress:
    """Where a live merge stands after a training round.

    Attributes
    ----------
    images : int
        Images the model has been trained on (merged).
    images_waiting : int
        Images converted but not yet trained on.
    images_per_second : float
        Images added to the merge per second of the run.
    lag_seconds : float
        Seconds from the arrival of the newest merged images to this report.
    steps : int
        Gradient steps taken.
    elapsed_seconds : float
        Seconds since the live merge started.
    round_seconds : float
        Seconds the round (training and output) took.
    backlog : dict
        ``files`` and ``stream_chunks`` found complete but not converted yet
        (a look converts a share of a large backlog, see
        :class:`~careless_online.io.live.LiveCache`).
    phase : str
        ``following`` (training on the data as they arrive), ``finishing``
        (the closing learning-rate decay) or ``finished``.
    """

    images: int
    images_waiting: int
    images_per_second: float
    lag_seconds: float
    steps: int
    elapsed_seconds: float
    round_seconds: float
    backlog: dict = field(default_factory=dict)
    phase: str = "following"


def _history(path):
    if path and os.path.exists(path):
        return pd.read_csv(path)
    return pd.DataFrame()


class LiveReport(BudgetedReport):
    """Writes the live report of a merge.

    Parameters
    ----------
    folder : str
        Report folder (``<out>_live``); created.
    index : careless_online.io.reflections.ReflectionIndex
        The reflections of the merge (fixes the shells).
    n_shells : int
    structure : gemmi.Structure, optional
        A model in the crystal's cell and origin: the anomalous map heights at
        its ``elements`` atoms are followed (needs an anomalous merge).
    elements : str
        Atoms of ``structure`` to follow (see
        :func:`careless_online.stats.maps.parse_elements`).
    max_fraction : float
        Largest share of the run spent drawing (0 < max_fraction <= 1; 1:
        draw after every round, whatever it costs).
    refresh_seconds : int
        The page's reload period.
    clock : callable
        Time source for the report's own timing.
    """

    def __init__(self, folder, index, n_shells=10, structure=None, elements=DEFAULT_ELEMENTS, max_fraction=0.1,
                 refresh_seconds=10, clock=time.perf_counter):
        super().__init__(folder, structure, max_fraction, refresh_seconds, clock)
        self.atoms = []
        if structure is not None:
            if not index.anomalous:
                raise InputError("--model-pdb follows anomalous peaks: it needs --anomalous")
            self.atoms = select_atoms(structure, elements)
            if not self.atoms:
                raise InputError(f"the model has no atoms of {elements}")
        self.layout = ShellLayout.from_index(index, n_shells)
        self.trend = Trend()
        self.peaks = {}
        self.halves, self.halves_images = None, 0
        self._open_folder()

    def _peaks(self, merged):
        """Map height (σ) at each followed atom; empty without a model or a map."""
        if self.structure is None:
            return {}
        try:
            grid = anomalous_map(merged, self.structure)
        except ValueError:  # no acentric reflection has both mates yet
            return {}
        table = atom_peaks(grid, self.atoms)
        return dict(zip(table["atom"], table["height_sigma"].astype(float)))

    def _figures(self, status, history):
        shells, overall = status["shells"], status["overall"]
        panels = [("overall.png", "Overall completeness, multiplicity, CC1/2 and CCanom against images merged",
                   figures.overall_trend_figure(self.trend, overall)),
                  ("completeness.png", "Completeness and multiplicity by shell",
                   figures.completeness_figure(shells, overall)),
                  ("cchalf.png", "CC1/2 by shell", figures.cc_figure(shells, overall, "cchalf", "CC1/2", 0.3)),
                  ("cchalf_trend.png", "CC1/2 per shell against images merged (stopping hint)",
                   figures.trend_figure(self.trend, shells, "cchalf", "CC1/2")),
                  ("ccanom.png", "CCanom by shell", figures.cc_figure(shells, overall, "ccanom", "CCanom")),
                  ("ccanom_trend.png", "CCanom per shell against images merged",
                   figures.trend_figure(self.trend, shells, "ccanom", "CCanom")),
                  ("training.png", "Loss and CCpred", figures.history_figure(history))]
        if self.structure is not None:
            panels.append(("peaks.png", "Anomalous peak heights at the model's atoms",
                           figures.peaks_figure(self.trend)))
        return [(name, caption, figure_png(figure)) for name, caption, figure in panels]

    def update(self, progress, f_mean, f_std, counts, merged, history_path=None, observations=None, final=False,
               draw=None):
        """Refresh the report after a round.

        Parameters
        ----------
        progress : RoundProgress
        f_mean, f_std : array of float, shape (n_reflections,)
            Posterior mean and standard deviation of every index entry.
        counts : array of int, shape (n_reflections,)
            Observations merged of every index entry.
        merged : reciprocalspaceship.DataSet
            The merged table just written (for the anomalous map).
        history_path : str, optional
            The training history CSV.
        observations : callable, optional
            Returns an iterable of batches (``refl_id``, ``image_id``, ``I``,
            ``SigI``, ``Ipred``) of every observation merged: the half-dataset
            merges behind CC1/2 and CCanom are made from them when the report
            redraws (the last ones are kept in between).
        final : bool
            Draw regardless of the cost bound.
        draw : bool, optional
            Whether to draw this round, decided by a caller that bounds the
            cost of several reports together (``final`` still forces it);
            by default the report's own cost bound decides.

        Returns
        -------
        dict
            The status written to ``status.json``.
        """
        started = self.clock()
        drawing = final or (self.budget.due(started, final) if draw is None else bool(draw))
        if drawing and observations is not None:
            self.halves, self.halves_images = merge_halves(observations(), f_mean, f_std), progress.images
        shells, overall = shell_statistics(self.layout, counts, self.halves)
        if drawing:
            self.peaks = self._peaks(merged)
            self.trend.add(progress.images, shells, self.peaks, overall)
        status = asdict(progress)
        status.update(images_converted=progress.images + progress.images_waiting, shells=shells, overall=overall,
                      stopping_hint=stopping_hint(self.trend, shells), peaks=self.peaks, cc_images=self.halves_images,
                      trend=self.trend.points)
        if drawing:
            self._draw_panels(status, history_path)
        self._close_round(status, progress.elapsed_seconds, started, drawing)
        self._last = (progress, f_mean, f_std, counts, merged, history_path, observations, drawing)
        return status

    def first_look(self, images_converted, elapsed_seconds, counts, backlog=None):
        """Write ``status.json`` as soon as the first data are converted, before any training.

        ``images`` and ``steps`` are 0, every converted image is waiting, the
        shells hold the completeness and multiplicity of the converted
        observations (CC1/2 and CCanom come with the first round).

        Parameters
        ----------
        images_converted : int
        elapsed_seconds : float
        counts : array of int, shape (n_reflections,)
            Observations of each index entry converted so far.
        backlog : dict, optional
            Files and stream chunks complete but not converted yet.

        Returns
        -------
        dict
            The status written.
        """
        shells, overall = shell_statistics(self.layout, counts)
        status = asdict(RoundProgress(images=0, images_waiting=int(images_converted), images_per_second=0.0,
                                      lag_seconds=float(elapsed_seconds), steps=0,
                                      elapsed_seconds=float(elapsed_seconds), round_seconds=0.0,
                                      backlog=dict(backlog or {})))
        status.update(images_converted=int(images_converted), shells=shells, overall=overall,
                      stopping_hint={"text": "No round of training yet: CC1/2, CCanom and the hint follow it."},
                      peaks={}, cc_images=0, trend=[], report_seconds=0.0, report_fraction=0.0)
        self._write(status)
        return status

    def arrived(self, images_converted, elapsed_seconds, backlog=None):
        """Rewrite ``status.json`` when new images have been converted, before they are merged.

        Only the progress keys change (``images_converted``, ``images_waiting``
        = converted - merged, ``elapsed_seconds``, ``backlog``); the statistics stay those
        of the last round (or of :meth:`first_look`).  Costs one small file
        write.  Nothing is written before :meth:`first_look` or the first round.

        Parameters
        ----------
        images_converted : int
        elapsed_seconds : float
        backlog : dict, optional
            Files and stream chunks complete but not converted yet.
        """
        if self._status is None:
            return
        self._status.update(images_converted=int(images_converted),
                            images_waiting=int(images_converted) - self._status["images"],
                            elapsed_seconds=float(elapsed_seconds))
        if backlog is not None:
            self._status["backlog"] = dict(backlog)
        self._write(self._status)

    def mark_phase(self, phase):
        """Rewrite ``status.json`` with the merge's ``phase`` (see :class:`RoundProgress`); nothing before a status."""
        if self._status is None:
            return
        self._status["phase"] = str(phase)
        self._write(self._status)

    def _draw_panels(self, status, history_path):
        """Write the panels of ``status`` (adds ``figures`` to it) and keep them for the page."""
        panels = self._figures(status, _history(history_path))
        for name, _, png in panels:
            replace_bytes(os.path.join(self.folder, name), png)
        status["figures"] = [name for name, _, _ in panels]
        wide = ("overall.png", "completeness.png", "training.png")
        self._panels = [(caption, png, name in wide) for name, caption, png in panels]
        self.drawings += 1

    def _write_page(self, status):
        """Write ``index.html`` of ``status`` with the latest panels."""
        text = page.render(status, self._panels, self.refresh_seconds)
        replace_bytes(os.path.join(self.folder, "index.html"), text.encode())

    def finish(self):
        """Mark the report finished (call once the merge ends); returns the final status.

        The last state is drawn if the cost bound skipped it; then
        ``status.json`` gets ``finished: true`` and the page says that the
        merge has ended and stops reloading.
        """
        if self._last is None:
            return self._status
        *arguments, observations, _ = self._last
        self._redraw_last(lambda: self.update(*arguments, observations=observations, final=True))
        self._status["finished"] = True
        self._write(self._status)
        self._write_page(self._status)
        return self._status
