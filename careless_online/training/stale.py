"""Outputs an earlier run left under the same prefix that this run did not rewrite.

A merge writes ``<out>_<i>.mtz``, ``<out>_predictions_<i>.mtz`` and
``<out>_xval_<i>.mtz`` per dataset; a run with fewer datasets, without
predictions or without half-dataset merges would otherwise leave the earlier
run's files beside its own, where they look like outputs of this run.  Once
a run has written its outputs, those files are removed, each with one line.
"""

import glob
import os
import re

#: Per-dataset output names after the prefix: ``_<i>.mtz``, ``_predictions_<i>.mtz``, ``_xval_<i>.mtz``.
_NUMBERED = re.compile(r"_(?:predictions_|xval_)?\d+\.mtz")


def stale_outputs(base, written):
    """Per-dataset MTZ outputs under ``base`` that are not among ``written``.

    Parameters
    ----------
    base : str
        The output prefix.
    written : iterable of str
        Paths this run wrote.

    Returns
    -------
    list of str
        Sorted paths.
    """
    kept = {os.path.abspath(path) for path in written}
    found = glob.glob(f"{glob.escape(base)}_*.mtz")
    return sorted(path for path in found if _NUMBERED.fullmatch(path[len(base):]) and os.path.abspath(path) not in kept)


def remove_stale_outputs(base, written, log):
    """Remove the outputs of an earlier run that this run did not rewrite, saying so (one line each).

    Parameters
    ----------
    base : str
        The output prefix.
    written : iterable of str
        Paths this run wrote.
    log : callable
        Called with one message per removed file.

    Returns
    -------
    list of str
        The paths removed.
    """
    removed = []
    for path in stale_outputs(base, written):
        try:
            os.remove(path)
        except FileNotFoundError:
            continue
        log(f"removed {path}: left by an earlier run under this prefix, not written by this one")
        removed.append(path)
    return removed
