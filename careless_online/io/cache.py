"""On-disk cache of the observation table, in shards of whole images.

Input files are converted once into a folder of ``.npz`` shards (one array
per column, each shard holding whole images) and a ``manifest.json``.  The
training pipeline streams shards from disk, so memory is bounded by a shard,
not by the dataset.

The folder is named by a key of the inputs' identities (path, size,
modification time, a hash of head and tail; see
:mod:`careless_online.io.identity`), the table options and the cache
version, so a changed input or option gives a new cache.  A cache is built
in a temporary folder that is renamed into place once its manifest is
written: a folder with a manifest is complete.  A reused cache whose shards
no longer match their checksums is rebuilt.

The modules behind it: :mod:`~careless_online.io.manifest` (reading a
cache), :mod:`~careless_online.io.shards` (writing shards),
:mod:`~careless_online.io.convert` (files to shards),
:mod:`~careless_online.io.parallel` (stream parsing in worker processes), :mod:`~careless_online.io.shared_cache`
(a cache built by the workers of a multi-worker run together).
"""

import errno
import json
import os
import shutil

from careless_online.errors import InputError
from careless_online.io import readers
from careless_online.io.convert import convert
from careless_online.io.identity import cache_key, file_identity, refuse_duplicates
from careless_online.io.manifest import CACHE_VERSION, CORE_COLUMNS, Manifest, load_manifest
from careless_online.io.parallel import default_workers
from careless_online.io.shards import _ShardWriter, npy_bytes, write_atomic
from careless_online.io.shared_cache import build_shared

__all__ = ["build_cache", "input_groups", "load_manifest", "Manifest", "CACHE_VERSION", "CORE_COLUMNS",
           "_ShardWriter", "default_workers"]


def input_groups(paths):
    """Group input paths into files to read (a DIALS pair counts once).

    Parameters
    ----------
    paths : list of str

    Returns
    -------
    list of str
        One path per input file; for DIALS pairs the ``.refl`` member.

    Raises
    ------
    InputError
        For a file given twice (its images would count twice).
    """
    seen, groups = set(), []
    for path in paths:
        kind = readers.file_format(path)
        key = readers.dials_pair(path)[1] if kind == "dials" else str(path)
        real = os.path.realpath(key)
        if real in seen and kind != "dials":
            raise InputError("given twice: its images would count twice", path)
        if real not in seen:
            seen.add(real)
            groups.append(key)
    return groups


def _reuse(folder, log):
    """The complete cache in ``folder`` if it is intact, else None (and a damaged one is removed)."""
    if not os.path.exists(os.path.join(folder, "manifest.json")):
        return None
    try:
        manifest = load_manifest(folder)
    except InputError:
        damaged = [("manifest.json", "unreadable")]
    else:
        damaged = manifest.damaged_shards()
        if not damaged:
            log(f"reusing cache {folder}")
            return manifest
    log(f"cache {folder} is damaged ({damaged[0][0]}: {damaged[0][1]}); rebuilding it")
    shutil.rmtree(folder)
    return None


def _reuse_with_index(cache_dir, identities, options, index, log):
    """The cache the same inputs and options gave without an index, if its index is ``index``.

    A run that resumes (or starts from ``--model-in`` of a model trained on
    these data) passes the model's index; the cache of the first run was
    built from the data's own index, which is the same one when the model
    was made from these data: it is reused instead of converting again.
    """
    if index is None:
        return None
    folder = os.path.join(cache_dir, cache_key(identities, options.to_dict(), None, CACHE_VERSION))
    if not os.path.exists(os.path.join(folder, "manifest.json")):
        return None
    try:
        same = load_manifest(folder).info.get("index") == index.to_config()
    except InputError:
        return None
    return _reuse(folder, log) if same else None


def _out_of_space(err, folder):
    if isinstance(err, OSError) and err.errno in (errno.ENOSPC, errno.EDQUOT):
        return InputError("no space left on the device while writing the cache; free space or give "
                          "--cache-dir on another disk (nothing was kept)", folder)
    return None


def _build(groups, options, index, folder, shard_images, workers, log, key, identities, progress):
    """Convert into ``folder + '.building-<pid>'`` and rename it to ``folder`` once complete."""
    building = f"{folder}.building-{os.getpid()}"
    shutil.rmtree(building, ignore_errors=True)
    try:
        os.makedirs(building)
        info = convert(groups, options, index, building, shard_images, workers, log, progress)
        write_atomic(os.path.join(building, "counts.npy"), npy_bytes(info.pop("counts")))
        info.pop("load_report")
        info["key"], info["identities"] = key, identities
        write_atomic(os.path.join(building, "manifest.json"), json.dumps(info).encode())
    except BaseException as err:
        shutil.rmtree(building, ignore_errors=True)  # leave no half-built cache behind
        full = _out_of_space(err, folder)
        if full is not None:
            raise full from None
        raise
    try:
        os.rename(building, folder)
    except OSError:  # another run finished the same cache first: use that one
        shutil.rmtree(building, ignore_errors=True)
        return load_manifest(folder)
    return Manifest(folder, info)


def build_cache(paths, options, cache_dir, shard_images=500, index=None, log=None, workers=None, progress=False,
                share=None):
    """Convert input files into an on-disk cache (or reuse a matching, intact one).

    Parameters
    ----------
    paths : list of str
        Input files (``.mtz``, ``.stream``, ``.expt``/``.refl``), merged jointly.
    options : TableOptions
    cache_dir : str
        Parent folder; the cache goes in a sub-folder named by a key of the
        inputs' identities and the options.
    shard_images : int
        Images per shard (streams are parsed in blocks of at most
        ``convert.STREAM_BLOCK_CHUNKS`` chunks).
    index : ReflectionIndex, optional
        Use this reflection index (e.g. that of a trained model) instead of
        deriving one from the first file.
    log : callable, optional
        Called with progress messages (including warnings about skipped
        damaged chunks and rebuilt caches).
    workers : int, optional
        Processes that parse stream blocks in parallel (default
        :func:`default_workers`; 1 parses in this process).  Only streams
        larger than ``parallel.PARALLEL_MIN_BYTES`` in all are parsed in parallel.
    progress : bool, optional
        Show the conversion's progress (megabytes of input read): a bar on a
        terminal, a line every 30 s in a log.
    share : careless_online.io.shared_cache.Share, optional
        This process's place among the workers of a multi-worker run that
        build the cache together, each converting its share of the files
        (``cache_dir`` on a file system they all see); None: this process
        converts everything.

    Returns
    -------
    Manifest

    Raises
    ------
    InputError
        For unreadable, damaged or duplicated inputs, column overrides that
        do not apply, and a full disk.
    """
    log = log or (lambda message: None)
    groups = input_groups(paths)
    for path in groups:
        for member in readers.dials_pair(path) if readers.file_format(path) == "dials" else [path]:
            readers.check_readable(member)
        readers.check_key_overrides(path, options.intensity_key, options.uncertainty_key, options.image_key)
    identities = [file_identity(path) for path in groups]
    refuse_duplicates(identities)
    # one process only: the workers of a cluster must all take the cache the chief builds under the shared key
    manifest = _reuse_with_index(cache_dir, identities, options, index, log) if share is None else None
    if manifest is not None:
        return manifest
    extra = None if index is None else index.to_config()
    key = cache_key(identities, options.to_dict(), extra, CACHE_VERSION)
    folder = os.path.join(cache_dir, key)
    manifest = _reuse(folder, log) if share is None or not share.rank else None
    if manifest is not None:
        return manifest
    try:
        os.makedirs(cache_dir, exist_ok=True)
    except OSError as err:
        raise InputError(f"cannot create the cache folder ({err.strerror or err})", cache_dir) from None
    if share is not None and share.count > 1:
        return build_shared(groups, options, index, folder, share, shard_images, workers, log, key, identities,
                            CACHE_VERSION, progress)
    return _build(groups, options, index, folder, shard_images, workers, log, key, identities, progress)
