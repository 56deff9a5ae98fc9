"""On-disk cache of the observation table, in shards of whole images.

Input files are converted once into a folder of ``.npz`` shards (one array
per column, each shard holding whole images) and a ``manifest.json``.  The
training pipeline streams shards from disk, so memory is bounded by a shard,
not by the dataset.  A second run on the same inputs (same paths, sizes,
modification times and options) reuses the cache.

The manifest also keeps running sums of every metadata column (for
standardization) and the number of observations of each unique reflection.
"""

import hashlib
import json
import multiprocessing
import os
import shutil
from collections import deque
from concurrent.futures import ProcessPoolExecutor
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass

import numpy as np

from careless_online.errors import InputError
from careless_online.io import readers
from careless_online.io.reflections import ReflectionIndex
from careless_online.io.table import LoadReport, TableOptions, build_index, make_observations

CACHE_VERSION = 2
#: Stream chunks parsed per block (one task of a worker process).
STREAM_BLOCK_CHUNKS = 250
#: Streams smaller than this (bytes, all inputs together) are parsed in this process.
PARALLEL_MIN_BYTES = 64 * 2**20
_THREAD_VARIABLES = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")
#: Columns every shard has; every other shard column is candidate metadata.
CORE_COLUMNS = ("image_id", "file_id", "Hobs", "Kobs", "Lobs", "H", "K", "L", "plus", "refl_id", "I", "SigI")


@dataclass
class Manifest:
    """What a cache folder holds.

    Attributes
    ----------
    path : str
        The cache folder.
    info : dict
        The parsed ``manifest.json``.
    """

    path: str
    info: dict

    @property
    def index(self):
        """The :class:`ReflectionIndex` the cache was built for."""
        return ReflectionIndex.from_config(self.info["index"])

    @property
    def shards(self):
        """List of shard records (file, n_obs, n_images, image ids)."""
        return self.info["shards"]

    @property
    def n_images(self):
        """Number of images in the cache."""
        return int(self.info["n_images"])

    @property
    def n_obs(self):
        """Number of observations in the cache."""
        return int(self.info["n_obs"])

    @property
    def columns(self):
        """Names of the shard columns."""
        return list(self.info["columns"])

    @property
    def metadata_columns(self):
        """Columns usable as metadata (everything but the core columns)."""
        return [c for c in self.columns if c not in CORE_COLUMNS] + ["image_id", "file_id", "Hobs", "Kobs", "Lobs"]

    def counts(self):
        """Observations per unique reflection (numpy int64, one per reflection id)."""
        return np.load(os.path.join(self.path, "counts.npy"))

    def column_stats(self, name):
        """(mean, std) of a shard column over all observations."""
        stats = self.info["stats"].get(name)
        if stats is None:
            raise KeyError(name)
        n, s, ss = stats
        mean = s / max(n, 1)
        var = max(ss / max(n, 1) - mean * mean, 0.0)
        return mean, float(np.sqrt(var))

    def load_shard(self, i, columns=None):
        """Arrays of shard ``i`` as a dict (only ``columns`` if given)."""
        record = self.shards[i]
        with np.load(os.path.join(self.path, record["file"])) as npz:
            names = columns if columns is not None else npz.files
            return {name: npz[name] for name in names}

    def files(self):
        """Input files of the cache, in file_id order."""
        return [entry["path"] for entry in self.info["inputs"]]


def _fingerprint(paths, options, extra):
    items = []
    for path in paths:
        stat = os.stat(path)
        items.append([os.path.abspath(path), stat.st_size, int(stat.st_mtime_ns)])
    blob = json.dumps({"v": CACHE_VERSION, "inputs": items, "options": options, "extra": extra}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def input_groups(paths):
    """Group input paths into files to read (a DIALS pair counts once).

    Parameters
    ----------
    paths : list of str

    Returns
    -------
    list of str
        One path per input file; for DIALS pairs the ``.refl`` member.
    """
    seen, groups = set(), []
    for path in paths:
        kind = readers.file_format(path)
        key = readers.dials_pair(path)[1] if kind == "dials" else str(path)
        if key not in seen:
            seen.add(key)
            groups.append(key)
    return groups


def _stream_block_observations(path, spans, index_config, options_dict, file_id):
    """Parse one stream block and make its observation rows (a worker's job).

    Image ids count from 0 at the block's first crystal; the caller shifts them.

    Returns
    -------
    table : pandas.DataFrame
    report : LoadReport
    n_images : int
        Crystals in the block.
    """
    raw = readers.read_stream_block(path, spans)
    index = ReflectionIndex.from_config(index_config)
    table, report = make_observations(raw, index, file_id, 0, TableOptions(**options_dict))
    return table, report, raw.next_image


def _ordered_results(pool, function, tasks, ahead):
    """``function(*task)`` for each task, in order, at most ``ahead`` running at once."""
    if pool is None:
        for task in tasks:
            yield function(*task)
        return
    pending = deque()
    for task in tasks:
        pending.append(pool.submit(function, *task))
        if len(pending) >= ahead:
            yield pending.popleft().result()
    while pending:
        yield pending.popleft().result()


def _file_observations(path, file_id, options, index, block_chunks, pool, ahead):
    """Observation tables of one input file, block by block.

    Yields
    ------
    index : ReflectionIndex
        That given, or the one built from the file's first block.
    table : pandas.DataFrame
        Image ids count from 0 at the block's first image.
    report : LoadReport
    n_images : int
        Images (crystals) the block spans.
    """
    if readers.file_format(path) != "stream":
        raw = readers.read_file(path, options.intensity_key, options.uncertainty_key, options.image_key)
        if index is None:
            index = build_index(raw, options)
        elif raw.spacegroup is not None and options.spacegroup is None:
            if raw.spacegroup.xhm() != index.spacegroup.xhm():
                raise InputError(
                    f"space group {raw.spacegroup.xhm()} differs from {index.spacegroup.xhm()} of the merge; "
                    "use --separate-files or --spacegroups", path)
        table, report = make_observations(raw, index, file_id, 0, options)
        yield index, table, report, int(raw.data["image"].max()) + 1 if len(raw.data) else 0
        return
    blocks = readers.stream_blocks(path, block_chunks)
    if index is None:
        raw = readers.read_stream_block(path, blocks.pop(0))
        index = build_index(raw, options)
        table, report = make_observations(raw, index, file_id, 0, options)
        yield index, table, report, raw.next_image
    tasks = [(path, spans, index.to_config(), options.to_dict(), file_id) for spans in blocks]
    for table, report, n_images in _ordered_results(pool, _stream_block_observations, tasks, ahead):
        yield index, table, report, n_images


def _worker_pool(groups, workers):
    """A process pool of ``workers`` processes for parsing streams, or None where one would not pay."""
    if workers < 2:
        return None
    streams = [p for p in groups if readers.file_format(p) == "stream"]
    if sum(os.path.getsize(p) for p in streams) < PARALLEL_MIN_BYTES:
        return None
    return ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn"))


@contextmanager
def _single_threaded_children():
    """Make processes started inside the block use one BLAS/OpenMP thread each.

    Worker processes that each spin a full set of BLAS threads on a small
    machine run no faster together than one alone.
    """
    saved = {name: os.environ.get(name) for name in _THREAD_VARIABLES}
    for name in _THREAD_VARIABLES:
        os.environ.setdefault(name, "1")
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def default_workers():
    """Processes used to parse streams: the usable CPU cores, at most 8."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:
        cores = os.cpu_count() or 1
    return max(1, min(8, cores))


class _ShardWriter:
    """Accumulates observation tables and writes shards of whole images."""

    def __init__(self, folder, n_reflections, shard_images):
        self.folder = folder
        self.shard_images = shard_images
        self.pending = []
        self.pending_images = 0
        self.shards = []
        self.columns = None
        self.stats = {}
        self.counts = np.zeros(n_reflections, dtype=np.int64)

    def add(self, table):
        if len(table) == 0:
            return
        if self.columns is None:
            self.columns = list(table.columns)
        missing = [c for c in self.columns if c not in table]
        if missing:
            raise InputError(f"columns {', '.join(missing)} missing from a later input; merge files with the same columns")
        table = table[self.columns]
        self.pending.append(table)
        self.pending_images += table["image_id"].nunique()
        if self.pending_images >= self.shard_images:
            self.flush()

    def flush(self):
        if not self.pending:
            return
        import pandas as pd

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
        np.savez(os.path.join(self.folder, name), **arrays)
        images = arrays["image_id"]
        self.shards.append({
            "file": name, "n_obs": int(len(images)), "n_images": int(len(np.unique(images))),
            "first_image": int(images.min()), "last_image": int(images.max()),
        })
        for c in self.columns:
            if c in ("refl_id", "plus"):
                continue
            values = arrays[c].astype(np.float64)
            n, s, ss = self.stats.get(c, (0, 0.0, 0.0))
            self.stats[c] = (n + len(values), s + float(values.sum()), ss + float((values * values).sum()))
        self.counts += np.bincount(arrays["refl_id"], minlength=len(self.counts))


def _convert(groups, options, index, folder, key, shard_images, workers, log):
    """Read every input into shards under ``folder``; returns the manifest dict."""
    report = LoadReport()
    writer = None
    inputs = []
    image_offset = 0
    block_chunks = max(1, min(STREAM_BLOCK_CHUNKS, shard_images))
    workers = default_workers() if workers is None else int(workers)
    pool = _worker_pool(groups, workers)
    with ExitStack() as stack:
        if pool is not None:
            stack.enter_context(_single_threaded_children())
            stack.callback(pool.shutdown, cancel_futures=True)
        for file_id, path in enumerate(groups):
            n_file_images = 0
            file_report = LoadReport()
            for index, table, block_report, n_images in _file_observations(
                    path, file_id, options, index, block_chunks, pool, ahead=2 * workers):
                if writer is None:
                    writer = _ShardWriter(folder, len(index), shard_images)
                if len(table):
                    table["image_id"] += np.int32(image_offset + n_file_images)
                n_file_images += n_images
                file_report.merge(block_report)
                writer.add(table)
            if file_report.kept == 0:
                raise InputError(f"no usable observations ({file_report.summary()})", path)
            log(f"{path}: {file_report.summary()}")
            report.merge(file_report)
            stat = os.stat(path)
            inputs.append({"path": os.path.abspath(path), "size": stat.st_size, "file_id": file_id,
                           "image_offset": image_offset, "n_images": n_file_images})
            image_offset += n_file_images
    writer.flush()
    np.save(os.path.join(folder, "counts.npy"), writer.counts)
    return {
        "version": CACHE_VERSION, "key": key, "inputs": inputs, "options": options.to_dict(),
        "index": index.to_config(), "columns": writer.columns, "shards": writer.shards,
        "n_images": int(image_offset), "n_obs": int(sum(s["n_obs"] for s in writer.shards)),
        "stats": writer.stats, "report": {"summary": report.summary(), "dropped": report.dropped},
    }


def build_cache(paths, options, cache_dir, shard_images=500, index=None, log=None, workers=None):
    """Convert input files into an on-disk cache (or reuse a matching one).

    Parameters
    ----------
    paths : list of str
        Input files (``.mtz``, ``.stream``, ``.expt``/``.refl``), merged jointly.
    options : TableOptions
    cache_dir : str
        Parent folder; the cache goes in a sub-folder named by a fingerprint of
        the inputs and options.
    shard_images : int
        Images per shard (streams are parsed in blocks of at most
        ``STREAM_BLOCK_CHUNKS`` chunks).
    index : ReflectionIndex, optional
        Use this reflection index (e.g. that of a trained model) instead of
        deriving one from the first file.
    log : callable, optional
        Called with progress messages.
    workers : int, optional
        Processes that parse stream blocks in parallel (default
        :func:`default_workers`; 1 parses in this process).  Only streams
        larger than ``PARALLEL_MIN_BYTES`` in all are parsed in parallel.

    Returns
    -------
    Manifest
    """
    log = log or (lambda message: None)
    groups = input_groups(paths)
    for path in groups:
        if not os.path.exists(path):
            raise InputError("no such file", path)
    extra = None if index is None else index.to_config()
    key = _fingerprint(groups, options.to_dict(), extra)
    folder = os.path.join(cache_dir, key)
    manifest_path = os.path.join(folder, "manifest.json")
    if os.path.exists(manifest_path):
        with open(manifest_path) as handle:
            log(f"reusing cache {folder}")
            return Manifest(folder, json.load(handle))
    os.makedirs(folder, exist_ok=True)
    try:
        info = _convert(groups, options, index, folder, key, shard_images, workers, log)
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)  # leave no half-built cache behind
        raise
    with open(manifest_path + ".tmp", "w") as handle:
        json.dump(info, handle)
    os.replace(manifest_path + ".tmp", manifest_path)
    return Manifest(folder, info)


def load_manifest(folder):
    """Open an existing cache folder.

    Raises
    ------
    InputError
        If the folder holds no valid manifest.
    """
    path = os.path.join(folder, "manifest.json")
    try:
        with open(path) as handle:
            return Manifest(folder, json.load(handle))
    except (OSError, json.JSONDecodeError) as err:
        raise InputError(f"not a careless_online cache ({err.__class__.__name__})", folder) from None
