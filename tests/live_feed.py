"""Deterministic data arrival for live-mode tests.

A :class:`Feeder` writes the pieces of an experiment from a background thread,
one piece each time the merger waits (its ``sleep``), and advances a fake
clock instead of sleeping.  So what the merger sees, round by round, does not
depend on how fast the test machine is.
"""

import os
import re
import shutil
import threading

import numpy as np

from careless_online.simulate.mtz import write_unmerged_mtz


class FakeClock:
    """A clock that only moves when told."""

    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


class Feeder:
    """Writes one piece per wait of the merger, in a background thread.

    Parameters
    ----------
    pieces : list of callable
        Each writes one piece of data when called.
    clock : FakeClock
    watch : callable, optional
        Called (in the merger's thread) at every wait, e.g. to take snapshots
        of the live report.
    round_seconds : float
        Seconds a wait of zero seconds advances the clock by: the merger waits
        zero seconds between the rounds it trains while no data arrive, so the
        clock counts each such round as this long.
    """

    def __init__(self, pieces, clock, watch=None, round_seconds=1.0):
        self.pieces = list(pieces)
        self.clock = clock
        self.watch = watch
        self.round_seconds = float(round_seconds)
        self.written = 0
        self._go = threading.Semaphore(0)
        self._done = threading.Semaphore(0)
        self.thread = threading.Thread(target=self._write, daemon=True)
        self.thread.start()

    def _write(self):
        for piece in self.pieces:
            self._go.acquire()
            piece()
            self._done.release()

    def sleep(self, seconds):
        """The merger's wait: advance the clock and let the writer add the next piece."""
        if self.watch is not None:
            self.watch()
        self.clock.now += seconds if seconds > 0 else self.round_seconds
        if self.written < len(self.pieces):
            self._go.release()
            assert self._done.acquire(timeout=120), "the background writer got stuck"
            self.written += 1

    def join(self):
        self.thread.join(timeout=10)


def stream_pieces(stream_text, path, n_pieces):
    """Writers that append a stream to ``path`` in ``n_pieces`` pieces cut at chunk ends.

    The first piece also ends with half of the next chunk, which only a later
    piece completes.
    """
    marker = "----- End chunk -----\n"
    ends = [m.end() for m in re.finditer(re.escape(marker), stream_text)]
    cuts = [ends[int(round(k * len(ends) / n_pieces)) - 1] for k in range(1, n_pieces)]
    cuts[0] += (ends[ends.index(cuts[0]) + 1] - cuts[0]) // 2
    bounds = [0] + cuts + [len(stream_text)]

    def piece(begin, end):
        def write():
            with open(path, "a") as handle:
                handle.write(stream_text[begin:end])
                handle.flush()
                os.fsync(handle.fileno())
        return write

    return [piece(b, e) for b, e in zip(bounds[:-1], bounds[1:])]


def mtz_pieces(observations, folder, n_pieces):
    """Writers that each put the next block of images into a new unmerged MTZ file in ``folder``."""
    batches = np.unique(observations["BATCH"].to_numpy())
    groups = np.array_split(batches, n_pieces)

    def piece(number, group):
        def write():
            subset = observations[observations["BATCH"].isin(group)]
            write_unmerged_mtz(subset, os.path.join(folder, f"run_{number:03d}.mtz"))
        return write

    return [piece(n, g) for n, g in enumerate(groups)]


def dials_pieces(source, folder):
    """Writers that copy the DIALS pairs of ``source`` into ``folder`` the careless way, half a file at a time.

    Piece k finishes pair k - 1's ``.refl`` and writes pair k's ``.expt``
    and the first half of its ``.refl`` (in place, no temporary name), so
    after every piece but the last a pair lies there half-written.
    """
    stems = sorted(name[: -len(".refl")] for name in os.listdir(source) if name.endswith(".refl"))
    tables = [open(os.path.join(source, stem + ".refl"), "rb").read() for stem in stems]

    def piece(k):
        def write():
            if k > 0:
                with open(os.path.join(folder, stems[k - 1] + ".refl"), "ab") as handle:
                    handle.write(tables[k - 1][len(tables[k - 1]) // 2:])
            if k < len(stems):
                shutil.copyfile(os.path.join(source, stems[k] + ".expt"), os.path.join(folder, stems[k] + ".expt"))
                with open(os.path.join(folder, stems[k] + ".refl"), "wb") as handle:
                    handle.write(tables[k][: len(tables[k]) // 2])
        return write

    return [piece(k) for k in range(len(stems) + 1)]
