"""Refuse a ``mono`` run whose outputs would overwrite one of its inputs.

``mono`` writes, beside the output prefix ``<out>``, the files
``<out>_<i>.mtz``, ``<out>_predictions_<i>.mtz``, ``<out>_xval_<i>.mtz``,
``<out>_history.csv`` (``<out>_history_<i>.csv``), ``<out>_<i>.keras`` and
the lock ``<out>.lock``, the folders ``<out>_<i>.ckpt/`` and ``<out>_live/``,
and the cache's sub-folders (a 16-hex-digit key, ``live_<name>``) in the cache
folder.  Before any input is read, every input (the data files, both members
of a DIALS pair, the files a live folder or glob pattern names now,
``--groups-file``, ``--model-in``, ``--model-pdb``) is compared with those
paths: by its real path (symbolic links resolved) and by its device and inode
(hard links).  An output that is an input is refused in one line, and so is
a live source that would pick up the run's own outputs.  Only the standard
library is used, so the check runs before anything heavy is imported.
"""

import fnmatch
import glob
import os
import re

from careless_online.errors import InputError

#: Output files of a prefix: what follows ``<out>`` in their names.
_FILES = re.compile(r"(_\d+\.mtz|_predictions_\d+\.mtz|_xval_\d+\.mtz|_history(_\d+)?\.csv|_\d+\.keras|\.lock)$")
#: Output folders of a prefix (their contents are replaced and removed).
_FOLDERS = re.compile(r"(_\d+\.ckpt|_live)$")
#: Sub-folders of the cache folder a run writes and removes.
_CACHE_FOLDERS = re.compile(r"([0-9a-f]{16}(\.building-\d+)?|live_.+)$")
#: File names a live folder source is searched for (as :data:`careless_online.io.arrivals.FOLDER_PATTERNS`).
_LIVE_PATTERNS = ("*.stream", "*.mtz", "*.refl")
#: Input file endings a folder or pattern may name.
_INPUT_ENDINGS = (".mtz", ".stream", ".expt", ".refl")


def _named_now(source):
    """Input files a live folder or glob pattern names now; the path itself for a plain file."""
    if os.path.isdir(source):
        return sorted(os.path.join(source, name) for name in os.listdir(source)
                      if name.lower().endswith(_INPUT_ENDINGS))
    if any(char in source for char in "*?["):
        return sorted(path for path in glob.glob(source) if path.lower().endswith(_INPUT_ENDINGS))
    return [source]


def input_files(args):
    """Every file the run reads, as given (existing files only).

    Parameters
    ----------
    args : argparse.Namespace
        ``mono``'s arguments.

    Returns
    -------
    list of str
    """
    paths = []
    for source in args.inputs:
        for path in _named_now(str(source)):
            stem, ext = os.path.splitext(path)
            paths += [stem + ".expt", stem + ".refl"] if ext.lower() in (".expt", ".refl") else [path]
    for flag in ("groups_file", "model_in", "model_pdb"):
        if getattr(args, flag, None):
            paths.append(getattr(args, flag))
    return [p for p in dict.fromkeys(paths) if os.path.isfile(p)]


def _real_prefix(out):
    """``(real folder, name)`` of the output prefix: the folder with its links resolved."""
    return os.path.realpath(os.path.dirname(os.path.abspath(out))), os.path.basename(out)


def _owned_by_prefix(real, folder, name):
    """Whether the real path ``real`` is an output file of the prefix, or lies in one of its output folders."""
    if os.path.dirname(real) == folder and os.path.basename(real).startswith(name) \
            and _FILES.fullmatch(os.path.basename(real)[len(name):]):
        return True
    parent = real
    while os.path.dirname(parent) != parent:
        parent = os.path.dirname(parent)
        if os.path.dirname(parent) == folder and os.path.basename(parent).startswith(name) \
                and _FOLDERS.fullmatch(os.path.basename(parent)[len(name):]):
            return True
    return False


def _in_cache(real, cache):
    """Whether ``real`` lies in a sub-folder of the cache folder that a run writes and removes."""
    relative = os.path.relpath(real, cache)
    parts = relative.split(os.sep)
    return not relative.startswith(os.pardir) and len(parts) > 1 and bool(_CACHE_FOLDERS.fullmatch(parts[0]))


def _existing_outputs(folder, name):
    """The existing entries of the output folder that are output files of the prefix."""
    if not os.path.isdir(folder):
        return []
    return [os.path.join(folder, entry) for entry in sorted(os.listdir(folder))
            if entry.startswith(name) and _FILES.fullmatch(entry[len(name):])]


def _inode(path):
    """``(st_dev, st_ino)`` of the file ``path`` leads to (links followed); None if there is none."""
    try:
        stat = os.stat(path)
    except OSError:  # a dangling link
        return None
    return stat.st_dev, stat.st_ino


def check_outputs_spare_inputs(args, cache_dir):
    """Refuse outputs that are inputs, before anything is read.

    Parameters
    ----------
    args : argparse.Namespace
        ``mono``'s arguments (``inputs``, ``out``, ``live``, ...).
    cache_dir : str
        The cache folder of the run.

    Raises
    ------
    InputError
        Naming the input and the output that would replace it.
    """
    folder, name = _real_prefix(args.out)
    cache = os.path.realpath(cache_dir)
    inputs = {_inode(path): path for path in input_files(args)}
    for key, path in inputs.items():
        real = os.path.realpath(path)
        if _owned_by_prefix(real, folder, name):
            raise InputError(f"is an input, and the output prefix {args.out} writes this file (or the folder it "
                             "is in); choose another output prefix", path)
        if _in_cache(real, cache):
            raise InputError(f"is an input inside the cache folder {cache_dir}, which the run rewrites; move it or "
                             "give another --cache-dir", path)
    for output in _existing_outputs(folder, name):
        path = inputs.get(_inode(output)) if _inode(output) is not None else None
        if path is not None:
            raise InputError(f"is an input, and the output {output} is the same file (a symbolic or hard link); "
                             "choose another output prefix", path)
    if args.live:
        _check_live_sources(args, folder, name)


def _check_live_sources(args, folder, name):
    """Refuse a live folder or glob pattern that would pick up the run's own MTZ outputs."""
    outputs = [base + suffix for base in (os.path.abspath(args.out), os.path.join(folder, name))
               for suffix in ("_0.mtz", "_predictions_0.mtz")]
    for source in map(str, args.inputs):
        if os.path.isdir(source):
            real = os.path.realpath(source)
            caught = [o for o in outputs if os.path.dirname(o) == real
                      and any(fnmatch.fnmatch(os.path.basename(o), p) for p in _LIVE_PATTERNS)]
        elif any(char in source for char in "*?["):
            caught = [o for o in outputs if fnmatch.fnmatch(o, os.path.abspath(source))]
        else:
            continue
        if caught:
            raise InputError(f"this live source would take the run's own output {caught[0]} as new data; "
                             "write the outputs outside it", source)
