"""A followed stream that was truncated or replaced while a live merge read it.

A live merge reads a growing stream chunk by chunk and resumes where it
stopped.  If the file is truncated and written again, or replaced by another
file (a new inode, a size below what was read, or other bytes where the last
chunk read was), resuming from a chunk count would skip the new chunks that
took the old ones' place.  :class:`FollowedStream` keeps, for each chunk read,
its span and a short hash of its bytes, and tells the caller from which chunk
to read again: the leading chunks that are still the same are kept, the rest
of the file is new, except chunks whose bytes were read before (a stream
rewritten with the same chunks), which are skipped so that nothing is
counted twice.  The images of the chunks that are gone stay in the merge
(they were trained on); the one-line message says so.
"""

import hashlib
import os

#: Bytes of a chunk's digest.
DIGEST_BYTES = 8


def chunk_digests(path, spans):
    """A short hash of the bytes of each chunk ``(start, end, ...)`` of a file."""
    digests = []
    with open(path, "rb") as handle:
        for span in spans:
            handle.seek(span[0])
            digests.append(hashlib.blake2b(handle.read(span[1] - span[0]), digest_size=DIGEST_BYTES).digest())
    return digests


def _inode(path):
    try:
        stat = os.stat(path)
    except FileNotFoundError:
        return None, 0
    return (stat.st_dev, stat.st_ino), stat.st_size


class FollowedStream:
    """What was read of one followed stream: the file, and each chunk's span and digest."""

    def __init__(self, path):
        self.path = str(path)
        self.inode = None
        self.spans = []
        self.digests = []
        self.seen = set()

    def note(self, spans, digests):
        """Record chunks read (their spans in the current file and their digests)."""
        if self.inode is None:
            self.inode = _inode(self.path)[0]
        self.spans += [(int(s[0]), int(s[1])) for s in spans]
        self.digests += list(digests)
        self.seen.update(digests)

    def _change(self):
        """Why the file is not the one read (a short phrase), or None while it only grew."""
        if not self.spans:
            return None
        inode, size = _inode(self.path)
        if inode is None:
            return None  # gone for now: nothing to read
        if inode != self.inode:
            return "replaced by another file"
        if size < self.spans[-1][1]:
            return f"truncated ({size} bytes, {self.spans[-1][1]} had been read)"
        if chunk_digests(self.path, self.spans[-1:]) != self.digests[-1:]:
            return "rewritten (the bytes of the last chunk read changed)"
        return None

    def restart(self, spans):
        """After a change, the chunk to read from, and the line that says what happened.

        Parameters
        ----------
        spans : list of (int, int, bool)
            The file's complete chunks now.

        Returns
        -------
        (int or None, str or None)
            ``(None, None)`` while the file only grew; else the number of
            leading chunks still the same (reading goes on after them) and
            the message.
        """
        change = self._change()
        if change is None:
            return None, None
        kept = 0
        limit = min(len(spans), len(self.spans))
        while kept < limit and tuple(spans[kept][:2]) == self.spans[kept] and \
                chunk_digests(self.path, spans[kept:kept + 1]) == self.digests[kept:kept + 1]:
            kept += 1
        gone = len(self.spans) - kept
        self.inode = _inode(self.path)[0]
        self.spans, self.digests = self.spans[:kept], self.digests[:kept]
        return kept, (f"{self.path}: the followed stream was {change}: its first {kept} chunks are unchanged; "
                      f"the images of the {gone} chunks read after them stay in the merge, and its chunks from "
                      f"chunk {kept} on are read as new (chunks read before are skipped, not counted twice)")

    def new(self, spans):
        """The spans not read before (by digest), with their digests, and the number skipped."""
        digests = chunk_digests(self.path, spans)
        fresh = [(span, digest) for span, digest in zip(spans, digests) if digest not in self.seen]
        return [s for s, _ in fresh], [d for _, d in fresh], len(spans) - len(fresh)
