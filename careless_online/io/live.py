"""A cache that grows while data are being collected.

:class:`LiveCache` follows its sources (see :mod:`careless_online.io.arrivals`):
growing CrystFEL streams, and folders or glob patterns into which unmerged MTZ
files or DIALS stills pairs keep arriving (for Laue data, unmerged MTZ files
with a per-spot wavelength only: :func:`followed_formats`).  :meth:`LiveCache.poll` converts
what completed since the last look (the chunks of each stream that have their
``End chunk`` line, the files that are ready) into new shards and returns the
number of new images; :attr:`LiveCache.manifest` is a
:class:`~careless_online.io.cache.Manifest` of everything converted so far,
usable by :class:`~careless_online.io.pipeline.ImageBatches` like any cache.

A look converts at most ``max_images`` images (whole files and stream
blocks; the first one always), so that a backlog found at the start (a
folder already full, a long stream) is converted over several looks with
training in between; :attr:`LiveCache.backlog` says what is left.

Image ids are handed out in the order images are converted, from 0 without
gaps, whatever the number of files: an id is below the number of images seen,
so it stays within int32 for up to 2**31 images.  The manifest records, per
input, the ``segments`` ``[first id, count]`` its images received and the
``source`` (number of the source that named it).
"""

import json
import os

import numpy as np

from careless_online.errors import InputError
from careless_online.io import readers
from careless_online.io.arrivals import Arrivals
from careless_online.io.sources import missing_folder
from careless_online.io.duplicates import RepeatFilter, repeat_lines
from careless_online.io.cache import CACHE_VERSION, Manifest, _ShardWriter
from careless_online.io.followed import FollowedStream
from careless_online.io.shards import npy_bytes, write_atomic
from careless_online.io.table import LoadReport, build_index, make_observations

#: Largest image id a shard column (int32) holds.
MAX_IMAGE_ID = 2**31 - 1
#: Images converted per look by default (a few minutes of conversion at most, then a round of training).
LOOK_IMAGES = 5000


def followed_formats(options):
    """The input formats a live cache follows: MTZ files only for Laue data (``options.laue``), else all."""
    return ("mtz",) if options.laue is not None else None


class LiveCache:
    """Incrementally converted inputs.

    Parameters
    ----------
    sources : list of str
        CrystFEL streams (they may still be growing, or not exist yet), MTZ or
        DIALS files, folders or glob patterns (see
        :class:`~careless_online.io.arrivals.Arrivals`).
    options : careless_online.io.table.TableOptions
        Must give ``dmin`` unless ``index`` is given (the reflections to
        estimate are fixed up front).
    folder : str
        Where shards and the manifest go (emptied of a previous manifest).
    index : ReflectionIndex, optional
        Use this index (e.g. a trained model's) instead of building one.
    shard_images : int
        Images per shard (and stream chunks converted per block).
    log : callable, optional
    max_images : int or None
        Most images converted per :meth:`poll` (whole files and stream
        blocks, so a look may go over by one of them); None: no limit.
    """

    def __init__(self, sources, options, folder, index=None, shard_images=500, log=None, max_images=LOOK_IMAGES):
        if options.dmin is None and index is None:
            raise InputError("live mode needs --dmin: the reflections to estimate are fixed before data arrive")
        if int(shard_images) < 1:
            raise ValueError(f"shard_images must be at least 1, got {shard_images}")
        if max_images is not None and int(max_images) < 1:
            raise ValueError(f"max_images must be at least 1, got {max_images}")
        self.max_images = None if max_images is None else int(max_images)
        self.backlog = {"files": 0, "stream_chunks": 0}
        self.arrivals = Arrivals(sources, formats=followed_formats(options))
        self.paths = list(self.arrivals.sources)
        self.options = options
        self.folder = folder
        self.index = index
        self.shard_images = int(shard_images)
        self.log = log or (lambda message: None)
        for missing in dict.fromkeys(filter(None, map(missing_folder, self.paths))):
            self.log(f"{missing}: no such folder yet; waiting for it to appear")
        self.inputs = []
        self._file_ids = {}
        self.next_image = 0
        self.writer = None
        self.report = LoadReport()
        self.repeats = RepeatFilter()
        self._followed = {}
        os.makedirs(folder, exist_ok=True)
        for name in os.listdir(folder):
            if name.endswith(".npz") or name in ("manifest.json", "counts.npy"):
                os.remove(os.path.join(folder, name))

    def _input(self, path, kind):
        """The manifest record of an input, created (with the next file id) on first use."""
        if path not in self._file_ids:
            self._file_ids[path] = len(self.inputs)
            self.inputs.append({"path": os.path.abspath(path), "file_id": len(self.inputs), "kind": kind,
                                "source": self.arrivals.source_of(path), "segments": [], "n_images": 0,
                                "chunks": 0})
        return self.inputs[self._file_ids[path]]

    def _add(self, raw, record, n_images):
        """Convert one file's or block's raw reflections; its images get the next ids."""
        if self.next_image + n_images > MAX_IMAGE_ID:
            raise InputError(f"more than {MAX_IMAGE_ID} images: image ids would overflow", raw.path)
        if self.index is None:
            self.index = build_index(raw, self.options)
        if self.writer is None:
            self.writer = _ShardWriter(self.folder, len(self.index), self.shard_images)
        table, report = make_observations(raw, self.index, record["file_id"], self.next_image, self.options)
        table, *dropped = self.repeats.drop(table)
        report.repeats(*dropped)
        for line in repeat_lines(report, raw.path):
            self.log(line)
        self.report.merge(report)
        self.writer.add(table)
        if n_images:
            record["segments"].append([self.next_image, int(n_images)])
            record["n_images"] += int(n_images)
            self.next_image += int(n_images)
        return int(n_images)

    def _full(self, new):
        """Whether this look has converted its share of images."""
        return self.max_images is not None and new >= self.max_images

    def _poll_stream(self, path, new):
        """Convert the complete chunks of a stream not read yet, while the look has room; returns images added.

        A stream truncated or replaced since the last look is read again from
        its first changed chunk (:mod:`careless_online.io.followed`), said in one line.
        """
        record = self._input(path, "stream")
        if not readers.stream_begun(path):  # created, its header not written yet
            return 0
        followed = self._followed.setdefault(path, FollowedStream(path))
        spans = readers.stream_chunk_spans(path)
        restart, message = followed.restart(spans)
        if restart is not None:
            self.log(message)
            record["chunks"] = restart
        added = 0
        if len(spans) > record["chunks"] and not self._full(new):
            for first in range(record["chunks"], len(spans), self.shard_images):
                block, digests, repeated = followed.new(spans[first:first + self.shard_images])
                if repeated:
                    self.log(f"{path}: {repeated} chunks identical to chunks read before skipped (not counted twice)")
                added += self._read_block(path, record, block) if block else 0
                followed.note(block, digests)
                record["chunks"] = first + min(self.shard_images, len(spans) - first)
                if self._full(new + added):
                    break
        self.backlog["stream_chunks"] += len(spans) - record["chunks"]
        return added

    def _read_block(self, path, record, spans):
        """Convert the chunks ``spans`` of a stream; returns the images added."""
        raw = readers.read_stream_block(path, spans, first_image=0)
        raw.data["BATCH"] += np.float32(record["n_images"])  # the crystal's position in the file
        return self._add(raw, record, raw.next_image)

    def _read_file(self, path):
        """Convert a ready MTZ file or DIALS pair; one that cannot be read is skipped until it changes."""
        options = self.options
        try:
            raw = readers.read_file(path, options.intensity_key, options.uncertainty_key, options.image_key)
        except InputError as err:
            self.arrivals.failed(path)
            self.log(f"skipped until it changes: {err}")
            return 0
        self.arrivals.taken(path)
        n_images = int(raw.data["image"].max()) + 1 if len(raw.data) else 0
        return self._add(raw, self._input(path, readers.file_format(path)), n_images)

    def poll(self):
        """Convert the newly completed stream chunks and the newly ready files.

        At most about ``max_images`` images are converted; what is left for
        later looks is counted in :attr:`backlog` (``files`` ready but not
        read, ``stream_chunks`` complete but not read).

        Returns
        -------
        int
            Number of new images.
        """
        ready = self.arrivals.poll()
        self.backlog = {"files": 0, "stream_chunks": 0}
        new = 0
        for path in self.arrivals.streams:
            new += self._poll_stream(path, new)
        for number, path in enumerate(ready):
            if self._full(new):  # the rest stay ready for the next look
                self.backlog["files"] = len(ready) - number
                break
            new += self._read_file(path)
        if new and self.writer is not None:
            self.writer.flush()
            self._write_manifest()
        return new

    def _write_manifest(self):
        write_atomic(os.path.join(self.folder, "counts.npy"), npy_bytes(self.writer.counts))
        write_atomic(os.path.join(self.folder, "manifest.json"), json.dumps(self.info).encode())

    @property
    def info(self):
        """The manifest dictionary of what has been converted."""
        # copies: a manifest taken now must not grow with later looks
        inputs = [dict(record, segments=[list(s) for s in record["segments"]],
                       image_offset=record["segments"][0][0] if record["segments"] else None)
                  for record in self.inputs]
        shards = list(self.writer.shards) if self.writer else []
        return {
            "version": CACHE_VERSION, "key": "live", "inputs": inputs, "options": self.options.to_dict(),
            "index": self.index.to_config() if self.index else None,
            "columns": self.writer.columns if self.writer else [], "shards": shards,
            "n_images": int(self.next_image),
            "n_obs": int(sum(s["n_obs"] for s in shards)),
            "stats": dict(self.writer.stats) if self.writer else {},
            "report": {"summary": self.report.summary(), "dropped": self.report.dropped},
        }

    @property
    def manifest(self):
        """A :class:`Manifest` of the data converted so far."""
        return Manifest(self.folder, self.info)

    @property
    def counts(self):
        """Observations per unique reflection so far (numpy int64; empty before any data)."""
        return self.writer.counts.copy() if self.writer is not None else np.zeros(0, dtype=np.int64)

    @property
    def n_images(self):
        """Images converted so far."""
        return int(self.next_image)
