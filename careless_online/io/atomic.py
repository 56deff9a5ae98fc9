"""Atomic output files: a complete new file, the previous file, or none.

Every output (MTZ, CSV, figure) is first written to a hidden temporary name
in the destination's own folder and then renamed onto the destination with
:func:`os.replace`, which is atomic on POSIX file systems.  A process killed
while writing leaves the previous complete file (or no file) and a stray
``.<name>.tmp<pid><ext>`` that the next write of the same output removes.
A failed write (a full disk, a vanished folder) ends in an
:class:`~careless_online.errors.InputError` naming the file, and the previous
file is kept.
"""

import errno
import glob
import os
from contextlib import contextmanager

from careless_online.errors import InputError


def temporary_name(path):
    """The temporary name under which ``path`` is written.

    It lies in the same folder (so the rename cannot cross file systems),
    starts with a dot and keeps the extension (writers such as matplotlib
    choose the format by extension).

    Parameters
    ----------
    path : str

    Returns
    -------
    str
    """
    folder, name = os.path.split(os.path.abspath(path))
    stem, ext = os.path.splitext(name)
    return os.path.join(folder, f".{stem}.tmp{os.getpid()}{ext}")


def _stale_temporaries(path):
    folder, name = os.path.split(os.path.abspath(path))
    stem, ext = os.path.splitext(name)
    return glob.glob(os.path.join(glob.escape(folder), f".{glob.escape(stem)}.tmp*{glob.escape(ext)}"))


def _remove(path):
    try:
        os.remove(path)
    except FileNotFoundError:
        pass


def write_error(err, path):
    """The one-line :class:`InputError` for an :class:`OSError` while writing ``path``."""
    if err.errno == errno.ENOSPC:
        return InputError("cannot write: no space left on device (the previous file is kept)", path)
    reason = err.strerror or str(err)
    return InputError(f"cannot write ({reason}; the previous file is kept)", path)


@contextmanager
def replacing(path):
    """Like :func:`atomic_path`, but an :class:`OSError` passes through unchanged.

    For callers that turn a failed write into their own message (the cache
    reports a full disk for the whole cache, not for one shard).

    Parameters
    ----------
    path : str

    Yields
    ------
    str
        Where to write.
    """
    for stale in _stale_temporaries(path):
        _remove(stale)
    tmp = temporary_name(path)
    try:
        yield tmp
        sync_file(tmp)
        os.replace(tmp, path)
    except BaseException:
        _remove(tmp)
        raise


@contextmanager
def atomic_path(path):
    """Context manager yielding a temporary path that replaces ``path`` on success.

    Parameters
    ----------
    path : str
        The destination.

    Yields
    ------
    str
        Where to write.  On a normal exit of the ``with`` block the file is
        flushed to disk and renamed onto ``path``; on an exception it is
        removed and ``path`` is left as it was.

    Raises
    ------
    InputError
        When writing or renaming fails with an :class:`OSError` (ENOSPC
        included).  Other exceptions pass through unchanged (the temporary
        file is removed all the same).
    """
    try:
        with replacing(path) as tmp:
            yield tmp
    except OSError as err:
        raise write_error(err, path) from None


def sync_file(path):
    """Flush a written file to disk, so the rename never exposes unwritten blocks."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_atomically(path, write):
    """Call ``write(tmp)`` and rename ``tmp`` onto ``path`` (see :func:`atomic_path`).

    Parameters
    ----------
    path : str
    write : callable
        Writes the complete file to the path it is given.

    Returns
    -------
    str
        ``path``.
    """
    with atomic_path(path) as tmp:
        write(tmp)
    return str(path)


def write_bytes(path, data):
    """Write ``data`` (bytes) to ``path`` atomically; an :class:`OSError` passes through (see :func:`replacing`).

    Parameters
    ----------
    path : str
    data : bytes
    """
    with replacing(path) as tmp:
        with open(tmp, "wb") as handle:
            handle.write(data)
