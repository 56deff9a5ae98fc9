"""Input files to shards: read each file (streams block by block), make observations, write shards."""

import math
import os
from contextlib import ExitStack

import numpy as np

from careless_online.errors import InputError
from careless_online.io import parallel, readers
from careless_online.io.duplicates import RepeatFilter, repeat_lines
from careless_online.io.manifest import CACHE_VERSION
from careless_online.io.reflections import ReflectionIndex
from careless_online.io.shards import _ShardWriter
from careless_online.io.table import LoadReport, TableOptions, build_index, make_observations
from careless_online.progress import progress_display

#: Stream chunks parsed per block (one task of a worker process).
STREAM_BLOCK_CHUNKS = 250

#: Bytes of a progress unit (the display counts megabytes of input read).
_MB = 1_000_000


class ReadProgress:
    """Progress of a conversion in megabytes of input read: a bar on a terminal, lines in a log.

    Parameters
    ----------
    paths : list of str
        The inputs; their sizes add up to the total.
    display : callable or None
        ``display(total, unit=...)`` returning an object with ``update``, ``close``
        and ``n`` (:func:`~careless_online.progress.progress_display`);
        None shows nothing.
    """

    def __init__(self, paths, display=progress_display):
        self.total = sum(os.path.getsize(path) for path in paths)
        self.read = 0
        self.display = None if display is None else display(math.ceil(self.total / _MB), unit="MB")

    def advance(self, n_bytes):
        """Count ``n_bytes`` more bytes read."""
        self.read += n_bytes
        if self.display is not None:
            self.display.update(int(self.read / _MB) - self.display.n)

    def close(self):
        """Show the whole input read and end the display."""
        self.advance(self.total - self.read)
        if self.display is not None:
            self.display.update(self.display.total - self.display.n)
            self.display.close()


def _stream_block_observations(path, spans, index_config, options_dict, file_id):
    """Parse one stream block and make its observation rows (a worker's job).

    Image ids and ``BATCH`` count from 0 at the block's first crystal; the caller shifts them.

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


def _check_spacegroup(raw, index, options, path):
    """Refuse a file whose own space group differs from the merge's (unless one is forced)."""
    if raw.spacegroup is not None and options.spacegroup is None:
        if raw.spacegroup.xhm() != index.spacegroup.xhm():
            raise InputError(
                f"space group {raw.spacegroup.xhm()} differs from {index.spacegroup.xhm()} of the merge; "
                "merge it in a separate run, or force one space group with --spacegroups", path)


def _file_observations(path, file_id, options, index, block_chunks, pool, ahead):
    """Observation tables of one input file, block by block.

    Yields
    ------
    index : ReflectionIndex
        That given, or the one built from the file's first block.
    table : pandas.DataFrame
        Image ids count from 0 at the block's first image; ``BATCH`` is the
        image's number in the file (a stream's crystal position from 0).
    report : LoadReport
    n_images : int
        Images (crystals) the block spans.
    n_bytes : int
        Bytes of the file the block spans (the whole file when it is read at once).
    """
    if readers.file_format(path) != "stream":
        raw = readers.read_file(path, options.intensity_key, options.uncertainty_key, options.image_key)
        if index is None:
            index = build_index(raw, options)
        else:
            _check_spacegroup(raw, index, options, path)
        table, report = make_observations(raw, index, file_id, 0, options)
        yield index, table, report, int(raw.data["image"].max()) + 1 if len(raw.data) else 0, os.path.getsize(path)
        return
    blocks = readers.stream_blocks(path, block_chunks)
    position = 0  # crystals of the file before the block
    if index is None:
        spans = blocks.pop(0)
        raw = readers.read_stream_block(path, spans)
        index = build_index(raw, options)
        table, report = make_observations(raw, index, file_id, 0, options)
        yield index, table, report, raw.next_image, _span_bytes(spans)
        position = raw.next_image
    tasks = [(path, spans, index.to_config(), options.to_dict(), file_id) for spans in blocks]
    results = parallel.ordered_results(pool, _stream_block_observations, tasks, ahead)
    for spans, (table, report, n_images) in zip(blocks, results):
        yield index, _positions_in_file(table, position), report, n_images, _span_bytes(spans)
        position += n_images


def _positions_in_file(table, first):
    """A stream block's table with ``BATCH`` the crystal's position in the file (0-based).

    A block is parsed on its own (maybe in another process) with its
    crystals counted from 0; ``first`` is the number of crystals of the file
    before the block.
    """
    if len(table) and first:
        table["BATCH"] += np.float32(first)
    return table


def block_chunks(shard_images):
    """Stream chunks per parsed block for shards of ``shard_images`` images."""
    return max(1, min(STREAM_BLOCK_CHUNKS, int(shard_images)))


def first_file_index(path, options, shard_images):
    """The reflection index :func:`convert` builds when given none: from the first block of ``path``.

    Reads the same data as :func:`convert` does (a stream's first block, any
    other file whole), so every worker of a multi-worker run that converts a
    later share of the inputs derives the same index.
    """
    if readers.file_format(path) == "stream":
        raw = readers.read_stream_block(path, readers.stream_blocks(path, block_chunks(shard_images))[0])
    else:
        raw = readers.read_file(path, options.intensity_key, options.uncertainty_key, options.image_key)
    return build_index(raw, options)


def report_record(report):
    """The manifest's record of a :class:`LoadReport`: summary line, drops by reason, damaged chunks."""
    return {"summary": report.summary(), "dropped": report.dropped, "damaged_chunks": report.damaged_chunks}


def _span_bytes(spans):
    """Bytes of a stream block: from its first chunk's start to its last chunk's end."""
    return spans[-1][1] - spans[0][0] if spans else 0


def convert(groups, options, index, folder, shard_images, workers, log, progress=False, first_file_id=0):
    """Read every input into shards under ``folder``.

    Parameters
    ----------
    groups : list of str
        Input files (see :func:`careless_online.io.cache.input_groups`).
    options : TableOptions
    index : ReflectionIndex or None
        Use this index, else build one from the first file.
    folder : str
    shard_images : int
    workers : int or None
        Stream-parsing processes (default :func:`parallel.default_workers`).
    log : callable
    progress : bool, optional
        Show the megabytes read (:class:`ReadProgress`): a bar on a terminal, lines in a log.
    first_file_id : int, optional
        ``file_id`` of ``groups[0]`` (a worker's share of a longer list of inputs).

    Returns
    -------
    dict
        The manifest, less ``key`` and ``inputs`` identities (the caller adds
        them), with the :class:`LoadReport` itself under ``load_report``.
    """
    report = LoadReport()
    repeats = RepeatFilter()
    writer = None
    inputs = []
    image_offset = 0
    chunks = block_chunks(shard_images)
    workers = parallel.default_workers() if workers is None else int(workers)
    pool = parallel.worker_pool(groups, workers)
    read = ReadProgress(groups, progress_display if progress else None)
    with ExitStack() as stack:
        if pool is not None:
            stack.enter_context(parallel.single_threaded_children())
            stack.callback(pool.shutdown, cancel_futures=True)
        for file_id, path in enumerate(groups, start=int(first_file_id)):
            n_file_images = 0
            file_report = LoadReport()
            for index, table, block_report, n_images, n_bytes in _file_observations(
                    path, file_id, options, index, chunks, pool, ahead=2 * workers):
                read.advance(n_bytes)
                if writer is None:
                    writer = _ShardWriter(folder, len(index), shard_images)
                if len(table):
                    table["image_id"] += np.int32(image_offset + n_file_images)
                n_file_images += n_images
                table, *dropped = repeats.drop(table)
                block_report.repeats(*dropped)
                file_report.merge(block_report)
                writer.add(table, path)
            if file_report.kept == 0:
                raise InputError(f"no usable observations ({file_report.summary()})", path)
            log(f"{path}: {file_report.summary()}")
            for line in repeat_lines(file_report, path):
                log(line)
            report.merge(file_report)
            inputs.append({"path": os.path.abspath(path), "size": os.path.getsize(path), "file_id": file_id,
                           "image_offset": image_offset, "n_images": n_file_images})
            image_offset += n_file_images
    read.close()
    writer.flush()
    return {
        "version": CACHE_VERSION, "inputs": inputs, "options": options.to_dict(),
        "index": index.to_config(), "columns": writer.columns, "shards": writer.shards,
        "n_images": int(image_offset), "n_obs": int(sum(s["n_obs"] for s in writer.shards)),
        "stats": writer.stats, "counts": writer.counts,
        "report": report_record(report), "load_report": report,
    }
