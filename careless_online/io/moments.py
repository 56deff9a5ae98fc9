"""Running first and second moments of columns, accumulated block by block.

The cache keeps, per column, ``(n, sum x, sum x^2)`` in its manifest; metadata
standardization accumulates the same sums over the shards.  Then

    mean = sum x / n,    std = sqrt(max(sum x^2 / n - mean^2, 0)).
"""

import numpy as np


def accumulate(moments, values):
    """Add a block of ``values`` (``[n]`` or ``[n, m]``) to ``moments = (n, sum, sum of squares)``.

    Parameters
    ----------
    moments : tuple
        ``(n, s, ss)``: a count and sums (floats, or arrays of one per column).
    values : numpy.ndarray

    Returns
    -------
    tuple
        The updated ``(n, s, ss)``; sums are Python floats for 1-D ``values``.
    """
    values = np.asarray(values, dtype=np.float64)
    n, s, ss = moments
    block_s, block_ss = values.sum(axis=0), (values * values).sum(axis=0)
    if values.ndim == 1:
        block_s, block_ss = float(block_s), float(block_ss)
    return int(n) + len(values), s + block_s, ss + block_ss


def mean_std(moments):
    """``(mean, std)`` of accumulated ``(n, s, ss)`` (population std; 0 where the variance is not positive)."""
    n, s, ss = moments
    mean = np.asarray(s, dtype=np.float64) / max(n, 1)
    std = np.sqrt(np.maximum(np.asarray(ss, dtype=np.float64) / max(n, 1) - mean * mean, 0.0))
    return mean, std
