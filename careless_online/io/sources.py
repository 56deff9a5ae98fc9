"""What a live-mode source names: one file, or a folder or glob pattern searched again at every poll.

Only the standard library is used, so that the command-line checks can apply
the same rule as the live cache before anything heavy is imported.
"""

import os

_GLOB_CHARACTERS = set("*?[")


def is_pattern(source):
    """Whether a live source names several files: a folder or a glob pattern.

    A folder is an existing one, or a path that does not exist yet and either
    ends in a path separator or has no file ending at all (``incoming/``,
    ``sim_dials``): live mode waits for it to appear.  A missing path with an
    ending (``data.txt``, ``run.stream``) names one file.

    Parameters
    ----------
    source : str or os.PathLike

    Returns
    -------
    bool
    """
    source = str(source)
    if os.path.isdir(source) or _GLOB_CHARACTERS & set(source):
        return True
    return not os.path.exists(source) and (source.endswith(("/", os.sep)) or not os.path.splitext(source)[1])


def missing_folder(source):
    """The folder a live source waits for, or None when it exists (or the source is one file).

    For a folder source that is the folder itself; for a glob pattern the
    folder part of the pattern before its first wildcard
    (``incoming/run_*.mtz`` waits for ``incoming``).

    Parameters
    ----------
    source : str or os.PathLike

    Returns
    -------
    str or None
    """
    source = str(source)
    if not is_pattern(source):
        return None
    cut = min([source.index(c) for c in _GLOB_CHARACTERS if c in source], default=None)
    folder = source if cut is None else os.path.dirname(source[:cut])
    folder = folder.rstrip("/" + os.sep) or folder
    if not folder or os.path.isdir(folder):
        return None
    return folder
