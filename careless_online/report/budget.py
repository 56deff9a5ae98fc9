"""The live report's cost bound: when it may draw, and what it has cost.

Drawing (half-dataset merges, maps, figures, pages) is redone only when the
time since the last drawing is at least ``1 / max_fraction`` times what that
drawing took, so that drawing takes at most about ``max_fraction`` of the run;
the first drawing, a final one and ``max_fraction = 1`` are always due.
"""

import time


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
