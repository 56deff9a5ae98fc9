"""Shards of whole images: writing them with their checksums, and checking them.

A shard is an ``.npz`` file with one array per observation-table column,
holding whole images sorted by image id.  Its record in the manifest keeps
its size and SHA-256 checksum.
"""

import hashlib
import io
import os

import numpy as np
import pandas as pd

from careless_online.errors import InputError
from careless_online.io.atomic import write_bytes as write_atomic
from careless_online.io.moments import accumulate


def _sha256(data):
    return hashlib.sha256(data).hexdigest()


def shard_problem(folder, record):
    """What is wrong with a shard file, or None if it matches its record.

    Parameters
    ----------
    folder : str
    record : dict
        The shard's manifest record (``file``, ``size``, ``sha256``).

    Returns
    -------
    str or None
    """
    path = os.path.join(folder, record["file"])
    try:
        with open(path, "rb") as handle:
            data = handle.read()
    except OSError as err:
        return f"cannot be read: {err.strerror or err}"
    if "size" in record and len(data) != record["size"]:
        return f"{len(data)} bytes, {record['size']} written"
    if "sha256" in record and _sha256(data) != record["sha256"]:
        return "checksum mismatch"
    return None


def npy_bytes(array):
    """An array as the bytes of an ``.npy`` file (to write with :func:`write_atomic`)."""
    buffer = io.BytesIO()
    np.save(buffer, array)
    return buffer.getvalue()


class _ShardWriter:
    """Accumulates observation tables and writes shards of whole images.

    Parameters
    ----------
    folder : str
        Where shards go.
    n_reflections : int
        Size of the reflection index (for the per-reflection counts).
    shard_images : int
        Images per shard.
    """

    def __init__(self, folder, n_reflections, shard_images):
        if int(shard_images) < 1:
            raise ValueError(f"shard_images must be at least 1 (got {shard_images})")
        self.folder = folder
        self.shard_images = int(shard_images)
        self.pending = []
        self.pending_images = 0
        self.shards = []
        self.columns = None
        self.stats = {}
        self.counts = np.zeros(n_reflections, dtype=np.int64)

    def add(self, table, path=None):
        """Queue the rows of ``table`` (read from ``path``); writes shards once enough images are queued."""
        if len(table) == 0:
            return
        if self.columns is None:
            self.columns = list(table.columns)
        missing = [c for c in self.columns if c not in table]
        if missing:
            raise InputError(f"columns {', '.join(missing)} missing (the first input has them); "
                             "merge files with the same columns", path)
        table = table[self.columns]
        self.pending.append(table)
        self.pending_images += table["image_id"].nunique()
        if self.pending_images >= self.shard_images:
            self.flush()

    def flush(self):
        """Write every queued image."""
        if not self.pending:
            return
        table = pd.concat(self.pending, ignore_index=True)
        table = table.sort_values("image_id", kind="stable")
        self.pending, self.pending_images = [], 0
        arrays = {c: table[c].to_numpy() for c in self.columns}
        image_id = arrays["image_id"]
        starts = np.flatnonzero(np.r_[True, image_id[1:] != image_id[:-1]])
        bounds = np.r_[starts[::self.shard_images], len(image_id)]
        for begin, end in zip(bounds[:-1], bounds[1:]):
            self._write({c: v[begin:end] for c, v in arrays.items()})

    def _write(self, arrays):
        """Write one shard (whole images, sorted by image id) and update the sums."""
        name = f"shard_{len(self.shards):05d}.npz"
        buffer = io.BytesIO()
        np.savez(buffer, **arrays)
        data = buffer.getvalue()
        write_atomic(os.path.join(self.folder, name), data)
        images = arrays["image_id"]
        self.shards.append({
            "file": name, "n_obs": int(len(images)), "n_images": int(len(np.unique(images))),
            "first_image": int(images.min()), "last_image": int(images.max()),
            "size": len(data), "sha256": _sha256(data),
        })
        for c in self.columns:
            if c in ("refl_id", "plus"):
                continue
            self.stats[c] = accumulate(self.stats.get(c, (0, 0.0, 0.0)), arrays[c])
        self.counts += np.bincount(arrays["refl_id"], minlength=len(self.counts))
