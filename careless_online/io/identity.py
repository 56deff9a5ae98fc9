"""Identity of input files and the cache key built from it.

A file's identity is its absolute path, size, modification time and a
SHA-256 of its first and last :data:`EDGE_BYTES` bytes: a file rewritten in
place (even with its old size and time stamp, where the change touches its
head or tail) gets a new identity, and so a new cache.
"""

import hashlib
import json
import os

from careless_online.errors import InputError

#: Bytes hashed at each end of an input file.
EDGE_BYTES = 2**20


def file_identity(path):
    """{path, size, mtime_ns, edges} of one input file.

    Raises
    ------
    InputError
        If the file cannot be read.
    """
    try:
        stat = os.stat(path)
        digest = hashlib.sha256()
        with open(path, "rb") as handle:
            digest.update(handle.read(EDGE_BYTES))
            if stat.st_size > EDGE_BYTES:
                handle.seek(max(EDGE_BYTES, stat.st_size - EDGE_BYTES))
                digest.update(handle.read(EDGE_BYTES))
    except OSError as err:
        raise InputError(f"cannot read the file ({err.strerror or err})", path) from None
    return {"path": os.path.abspath(path), "size": stat.st_size, "mtime_ns": int(stat.st_mtime_ns),
            "edges": digest.hexdigest()}


def refuse_duplicates(identities):
    """InputError for an input whose contents (size and edge hash) equal an earlier one's."""
    seen = {}
    for entry in identities:
        key = (entry["size"], entry["edges"])
        if key in seen:
            raise InputError(f"same contents as {seen[key]}: its images would count twice", entry["path"])
        seen[key] = entry["path"]


def cache_key(identities, options, extra, version):
    """A 16-hex-digit key of the inputs' identities, the table options and the layout version."""
    blob = json.dumps({"v": version, "inputs": identities, "options": options, "extra": extra}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def input_contents(manifest):
    """What identifies the contents of a cache's inputs: (path, size, edge hash) per file, mtime left out.

    A checkpoint records it, so that ``--resume`` can refuse inputs that
    changed since (a touched but unchanged file still resumes).

    Parameters
    ----------
    manifest : careless_online.io.cache.Manifest

    Returns
    -------
    list of list or None
        None for a cache without recorded identities (a live cache).
    """
    identities = manifest.info.get("identities")
    if identities is None:
        return None
    return [[entry["path"], entry["size"], entry["edges"]] for entry in identities]
