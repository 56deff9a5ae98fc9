"""A plain baseline: per-image scale factors and a weighted average.

Each image ``b`` gets one scale ``g_b``, alternately refined by least squares
against the current merged intensities (``g_b = sum I_i J_h / sum J_h^2`` over
the image's observations) and used to merge (``J_h`` = inverse-variance
weighted mean of ``I_i / g_b``).  Amplitudes come from the merged intensities
by French-Wilson (``rs.algorithms.scale_merged_intensities``).  It streams
over the cache shards, so it needs memory for the unique reflections and
images only.  It is the reference a learned merge must beat, and the
``--naive`` mode of the command line.
"""

import numpy as np
import pandas as pd
import reciprocalspaceship as rs


def _passes(batches):
    for i in range(len(batches.manifest.shards)):
        arrays = batches.manifest.load_shard(i, ["image_id", "refl_id", "I", "SigI"])
        keep = batches.select(arrays["image_id"])
        yield {k: v[keep] for k, v in arrays.items()}


def _merge(batches, scales, n_reflections):
    num = np.zeros(n_reflections)
    den = np.zeros(n_reflections)
    for part in _passes(batches):
        g = scales[part["image_id"]]
        w = np.square(g / part["SigI"])
        num += np.bincount(part["refl_id"], w * part["I"] / g, minlength=n_reflections)
        den += np.bincount(part["refl_id"], w, minlength=n_reflections)
    with np.errstate(invalid="ignore", divide="ignore"):
        return num / den, 1.0 / np.sqrt(den)


def naive_merge(batches, n_reflections, n_images, cycles=4):
    """Merged intensities with per-image scales.

    Parameters
    ----------
    batches : careless_online.io.pipeline.ImageBatches
        The images to merge (its split is honoured).
    n_reflections : int
    n_images : int
        Upper bound on image ids.
    cycles : int
        Scale/merge cycles.

    Returns
    -------
    (numpy.ndarray, numpy.ndarray, numpy.ndarray)
        Merged ``I``, ``SIGI`` per unique reflection (NaN if unobserved) and
        the image scales.
    """
    scales = np.ones(n_images)
    for _ in range(cycles):
        merged, _ = _merge(batches, scales, n_reflections)
        ref = np.nan_to_num(merged)
        num = np.zeros(n_images)
        den = np.zeros(n_images)
        for part in _passes(batches):
            j = ref[part["refl_id"]]
            num += np.bincount(part["image_id"], part["I"] * j, minlength=n_images)
            den += np.bincount(part["image_id"], j * j, minlength=n_images)
        with np.errstate(invalid="ignore", divide="ignore"):
            new = num / den
        ok = np.isfinite(new) & (new > 0)
        scales = np.where(ok, new, 1.0)
        scales /= np.exp(np.mean(np.log(scales[ok]))) if ok.any() else 1.0
    merged, sigma = _merge(batches, scales, n_reflections)
    return merged, sigma, scales


def french_wilson(index, intensity, sigma):
    """Amplitudes from merged intensities (French-Wilson, via reciprocalspaceship).

    Parameters
    ----------
    index : ReflectionIndex
    intensity, sigma : array of float, shape (len(index),)

    Returns
    -------
    (numpy.ndarray, numpy.ndarray)
        ``F`` and ``SIGF`` (NaN where the intensity is missing).
    """
    ok = np.isfinite(intensity) & np.isfinite(sigma) & (sigma > 0)
    sign = np.where(index.plus, 1, -1)[:, None]
    hkl = index.hkl * sign
    ds = rs.DataSet({"H": hkl[ok, 0], "K": hkl[ok, 1], "L": hkl[ok, 2],
                     "I": intensity[ok], "SIGI": sigma[ok]},
                    cell=index.cell, spacegroup=index.spacegroup, merged=True)
    ds = ds.set_index(["H", "K", "L"]).astype({"I": "J", "SIGI": "Q"})
    out = rs.algorithms.scale_merged_intensities(ds, "I", "SIGI", mean_intensity_method="isotropic")
    f = np.full(len(index), np.nan)
    sigf = np.full(len(index), np.nan)
    f[ok] = out["FW-F"].to_numpy()
    sigf[ok] = out["FW-SIGF"].to_numpy()
    return f, sigf
