"""The live report of a merge of several datasets (time-resolved: dark, light, ...).

Folder layout under ``<folder>`` (``<out>_live``), every file replaced atomically:

``dataset_<i>/``
    Dataset ``i``'s own report, exactly as a one-dataset merge writes it
    (:class:`~careless_online.report.live.LiveReport`: ``status.json``, the
    panels and ``index.html``), made from that dataset's images,
    observations and posterior.  Its progress counts that dataset's images
    (``images``, ``images_waiting``, ``images_per_second``); steps, elapsed
    time and lag are the merge's.  Its ``report_fraction`` counts its own
    drawing only.
``status.json``
    The keys of the one-dataset status but ``trend`` (which is in
    ``dataset_<i>/status.json``): the progress of all datasets together
    (``images``, ``images_waiting``, ``images_converted``,
    ``images_per_second``, ``lag_seconds``, ``steps``, ``elapsed_seconds``,
    ``round_seconds``, ``backlog``), ``report_seconds`` and
    ``report_fraction`` of the whole report (the datasets' reports
    included), ``figures`` (the top panels), and — those of dataset 0, so
    that a reader of a one-dataset status finds what it expects —
    ``shells``, ``overall``, ``stopping_hint``, ``cc_images`` and ``peaks``
    (anomalous); plus

    ``datasets``
        One entry per dataset: ``number``, ``name``, ``reference`` (the
        dataset its differences are taken against, or None), ``images``,
        ``images_converted``, ``overall``, ``d_cchalf_0.3``,
        ``stopping_hint`` (the text) and ``page`` (``dataset_<i>/index.html``).
    ``differences``
        One entry per dataset with a reference, as of the latest drawing
        (:meth:`careless_online.report.difference.DifferenceFollower.update`):
        ``dataset``, ``reference``, ``images``, ``n_reflections``,
        ``rms_df``, ``rms_sigdf``, ``scale`` and, with a model, the top
        ``peaks`` of each sign and the followed ``atoms`` with their heights.
``*.png`` and ``index.html``
    Training (loss, CCpred), the datasets' overall completeness and CC1/2
    against images merged, the difference signal (rms ΔF, rms σ(ΔF)) and,
    with a model, the difference-map heights at the followed atoms over
    time; the page links every dataset's page.

Cost is bounded as in :class:`~careless_online.report.live.LiveReport`, for
the whole report together: the half-dataset merges, the maps, the figures
and the pages of every dataset are redrawn only when the time since the last
drawing is at least ``1 / max_fraction`` times what that drawing took
(always at the end); completeness and multiplicity are updated every round.
"""

import os
import time
from dataclasses import asdict, dataclass, replace

import numpy as np

from careless_online.errors import InputError
from careless_online.report import datasets_figures, figures
from careless_online.report.datasets_page import render_datasets
from careless_online.report.difference import DifferenceFollower, ModelPhases, model_atoms
from careless_online.report.budget import BudgetedReport
from careless_online.report.files import figure_png, replace_bytes
from careless_online.report.live import LiveReport, RoundProgress, _history
from careless_online.stats.maps import DEFAULT_ELEMENTS

#: Keys of dataset 0's status repeated at the top.
_ROOT_KEYS = ("shells", "overall", "stopping_hint", "cc_images", "peaks")


@dataclass
class DatasetRound:
    """One dataset's state after a training round.

    Attributes
    ----------
    name : str
        E.g. ``dark.stream`` or ``laser=1``.
    images : int
        Images of this dataset merged (trained on) so far.
    images_converted : int
        Images of this dataset converted so far (>= ``images``).
    f_mean, f_std : numpy.ndarray, shape (n_reflections,)
        Posterior mean and standard deviation of F of this dataset, per
        index entry.
    counts : numpy.ndarray, shape (n_reflections,)
        Observations of this dataset merged per index entry.
    merged : reciprocalspaceship.DataSet
        This dataset's merged table just written
        (:func:`careless_online.io.writers.merged_table`).
    observations : callable, optional
        Returns an iterable of batches (``refl_id``, ``image_id``, ``I``,
        ``SigI``, ``Ipred``) of this dataset's observations (see
        :meth:`careless_online.report.live.LiveReport.update`).
    """

    name: str
    images: int
    images_converted: int
    f_mean: np.ndarray
    f_std: np.ndarray
    counts: np.ndarray
    merged: object
    observations: object = None


def _check_references(names, references):
    """The references as a list of int or None (InputError for a bad one)."""
    if len(names) < 2:
        raise ValueError(f"a report of several datasets needs at least 2, got {len(names)}")
    references = list(references)
    if len(references) != len(names):
        raise InputError(f"{len(references)} reference datasets (parents) given for {len(names)} datasets")
    checked = []
    for number, reference in enumerate(references):
        if reference is not None and (int(reference) != reference or not 0 <= reference < len(names)
                                      or reference == number):
            raise InputError(f"dataset {number} ({names[number]}) cannot take its differences against "
                             f"{reference!r}: give None or the number of another of the {len(names)} datasets")
        checked.append(None if reference is None else int(reference))
    return checked


class DatasetsReport(BudgetedReport):
    """Writes the live report of a merge of several datasets (see the module docstring).

    Parameters
    ----------
    folder : str
        Report folder (``<out>_live``); created.
    index : careless_online.io.reflections.ReflectionIndex
        The reflections of the merge (common to all datasets).
    names : list of str
        Dataset names (at least 2).
    references : list of int or None
        For each dataset the number of the dataset its differences are taken
        against (None for a root), e.g. ``[None, 0, 0]``.
    n_shells : int
    structure : gemmi.Structure, optional
        Model of the reference state in the crystal's cell and origin: the
        difference maps are phased with it and their heights at its atoms
        followed.  With an anomalous merge each dataset's report also
        follows the anomalous peaks at its ``elements`` atoms.
    elements : str
        Atoms of ``structure`` whose anomalous peaks are followed.
    max_fraction : float
        Largest share of the run spent drawing, all datasets together
        (0 < max_fraction <= 1).
    refresh_seconds : int
        The pages' reload period.
    clock : callable
        Time source for the report's own timing.
    """

    def __init__(self, folder, index, names, references, n_shells=10, structure=None, elements=DEFAULT_ELEMENTS,
                 max_fraction=0.1, refresh_seconds=10, clock=time.perf_counter):
        super().__init__(folder, structure, max_fraction, refresh_seconds, clock)
        self.names = [str(name) for name in names]
        self.references = _check_references(self.names, references)
        anomalous_model = structure if index.anomalous else None
        self.reports = [LiveReport(os.path.join(folder, f"dataset_{number}"), index, n_shells, anomalous_model,
                                   elements, max_fraction, refresh_seconds, clock)
                        for number in range(len(self.names))]
        if structure is not None:
            model_atoms(structure)  # InputError now for a model without atoms
        phases = ModelPhases(structure, index) if structure is not None else None
        self.followers = [DifferenceFollower(number, reference, structure, phases)
                          for number, reference in enumerate(self.references) if reference is not None]
        self._open_folder()

    def _entries(self, statuses):
        """The ``datasets`` entries of the top status from each dataset's status."""
        return [{"number": number, "name": name, "reference": reference, "images": status["images"],
                 "images_converted": status["images_converted"], "overall": status["overall"],
                 "d_cchalf_0.3": status["stopping_hint"].get("d_cchalf_0.3"),
                 "stopping_hint": status["stopping_hint"]["text"], "page": f"dataset_{number}/index.html"}
                for number, (name, reference, status) in enumerate(zip(self.names, self.references, statuses))]

    def _top(self, progress, statuses):
        """The top status: ``progress`` (a dict), dataset 0's statistics, the datasets and differences."""
        status = dict(progress)
        status.update({key: statuses[0][key] for key in _ROOT_KEYS})
        status.update(images_converted=sum(s["images_converted"] for s in statuses),
                      datasets=self._entries(statuses), differences=[f.record for f in self.followers])
        return status

    def first_look(self, images_converted, elapsed_seconds, counts, backlog=None):
        """Write every ``status.json`` as soon as the first data are converted, before any training.

        Parameters
        ----------
        images_converted : list of int
            Per dataset.
        elapsed_seconds : float
        counts : list of array of int, shape (n_reflections,)
            Observations of each index entry converted so far, per dataset.
        backlog : dict, optional
            Files and stream chunks complete but not converted yet (all
            datasets together: in the top status only).
        """
        statuses = [report.first_look(converted, elapsed_seconds, count)
                    for report, converted, count in zip(self.reports, images_converted, counts)]
        total = int(sum(images_converted))
        progress = RoundProgress(images=0, images_waiting=total, images_per_second=0.0,
                                 lag_seconds=float(elapsed_seconds), steps=0, elapsed_seconds=float(elapsed_seconds),
                                 round_seconds=0.0, backlog=dict(backlog or {}))
        status = self._top(asdict(progress), statuses)
        status.update(report_seconds=0.0, report_fraction=0.0)
        self._write(status)

    def _dataset_progress(self, progress, state):
        """The progress of one dataset: its images, the merge's steps and times."""
        return replace(progress, images=int(state.images), images_waiting=int(state.images_converted - state.images),
                       images_per_second=state.images / max(progress.elapsed_seconds, 1e-9), backlog={})

    def update(self, progress, rounds, history_path=None, final=False):
        """Refresh the report after a round.

        Parameters
        ----------
        progress : RoundProgress
            Of all datasets together.
        rounds : list of DatasetRound
            One per dataset, in dataset order.
        history_path : str, optional
            The training history CSV.
        final : bool
            Draw regardless of the cost bound.

        Returns
        -------
        dict
            The status written to the top ``status.json``.
        """
        if len(rounds) != len(self.names):
            raise ValueError(f"{len(rounds)} dataset rounds for {len(self.names)} datasets")
        started = self.clock()
        drawing = self.budget.due(started, final)
        statuses = [report.update(self._dataset_progress(progress, state), state.f_mean, state.f_std, state.counts,
                                  state.merged, history_path, observations=state.observations, final=final,
                                  draw=drawing)
                    for report, state in zip(self.reports, rounds)]
        if drawing:
            for follower in self.followers:
                state = rounds[follower.dataset]
                follower.update(state.images, state.merged, rounds[follower.reference].merged)
        status = self._top(asdict(progress), statuses)
        if drawing:
            self._draw_panels(history_path, status)
        self._close_round(status, progress.elapsed_seconds, started, drawing)
        self._last = (progress, rounds, history_path, drawing)
        return status

    def arrived(self, images_converted, elapsed_seconds, backlog=None):
        """Rewrite the ``status.json`` files when new images have been converted, before they are merged.

        Only the progress keys change (see
        :meth:`careless_online.report.live.LiveReport.arrived`); nothing is
        written before :meth:`first_look` or the first round.

        Parameters
        ----------
        images_converted : list of int
            Per dataset.
        elapsed_seconds : float
        backlog : dict, optional
            All datasets together (top status only).
        """
        if self._status is None:
            return
        for report, entry, converted in zip(self.reports, self._status["datasets"], images_converted):
            report.arrived(converted, elapsed_seconds)
            entry["images_converted"] = int(converted)
        total = int(sum(images_converted))
        self._status.update(images_converted=total, images_waiting=total - self._status["images"],
                            elapsed_seconds=float(elapsed_seconds))
        if backlog is not None:
            self._status["backlog"] = dict(backlog)
        self._write(self._status)

    def mark_phase(self, phase):
        """Rewrite the ``status.json`` files with the merge's ``phase`` (see :class:`RoundProgress`)."""
        if self._status is None:
            return
        for report in self.reports:
            report.mark_phase(phase)
        self._status["phase"] = str(phase)
        self._write(self._status)

    def _figures(self, history):
        """(file name, caption, PNG bytes, full width) of the top panels."""
        panels = [("datasets.png", "Overall completeness and CC1/2 of each dataset against its images merged",
                   datasets_figures.datasets_overview_figure(self.names, [r.trend for r in self.reports]))]
        if self.structure is not None and self.followers:
            panels.append(("difference_peaks.png", "Difference peak heights over time at the model atoms with "
                           "the strongest peaks now", datasets_figures.difference_heights_figure(self.names,
                                                                                               self.followers)))
        panels.append(("training.png", "Loss and CCpred (all datasets)", figures.history_figure(history)))
        if self.followers:
            panels.append(("difference_signal.png", "Difference signal: rms ΔF and its noise rms σ(ΔF)",
                           datasets_figures.difference_signal_figure(self.names, self.followers)))
        return [(name, caption, figure_png(figure), name != "difference_signal.png")
                for name, caption, figure in panels]

    def _draw_panels(self, history_path, status):
        """Write the top panels (adds ``figures`` to ``status``) and keep them for the page."""
        panels = self._figures(_history(history_path))
        for name, _, png, _ in panels:
            replace_bytes(os.path.join(self.folder, name), png)
        status["figures"] = [name for name, _, _, _ in panels]
        self._panels = [(caption, png, wide) for _, caption, png, wide in panels]
        self.drawings += 1

    def _write_page(self, status):
        """Write the top ``index.html`` of ``status`` with the latest panels."""
        text = render_datasets(status, self._panels, self.refresh_seconds)
        replace_bytes(os.path.join(self.folder, "index.html"), text.encode())

    def finish(self):
        """Mark every page finished (call once the merge ends); returns the final top status.

        The last state is drawn if the cost bound skipped it; then each
        dataset's report and the top ``status.json`` get ``finished: true``
        and the pages stop reloading.
        """
        if self._last is None:
            return self._status
        progress, rounds, history_path, _ = self._last
        self._redraw_last(lambda: self.update(progress, rounds, history_path, final=True))
        for report in self.reports:
            report.finish()
        self._status["finished"] = True
        self._write(self._status)
        self._write_page(self._status)
        return self._status
