"""Warnings for settings the data cannot fill: a ``--dmin`` beyond every observation, a batch above the images."""

import numpy as np

#: Share of the reflections to estimate that may lie beyond the finest observation before ``--dmin`` is
#: said to be beyond the data (the last shell of a cut at the data's own limit is partly empty anyway).
EMPTY_SHARE = 0.05


def warn_dmin_beyond_data(manifest, dmin, log):
    """Warn (one line) when ``--dmin`` asks for reflections finer than any observation.

    Parameters
    ----------
    manifest : careless_online.io.cache.Manifest
        The converted data (its index reaches ``dmin``; its counts say which
        reflections were observed).
    dmin : float or None
        The ``--dmin`` given (None: the data's own limit, nothing to say).
    log : callable

    Returns
    -------
    float or None
        The share of the reflections beyond the finest observation when it
        warned, else None.
    """
    if dmin is None:
        return None
    d = manifest.index.dHKL
    observed = manifest.counts() > 0
    if not observed.any():
        return None
    finest = float(d[observed].min())
    empty = float(np.mean(d < finest))
    if empty <= EMPTY_SHARE:
        return None
    log(f"WARNING --dmin {dmin:g} A is beyond the data (finest observation {finest:.2f} A): {100 * empty:.0f}% "
        f"of the reflections to estimate have no observation; use --dmin {finest:.2f} or leave it out")
    return empty


def warn_batch_above_images(batch_images, n_images, log):
    """Warn (one line) when ``--batch-size`` is above the training images: every step then takes them all.

    Parameters
    ----------
    batch_images : int
    n_images : int
        Training images.
    log : callable

    Returns
    -------
    bool
        Whether it warned.
    """
    if batch_images <= n_images:
        return False
    log(f"WARNING --batch-size {batch_images} is above the {n_images} training images: every step takes all "
        f"{n_images} (use --batch-size {n_images} or less)")
    return True
