"""Process pool for parsing stream blocks in parallel, results kept in order."""

import multiprocessing
import os
from collections import deque
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager

from careless_online.io import readers

#: Streams smaller than this (bytes, all inputs together) are parsed in this process.
PARALLEL_MIN_BYTES = 64 * 2**20
_THREAD_VARIABLES = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")


def default_workers():
    """Processes used to parse streams: the usable CPU cores, at most 8."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:
        cores = os.cpu_count() or 1
    return max(1, min(8, cores))


def worker_pool(paths, workers, min_bytes=None):
    """A process pool of ``workers`` processes for parsing streams, or None where one would not pay.

    Parameters
    ----------
    paths : list of str
        The input files; only streams count towards ``min_bytes``.
    workers : int
    min_bytes : int, optional
        Fewest stream bytes worth a pool (default :data:`PARALLEL_MIN_BYTES`).
    """
    min_bytes = PARALLEL_MIN_BYTES if min_bytes is None else min_bytes
    if workers < 2:
        return None
    streams = [p for p in paths if readers.file_format(p) == "stream"]
    if sum(os.path.getsize(p) for p in streams) < min_bytes:
        return None
    return ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn"))


def ordered_results(pool, function, tasks, ahead):
    """``function(*task)`` for each task, in order, at most ``ahead`` running at once (in this process if no pool)."""
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


@contextmanager
def single_threaded_children():
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
