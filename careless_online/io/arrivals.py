"""Which input files have arrived complete: the live mode's view of a folder.

A live source is a CrystFEL stream (followed while it grows), a folder, or a
glob pattern.  Folders and patterns are searched again at every poll, so files
that appear later are found.  A stream is followed from the moment it exists;
an unmerged MTZ file or a DIALS ``.expt``/``.refl`` pair is *ready* once it
has kept the same size and modification time over one poll (for a DIALS pair:
both files present, both unchanged).  Each ready file is handed out once.  A
file that is ready but cannot be read is handed out again only after it
changes (a writer that paused mid-file and then finished).  A source may be
limited to some formats (a Laue merge follows only MTZ files): the files of
other formats it names are passed over.
"""

import glob
import os

from careless_online.io import readers
from careless_online.io.sources import is_pattern

#: File names a folder source is searched for.
FOLDER_PATTERNS = ("*.stream", "*.mtz", "*.refl")


def _signature(path):
    """(size, mtime_ns) of a file, or None if it is missing or empty."""
    try:
        stat = os.stat(path)
    except FileNotFoundError:
        return None
    return (stat.st_size, stat.st_mtime_ns) if stat.st_size > 0 else None


def _key(path):
    """The file a path is read as: a DIALS pair's ``.refl``, else the path."""
    return readers.dials_pair(path)[1] if readers.file_format(path) == "dials" else path


class Arrivals:
    """Finds the streams to follow and the files that are complete.

    Parameters
    ----------
    sources : list of str
        Stream paths, other file paths, folders or glob patterns (a folder
        that does not exist yet is searched once it appears, see
        :func:`careless_online.io.sources.is_pattern`).  An existing file
        with an unknown extension is refused (``InputError``).
    formats : collection of str, optional
        The formats followed (``mtz``, ``stream``, ``dials``; default: all);
        files of other formats named by a folder or pattern are passed over.
    """

    def __init__(self, sources, formats=None):
        self.sources = [str(s) for s in sources]
        self.formats = None if formats is None else frozenset(formats)
        for source in self.sources:
            if not is_pattern(source):
                readers.file_format(source)
        self.streams = []
        self._seen = {}
        self._taken = set()
        self._failed = {}
        self._source_of = {}

    def source_of(self, key):
        """Number of the source (position in :attr:`sources`) that first named ``key``."""
        return self._source_of[key]

    def _candidates(self):
        """Paths named by the sources now, in a stable order, each once."""
        keys = {}
        for number, source in enumerate(self.sources):
            for path in _named_by(source):
                key = _key(path)
                if key not in keys and self._followed(key):
                    keys[key] = number
                    self._source_of.setdefault(key, number)
        return list(keys)

    def _followed(self, key):
        """Whether a file of this name is of a format followed."""
        return self.formats is None or readers.file_format(key) in self.formats

    def _pair_signature(self, key):
        """Signature of everything a key is read from; None if anything is missing or empty."""
        members = readers.dials_pair(key) if readers.file_format(key) == "dials" else (key,)
        signatures = [_signature(m) for m in members]
        return None if None in signatures else tuple(signatures)

    def poll(self):
        """Look at the sources once.

        Returns
        -------
        list of str
            Files (a DIALS pair as its ``.refl``) that became ready since the
            last poll, in source order.  Streams are not returned: they are
            listed, once found, in :attr:`streams`.
        """
        ready = []
        for key in self._candidates():
            if readers.file_format(key) == "stream":
                if key not in self.streams and os.path.exists(key):
                    self.streams.append(key)
                continue
            if key in self._taken:
                continue
            signature = self._pair_signature(key)
            before, self._seen[key] = self._seen.get(key), signature
            if signature is not None and signature == before and self._failed.get(key) != signature:
                ready.append(key)
        return ready

    def taken(self, key):
        """Record that ``key`` was read; it is never handed out again."""
        self._taken.add(key)
        self._seen.pop(key, None)
        self._failed.pop(key, None)

    def failed(self, key):
        """Record that ``key`` could not be read; it is handed out again once it changes."""
        self._failed[key] = self._seen.get(key)


def _named_by(source):
    """Paths a source names now: a folder's known files, a pattern's matches, or the path itself."""
    if os.path.isdir(source):
        return [p for pattern in FOLDER_PATTERNS for p in sorted(glob.glob(os.path.join(source, pattern)))]
    if is_pattern(source):
        return sorted(p for p in glob.glob(source) if _known_format(p))
    return [source]


def _known_format(path):
    return os.path.splitext(path)[1].lower() in (".stream", ".mtz", ".refl", ".expt")
