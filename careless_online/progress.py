"""Progress of long loops: a bar on a terminal, periodic lines in a log or pipe.

On a terminal, :func:`progress_display` returns a tqdm bar (rate and ETA).
When standard error is a file or a pipe, a bar would write a carriage-return
soup or nothing readable, so :class:`LineProgress` prints one complete line
every ``interval`` seconds instead (and one at the end)::

    step 600/1500 (40%), 12.3 step/s, elapsed 0:49, ETA 1:13, loss=1.2e+04, ccpred=0.91/0.88

Both offer the part of tqdm's interface the training loop uses:
``update(n)``, ``set_postfix(**values)`` and ``close()``.
"""

import sys
import time

#: Seconds between two progress lines when standard error is not a terminal.
DEFAULT_INTERVAL_S = 30.0


def _clock(seconds):
    """``h:mm:ss`` or ``m:ss`` of a duration in seconds."""
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


class LineProgress:
    """Progress reported as one line every ``interval`` seconds.

    Parameters
    ----------
    total : int
        Number of units of the whole task.
    initial : int, optional
        Units already done (e.g. when resuming).
    unit : str, optional
        Name of a unit.
    stream : file-like, optional
        Where lines go; standard error by default.
    interval : float, optional
        Seconds between lines (> 0).
    clock : callable, optional
        Monotonic time in seconds (for tests).
    """

    def __init__(self, total, initial=0, unit="step", stream=None, interval=DEFAULT_INTERVAL_S,
                 clock=time.monotonic):
        if total < 0 or initial < 0:
            raise ValueError(f"total and initial must be non-negative, got {total} and {initial}")
        if not interval > 0:
            raise ValueError(f"interval must be positive, got {interval}")
        self.total = int(total)
        self.n = int(initial)
        self.unit = unit
        self.stream = sys.stderr if stream is None else stream
        self.interval = float(interval)
        self._clock = clock
        self._initial = self.n
        self._started = clock()
        self._last_line = self._started
        self._postfix = {}
        self._closed = False

    def line(self):
        """The progress line for the current state (without a newline)."""
        elapsed = self._clock() - self._started
        done = self.n - self._initial
        text = f"{self.unit} {self.n}/{self.total}"
        if self.total:
            text += f" ({100.0 * self.n / self.total:.0f}%)"
        if elapsed > 0 and done > 0:
            rate = done / elapsed
            text += f", {rate:.3g} {self.unit}/s, elapsed {_clock(elapsed)}"
            if self.n < self.total:
                text += f", ETA {_clock((self.total - self.n) / rate)}"
        for key, value in self._postfix.items():
            text += f", {key}={value}"
        return text

    def _emit(self):
        print(self.line(), file=self.stream, flush=True)
        self._last_line = self._clock()

    def update(self, n=1):
        """Count ``n`` more units; print a line if ``interval`` has passed since the last."""
        self.n += n
        if self._clock() - self._last_line >= self.interval:
            self._emit()

    def set_postfix(self, **values):
        """Values appended to each line as ``key=value`` (e.g. the last loss)."""
        self._postfix = {key: str(value) for key, value in values.items()}

    def close(self):
        """Print the final line (once)."""
        if not self._closed:
            self._closed = True
            self._emit()


def progress_display(total, initial=0, unit="step", stream=None, interval=DEFAULT_INTERVAL_S):
    """A progress display suited to where ``stream`` goes.

    Parameters
    ----------
    total, initial : int
        Units of the task, and units already done.
    unit : str, optional
    stream : file-like, optional
        Standard error by default.
    interval : float, optional
        Seconds between lines when ``stream`` is not a terminal.

    Returns
    -------
    tqdm.tqdm or LineProgress
        A tqdm bar with rate and ETA if ``stream`` is a terminal, otherwise a
        :class:`LineProgress`.
    """
    stream = sys.stderr if stream is None else stream
    isatty = getattr(stream, "isatty", None)
    if isatty is not None and isatty():
        from tqdm import tqdm

        return tqdm(total=total, initial=initial, unit=unit, dynamic_ncols=True, file=stream)
    return LineProgress(total, initial=initial, unit=unit, stream=stream, interval=interval)
