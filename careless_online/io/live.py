"""A cache that grows while CrystFEL streams are being written.

:class:`LiveCache` remembers how many complete chunks of each stream it has
converted.  :meth:`LiveCache.poll` converts the chunks completed since, as new
shards, and returns the number of new images; :attr:`LiveCache.manifest` is
a :class:`~careless_online.io.cache.Manifest` of everything converted so far,
usable by :class:`~careless_online.io.pipeline.ImageBatches` like any cache.
A chunk still being written (no ``End chunk`` line yet) is left for the next
poll.
"""

import json
import os

import numpy as np

from careless_online.errors import InputError
from careless_online.io import readers
from careless_online.io.cache import CACHE_VERSION, Manifest, _ShardWriter
from careless_online.io.table import LoadReport, build_index, make_observations


class LiveCache:
    """Incrementally converted streams.

    Parameters
    ----------
    paths : list of str
        CrystFEL streams (they may still be growing, or not exist yet).
    options : careless_online.io.table.TableOptions
        Must give ``dmin`` (the reflection capacity is fixed up front).
    folder : str
        Where shards and the manifest go (emptied of a previous manifest).
    index : ReflectionIndex, optional
        Use this index (e.g. a trained model's) instead of building one.
    shard_images : int
        Stream chunks converted per block.
    log : callable, optional
    """

    def __init__(self, paths, options, folder, index=None, shard_images=500, log=None):
        for path in paths:
            if readers.file_format(path) != "stream":
                raise InputError("live mode follows CrystFEL streams only", path)
        if options.dmin is None and index is None:
            raise InputError("live mode needs --dmin: the reflections to estimate are fixed before data arrive")
        self.paths = [str(p) for p in paths]
        self.options = options
        self.folder = folder
        self.index = index
        self.shard_images = int(shard_images)
        self.log = log or (lambda message: None)
        self.chunks_done = [0] * len(self.paths)
        self.images_done = [0] * len(self.paths)
        self.file_offsets = [i * 10**7 for i in range(len(self.paths))]
        self.writer = None
        self.report = LoadReport()
        os.makedirs(folder, exist_ok=True)
        for name in os.listdir(folder):
            if name.endswith(".npz") or name in ("manifest.json", "counts.npy"):
                os.remove(os.path.join(folder, name))

    def _ready(self, path):
        if not os.path.exists(path) or os.path.getsize(path) == 0:
            return 0
        return readers.count_stream_chunks(path)

    def poll(self):
        """Convert newly completed chunks of every stream.

        Returns
        -------
        int
            Number of new images.
        """
        new_images = 0
        for file_id, path in enumerate(self.paths):
            available = self._ready(path)
            if available <= self.chunks_done[file_id]:
                continue
            blocks = readers.iter_stream_blocks(path, chunks_per_block=self.shard_images,
                                                start_chunk=self.chunks_done[file_id],
                                                first_image=self.images_done[file_id])
            for raw in blocks:
                if self.index is None:
                    self.index = build_index(raw, self.options)
                if self.writer is None:
                    self.writer = _ShardWriter(self.folder, len(self.index), self.shard_images)
                table, report = make_observations(raw, self.index, file_id, self.file_offsets[file_id], self.options)
                self.report.merge(report)
                self.writer.add(table)
                self.chunks_done[file_id] += raw.n_chunks
                if len(raw.data):
                    added = int(raw.data["image"].max()) + 1 - self.images_done[file_id]
                    self.images_done[file_id] += max(added, 0)
                    new_images += max(added, 0)
        if new_images and self.writer is not None:
            self.writer.flush()
            self._write_manifest()
        return new_images

    def _write_manifest(self):
        np.save(os.path.join(self.folder, "counts.npy"), self.writer.counts)
        with open(os.path.join(self.folder, "manifest.json"), "w") as handle:
            json.dump(self.info, handle)

    @property
    def info(self):
        """The manifest dictionary of what has been converted."""
        inputs = [{"path": os.path.abspath(p), "file_id": i, "image_offset": self.file_offsets[i],
                   "n_images": self.images_done[i], "chunks": self.chunks_done[i]}
                  for i, p in enumerate(self.paths)]
        shards = self.writer.shards if self.writer else []
        return {
            "version": CACHE_VERSION, "key": "live", "inputs": inputs, "options": self.options.to_dict(),
            "index": self.index.to_config() if self.index else None,
            "columns": self.writer.columns if self.writer else [], "shards": shards,
            "n_images": int(max(self.file_offsets[i] + self.images_done[i] for i in range(len(self.paths)))),
            "n_obs": int(sum(s["n_obs"] for s in shards)),
            "stats": self.writer.stats if self.writer else {},
            "report": {"summary": self.report.summary(), "dropped": self.report.dropped},
        }

    @property
    def manifest(self):
        """A :class:`Manifest` of the data converted so far."""
        return Manifest(self.folder, self.info)

    @property
    def n_images(self):
        """Images converted so far."""
        return int(sum(self.images_done))
