"""Early stopping: end a run once the held-out NLL stops improving, through the learning-rate decay.

A run of ``T`` planned steps keeps its learning rate constant, then lowers it
linearly over the last ``lr_decay * T`` steps (:func:`careless_online.training.loop.learning_rate_at`);
the decay is what sharpens small differences such as anomalous ones, so a
run must never end without it.  With a patience of ``P`` evaluations, the
run watches the held-out NLL per observation at each evaluation; when ``P``
evaluations in a row bring no new best (lower than the best so far by more
than ``min_delta``), at step ``t`` the plan becomes

.. math::

    T' = \\min\\left(T,\\; t + \\left\\lceil t\\,\\frac{\\mathrm{lr\\_decay}}{1 - \\mathrm{lr\\_decay}} \\right\\rceil\\right)

steps: the decay starts at ``t`` and takes the same share of the shortened
run as it would of the full one, so the final learning rates are those of a
run planned with ``T'`` steps from the start.

The decision is a function of the history rows alone, so a resumed run
replays the kept rows (:meth:`EarlyStop.replay`) and continues the same plan
without any extra state in the checkpoint.
"""

import math

from careless_online.checks import integer_at_least, non_negative


class EarlyStop:
    """The plan of a run whose end may be brought forward when the held-out NLL stops improving.

    Parameters
    ----------
    patience : int
        Evaluations in a row without a new best after which the run ends
        (through its decay); 0 never stops early.
    steps : int
        Planned steps (``--iterations``).
    lr_decay : float
        Share of the run that the learning-rate decay takes.
    min_delta : float
        Least decrease of the NLL per observation (nats) that counts as an improvement.
    """

    def __init__(self, patience, steps, lr_decay, min_delta=1e-3):
        self.patience = integer_at_least("patience", patience, 0)
        self.steps = integer_at_least("steps", steps, 1)
        self.lr_decay = float(lr_decay)
        if not 0.0 <= self.lr_decay < 1.0:
            raise ValueError(f"lr_decay must be in [0, 1), got {lr_decay}")
        self.min_delta = non_negative("min_delta", min_delta)
        self.planned = self.steps
        self.best = math.inf
        self.since_best = 0
        self.stopped_at = None

    def observe(self, step, nll):
        """Take the held-out NLL of the evaluation at ``step``; True when it ends the plan now.

        A NaN (no held-out images) is no evidence either way: it is ignored.
        """
        if self.patience == 0 or self.stopped_at is not None or not math.isfinite(nll):
            return False
        if nll < self.best - self.min_delta:
            self.best, self.since_best = float(nll), 0
            return False
        self.since_best += 1
        if self.since_best < self.patience:
            return False
        self.stopped_at = int(step)
        decay = math.ceil(step * self.lr_decay / (1.0 - self.lr_decay)) if self.lr_decay > 0 else 0
        self.planned = min(self.steps, int(step) + decay)
        return True

    def replay(self, rows, column="NLL_test"):
        """Observe the history rows of the steps already done (a resumed run)."""
        for row in rows:
            self.observe(int(row["step"]), float(row[column]))
        return self

    def describe(self):
        """One log line on the decision."""
        return (f"early stop: held-out NLL has not improved by {self.min_delta:g} for {self.patience} evaluations "
                f"at step {self.stopped_at} (best {self.best:.4f}); learning-rate decay until step {self.planned}")
