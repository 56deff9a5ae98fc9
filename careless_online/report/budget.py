"""The live report's cost bound: when it may draw, and what it has cost.

Drawing (half-dataset merges, maps, figures, pages) is redone only when the
time since the last drawing is at least ``1 / max_fraction`` times what that
drawing took, so that drawing takes at most about ``max_fraction`` of the run;
the first drawing, a final one and ``max_fraction = 1`` are always due.
"""

import os
import time

from careless_online.report.files import replace_json


class DrawingBudget:
    """Decides when a report draws and adds up its cost.

    Parameters
    ----------
    max_fraction : float
        Largest share of the run spent drawing (0 < max_fraction <= 1).
    clock : callable
        Time source.

    Attributes
    ----------
    total_seconds : float
        Time the report has taken in all.
    last_seconds : float
        Time of the latest update.
    """

    def __init__(self, max_fraction=0.1, clock=time.perf_counter):
        if not 0 < float(max_fraction) <= 1:
            raise ValueError(f"max_fraction must be in (0, 1], got {max_fraction}")
        self.max_fraction = float(max_fraction)
        self.clock = clock
        self.total_seconds = 0.0
        self.last_seconds = 0.0
        self._draw_seconds = None
        self._drawn_at = None

    def due(self, now, final=False):
        """Whether an update starting at ``now`` should draw."""
        if final or self._drawn_at is None or self.max_fraction >= 1:
            return True
        return (now - self._drawn_at) * self.max_fraction >= self._draw_seconds

    def spent(self, started, drawn):
        """Record an update that began at ``started`` (and whether it drew)."""
        self.last_seconds = self.clock() - started
        self.total_seconds += self.last_seconds
        if drawn:
            self._draw_seconds, self._drawn_at = self.last_seconds, self.clock()

    def share(self, elapsed_seconds, started=None):
        """The report's share of the run, both times counted up to now.

        Parameters
        ----------
        elapsed_seconds : float
            The run's time when the current update began (the report's
            earlier updates included).
        started : float, optional
            When the current update began (its time so far counts on both
            sides); None: no update in progress.

        Returns
        -------
        float
        """
        running = 0.0 if started is None else self.clock() - started
        return (self.total_seconds + running) / max(elapsed_seconds + running, 1e-9)


class BudgetedReport:
    """What both live reports share: their folder, page refresh, clock and drawing budget.

    A subclass writes its status with ``_write(status)`` and its page with
    ``_write_page(status)``; :meth:`_close_round` ends an update the same way
    in both (the report's own time and share, then page, status and budget).

    Parameters
    ----------
    folder : str
        Report folder; made by :meth:`_open_folder` once the subclass has
        checked everything else.
    structure : gemmi.Structure or None
    max_fraction : float
        Largest share of the run spent drawing (0 < max_fraction <= 1).
    refresh_seconds : int
        The page's reload period (at least 1).
    clock : callable
        Time source.
    """

    def __init__(self, folder, structure, max_fraction, refresh_seconds, clock):
        self.budget = DrawingBudget(max_fraction, clock)  # checks max_fraction
        if int(refresh_seconds) < 1:
            raise ValueError(f"refresh_seconds must be at least 1, got {refresh_seconds}")
        self.folder = folder
        self.structure = structure
        self.refresh_seconds = int(refresh_seconds)
        self.clock = clock
        self.drawings = 0
        self._status = None
        self._last = None
        self._panels = []

    def _open_folder(self):
        os.makedirs(self.folder, exist_ok=True)

    def _write(self, status):
        """Write ``status.json`` (atomically) and keep ``status`` as the current one."""
        replace_json(os.path.join(self.folder, "status.json"), status)
        self._status = status

    @property
    def total_seconds(self):
        """Time the report has taken in all."""
        return self.budget.total_seconds

    @property
    def last_seconds(self):
        """Time of the latest update."""
        return self.budget.last_seconds

    def _redraw_last(self, redraw):
        """Call ``redraw()`` if the cost bound skipped the last round's drawing, keeping the merge's ``phase``.

        (A redraw rebuilds the status from that round's progress, whose phase
        is older than the one :meth:`mark_phase` wrote since, e.g. "finishing".)
        """
        if self._last[-1]:
            return
        phase = self._status.get("phase")
        redraw()
        if phase is not None:
            self._status["phase"] = phase

    def _close_round(self, status, elapsed_seconds, started, drawing):
        """Add the report's time and share to ``status``, write page (if drawn) and status, book the cost."""
        # one figure of the report's share, on the page and in status.json alike (the panels' time included)
        status.update(report_seconds=self.clock() - started,
                      report_fraction=self.budget.share(elapsed_seconds, started))
        if drawing:
            self._write_page(status)
        self._write(status)
        self.budget.spent(started, drawing)
