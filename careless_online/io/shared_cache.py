"""A cache built by the workers of a multi-worker run, each converting its share of the input files.

Every worker runs the same command on the same files, and the cache folder
lies on a file system all of them see (a shared file system: NFS, Lustre,
GPFS, or one machine's disk for local workers).  For ``W`` workers:

1. worker ``w`` converts a contiguous range of the input files
   (:func:`file_shares`, balanced by size) into its *part*,
   ``<cache>.parts/part-<w>-of-<W>/``, numbering its images from 0 and its
   files from their place in the whole list; a part is written under a
   temporary name and renamed once complete;
2. the chief (worker 0) waits for every part, then assembles the cache: it
   moves the parts' shards into one folder in file order, records for each
   shard the number of images of the earlier parts (``image_offset``, which
   :meth:`~careless_online.io.manifest.Manifest.load_shard` adds to the stored
   image ids), adds up the per-reflection counts, the column sums and the
   load reports, and writes the manifest;
3. the other workers wait for that manifest.

The cache is then the one a single process would have built: the same
image ids, file ids, shards of whole images, counts and statistics.  A wait
ends in a one-line :class:`WaitTimeout` when nothing it watches changes for
``timeout`` seconds (a worker that died or hangs), and a worker whose share
holds bad input leaves its error where the chief reports it at once.
"""

import dataclasses
import glob
import json
import os
import shutil
import time

import numpy as np

from careless_online.errors import InputError
from careless_online.io.convert import convert, first_file_index, report_record
from careless_online.io.manifest import Manifest, load_manifest
from careless_online.io.shards import npy_bytes, write_atomic
from careless_online.io.table import LoadReport


class WaitTimeout(InputError):
    """A worker of a multi-worker run waited too long for the others (one line, exit status 2)."""


@dataclasses.dataclass(frozen=True)
class Share:
    """This process's place among the workers that build a cache together.

    Attributes
    ----------
    rank : int
        0 for the chief, 1 .. count-1 for the others.
    count : int
        Number of workers.
    timeout : float
        Seconds a wait may see no change in what it watches before it fails.
    poll : float
        Seconds between looks.
    """

    rank: int
    count: int
    timeout: float = 600.0
    poll: float = 0.2

    def __post_init__(self):
        if not 0 <= int(self.rank) < int(self.count):
            raise ValueError(f"Share: rank must lie in [0, count) (got rank {self.rank} of {self.count})")
        if not float(self.timeout) > 0 or not float(self.poll) > 0:
            raise ValueError(f"Share: timeout and poll must be positive (got {self.timeout}, {self.poll})")


def file_shares(sizes, count):
    """Cut the input files into ``count`` contiguous ranges of about equal bytes.

    Parameters
    ----------
    sizes : list of int
        Bytes of each input file, in order.
    count : int
        Number of workers.

    Returns
    -------
    list of (int, int)
        ``(start, stop)`` of each worker's files; the ranges tile
        ``0 .. len(sizes)`` in order (some may be empty).  Range ``k`` ends
        where the running total of bytes comes nearest ``k / count`` of all
        (on a tie, after the file: one file goes to the chief).
    """
    ends = np.r_[0, np.cumsum(np.asarray(sizes, dtype=np.float64))]
    last = len(ends) - 1
    cuts = [0] + [last - int(np.argmin(np.abs(ends[::-1] - ends[-1] * k / count))) for k in range(1, count)]
    cuts = cuts + [len(sizes)]
    cuts = np.maximum.accumulate(cuts)
    return [(int(a), int(b)) for a, b in zip(cuts[:-1], cuts[1:])]


def part_folder(folder, rank, count):
    """Where worker ``rank`` of ``count`` leaves its part of the cache ``folder``."""
    return os.path.join(f"{folder}.parts", f"part-{rank}-of-{count}")


def _failed_path(part):
    return f"{part}.failed"


def build_part(groups, options, index, folder, share, shard_images, workers, log, progress=False):
    """Convert this worker's share of ``groups`` into its part of the cache ``folder``.

    A complete part left by an earlier attempt is kept.  Bad input is
    written beside the part (so the chief can report it) and raised.
    """
    sizes = [os.path.getsize(path) for path in groups]
    start, stop = file_shares(sizes, share.count)[share.rank]
    part = part_folder(folder, share.rank, share.count)
    if os.path.exists(os.path.join(part, "part.json")):
        return
    building = f"{part}.building-{os.getpid()}"
    shutil.rmtree(building, ignore_errors=True)
    if os.path.exists(_failed_path(part)):
        os.remove(_failed_path(part))  # left by an earlier attempt
    os.makedirs(building)
    try:
        info = _convert_share(groups, options, index, building, start, stop, shard_images, workers, log, progress)
    except InputError as err:
        write_atomic(_failed_path(part), str(err).encode())
        shutil.rmtree(building, ignore_errors=True)
        raise
    counts = info.pop("counts", None)
    if counts is not None:
        write_atomic(os.path.join(building, "counts.npy"), npy_bytes(counts))
    write_atomic(os.path.join(building, "part.json"), json.dumps(info).encode())
    os.rename(building, part)
    log(f"worker {share.rank}: converted input files {start + 1}-{stop} of {len(groups)}" if stop > start else
        f"worker {share.rank}: no input file to convert")


def _convert_share(groups, options, index, building, start, stop, shard_images, workers, log, progress):
    """The part record of files ``start .. stop - 1`` (with ``counts``), shards written to ``building``."""
    if start == stop:
        return {"inputs": [], "shards": [], "n_images": 0, "n_obs": 0, "stats": {}, "columns": None,
                "index": None, "load_report": dataclasses.asdict(LoadReport())}
    if index is None and start > 0:
        index = first_file_index(groups[0], options, shard_images)
    info = convert(groups[start:stop], options, index, building, shard_images, workers, log, progress,
                   first_file_id=start)
    info["load_report"] = dataclasses.asdict(info["load_report"])
    return info


def _signature(pattern):
    """What a wait watches: (path, size, mtime) of every file and folder matching ``pattern``, recursively."""
    found = []
    for top in glob.glob(pattern):
        for root, dirs, files in os.walk(top):
            for name in [*dirs, *files]:
                path = os.path.join(root, name)
                try:
                    stat = os.stat(path)
                except FileNotFoundError:
                    continue
                found.append((path, stat.st_size, stat.st_mtime_ns))
        found.append((top,))
    return sorted(found)


def wait_until(ready, watched, share, what, clock=time.monotonic, sleep=time.sleep):
    """Wait until ``ready()`` is true, failing when ``watched`` stops changing for ``share.timeout`` s.

    Parameters
    ----------
    ready : callable
        Returns a true value when the wait is over (returned).
    watched : str
        Glob pattern of the files whose changes show the others are working.
    share : Share
    what : str
        What is waited for, for the error message.

    Raises
    ------
    WaitTimeout
    """
    signature, changed = _signature(watched), clock()
    while True:
        result = ready()
        if result:
            return result
        if clock() - changed > share.timeout:
            raise WaitTimeout(f"worker {share.rank}: waited {share.timeout:g} s for {what} without any progress "
                              "(a worker stopped, or the cache folder is not on a file system all workers share; "
                              "see --worker-timeout)")
        sleep(share.poll)
        now = _signature(watched)
        if now != signature:
            signature, changed = now, clock()


def _part_ready(part, rank):
    """The part's record once complete; raises the error a failed worker left."""
    failed = _failed_path(part)
    if os.path.exists(failed):
        with open(failed) as handle:
            raise InputError(f"worker {rank}: {handle.read().strip()}")
    path = os.path.join(part, "part.json")
    if not os.path.exists(path):
        return None
    with open(path) as handle:
        return json.load(handle)


def _shifted(moments, offset):
    """Moments ``(n, sum x, sum x^2)`` of ``x + offset``: ``(n, s + n o, ss + 2 o s + n o^2)``."""
    n, s, ss = moments
    return n, s + n * offset, ss + 2 * offset * s + n * offset * offset


def _add_stats(total, stats, image_offset):
    """Add a part's column sums to ``total`` (its image ids shifted by ``image_offset``)."""
    for column, moments in stats.items():
        if column == "image_id":
            moments = _shifted(moments, image_offset)
        previous = total.get(column, (0, 0.0, 0.0))
        total[column] = [a + b for a, b in zip(previous, moments)]
    return total


def assemble(folder, parts, options, key, identities, version):
    """Write the cache ``folder`` from the workers' complete parts (the chief's job).

    Parameters
    ----------
    folder : str
    parts : list of (str, dict)
        Each part's folder and record, in worker order.
    options : TableOptions
    key, identities, version
        The cache key, the inputs' identities and the cache version, as in a
        single-process manifest.

    Returns
    -------
    Manifest
    """
    building = f"{folder}.building-{os.getpid()}"
    shutil.rmtree(building, ignore_errors=True)
    os.makedirs(building)
    filled = [(path, record) for path, record in parts if record["shards"]]
    columns = filled[0][1]["columns"]
    shards, inputs, stats, report, counts, offset = [], [], {}, LoadReport(), 0, 0
    for path, record in filled:
        if record["index"] != filled[0][1]["index"]:
            raise RuntimeError(f"the workers' parts of {folder} were built for different reflection indices")
        if sorted(record["columns"]) != sorted(columns):
            raise InputError("the input files do not all have the same columns; merge files with the same "
                             f"columns (files {record['inputs'][0]['path']} ... differ from the first)")
        for shard in record["shards"]:
            name = f"shard_{len(shards):05d}.npz"
            os.rename(os.path.join(path, shard["file"]), os.path.join(building, name))
            shards.append(dict(shard, file=name, image_offset=offset, first_image=shard["first_image"] + offset,
                               last_image=shard["last_image"] + offset))
        inputs += [dict(entry, image_offset=entry["image_offset"] + offset) for entry in record["inputs"]]
        stats = _add_stats(stats, record["stats"], offset)
        report.merge(LoadReport(**record["load_report"]))
        counts = counts + np.load(os.path.join(path, "counts.npy"))
        offset += record["n_images"]
    info = {"version": version, "inputs": inputs, "options": options.to_dict(), "index": filled[0][1]["index"],
            "columns": columns, "shards": shards, "n_images": int(offset),
            "n_obs": int(sum(s["n_obs"] for s in shards)), "stats": stats, "report": report_record(report),
            "key": key, "identities": identities}
    write_atomic(os.path.join(building, "counts.npy"), npy_bytes(counts))
    write_atomic(os.path.join(building, "manifest.json"), json.dumps(info).encode())
    os.rename(building, folder)
    shutil.rmtree(f"{folder}.parts", ignore_errors=True)
    return Manifest(folder, info)


def _intact(folder):
    """The manifest of ``folder`` if it is complete and its shards match their records, else None."""
    if not os.path.exists(os.path.join(folder, "manifest.json")):
        return None
    try:
        manifest = load_manifest(folder)
    except InputError:
        return None
    return None if manifest.damaged_shards() else manifest


def build_shared(groups, options, index, folder, share, shard_images, workers, log, key, identities, version,
                 progress=False):
    """Build the cache ``folder`` with the other workers (see the module's description).

    The chief must have removed a damaged cache before (as a single process
    does); the other workers reuse an intact one, else convert their share
    and wait for the chief's manifest.

    Returns
    -------
    Manifest
    """
    if not share.rank:
        build_part(groups, options, index, folder, share, shard_images, workers, log, progress)
        parts = []
        for rank in range(share.count):
            part = part_folder(folder, rank, share.count)
            record = wait_until(lambda: _part_ready(part, rank), f"{part}*", share,
                                f"worker {rank}'s share of the cache")
            parts.append((part, record))
        return assemble(folder, parts, options, key, identities, version)
    manifest = _intact(folder)
    if manifest is not None:
        log(f"reusing cache {folder}")
        return manifest
    build_part(groups, options, index, folder, share, shard_images, workers, log, progress)
    return wait_until(lambda: _intact(folder), f"{folder}*", share, "the chief's cache manifest")
