"""The Laue oracle merge: the simulated spots with every hidden correction divided out.

The Laue simulator (:mod:`careless_online.simulate.laue`) knows the factor
that multiplies ``|F_h|^2`` in the expected counts of harmonic ``j`` (index
``h_j``, wavelength ``lambda_j``, resolution ``d_j``) of a spot on image ``b``:

.. math::

    c_j = K_b \\, e^{-B_b / (2 d_j^2)} \\, \\Phi(\\lambda_j) \\, L(\\lambda_j, d_j)

(image scale and B, spectrum, Lorentz factor; the constant
``mean_counts / <|F|^2>`` is left out, it rescales every reflection alike).
A spot records the sum of its harmonics, ``E[I_s] = sum_{j in s} c_j J_{h_j}``
with ``J_h = |F_h|^2``.  The oracle deconvolves as far as the corrections
allow, without any prior:

1. spots with one harmonic: ``J_h`` is the inverse-variance weighted mean of
   ``I_s / c_j`` (variance ``sigma_s^2 / c_j^2``);
2. then, repeatedly, every shared spot with exactly one harmonic still
   unknown gives it ``(I_s - sum_{k known} c_k J_k) / c_j``, with variance
   ``(sigma_s^2 + sum_k c_k^2 SIGJ_k^2) / c_j^2`` (merged by the same mean),
   until no spot adds a reflection.

Reflections only on spots with two or more unknowns are left out (a
weighted least-squares solve over all spots is ill-conditioned there: the
harmonics' wavelength ratio hardly changes between images).
``single_only`` stops after step 1.  Amplitudes by French-Wilson, as the
mono oracle (:mod:`careless_online.simulate.oracle`).
"""

import numpy as np
import pandas as pd

from careless_online.io import writers
from careless_online.io.harmonics import expand_harmonics
from careless_online.io.reflections import ReflectionIndex, map_to_asu
from careless_online.model.naive import french_wilson
from careless_online.simulate.laue import lorentz, spectrum
from careless_online.simulate.oracle import weighted_mean


def harmonic_rows(data):
    """Every harmonic of every simulated spot, with its true correction ``c_j``.

    Parameters
    ----------
    data : careless_online.simulate.laue.LaueData

    Returns
    -------
    dict of numpy.ndarray
        ``spot`` (row of ``data.spots``), ``hkl`` ``[m, 3]``, ``wavelength``,
        ``d``, ``correction`` (``c_j``) and ``n_harmonics`` (of the row's spot).
    """
    spots, config = data.spots, data.config
    rows = expand_harmonics(spots.get_hkls(), spots["Wavelength"].to_numpy(np.float64), spots.cell,
                            spots.spacegroup, config.band, config.dmin)
    d = np.asarray(spots.cell.calculate_d_array(rows["hkl"]), dtype=np.float64)
    images = data.images.set_index("BATCH")
    batch = spots["BATCH"].to_numpy()[rows["spot"]]
    scale, b_factor = (images[c].reindex(batch).to_numpy(np.float64) for c in ("scale", "B"))
    correction = (scale * np.exp(-0.5 * b_factor / np.square(d)) * spectrum(rows["wavelength"], config)
                  * lorentz(rows["wavelength"], d, config))
    n_harmonics = np.bincount(rows["spot"], minlength=len(spots))[rows["spot"]]
    return {**rows, "d": d, "correction": correction, "n_harmonics": n_harmonics}


def peel(rows, intensity, variance, ids, known):
    """Estimates from the spots with one harmonic of unknown ``J``: the known ones subtracted.

    Parameters
    ----------
    rows : dict of numpy.ndarray
        ``spot`` and ``correction`` of each harmonic row.
    intensity, variance : numpy.ndarray
        ``I_s`` and ``sigma_s^2`` of every spot.
    ids : numpy.ndarray of int
        Reflection of each row.
    known : (numpy.ndarray, numpy.ndarray)
        ``J`` and ``SIGJ`` of every reflection, NaN where unknown.

    Returns
    -------
    (numpy.ndarray, numpy.ndarray, numpy.ndarray)
        Rows whose reflection is the one unknown of its spot, their ``J``
        estimates ``(I_s - sum_k c_k J_k) / c_j`` and variances
        ``(sigma_s^2 + sum_k c_k^2 SIGJ_k^2) / c_j^2``.
    """
    j, sigj = known
    spot, c = rows["spot"], rows["correction"]
    unknown = ~np.isfinite(j[ids])
    n_spots = len(intensity)
    alone = np.bincount(spot, unknown, minlength=n_spots)[spot] == 1
    target = unknown & alone
    contribution = np.bincount(spot, np.where(unknown, 0.0, c * j[ids]), minlength=n_spots)
    spread = np.bincount(spot, np.where(unknown, 0.0, np.square(c * sigj[ids])), minlength=n_spots)
    s = spot[target]
    return target, (intensity[s] - contribution[s]) / c[target], (variance[s] + spread[s]) / np.square(c[target])


def deconvolve(rows, intensity, sigma, ids, n):
    """``J`` of ``n`` reflections from spots that sum harmonics, their corrections known.

    Single spots first (inverse-variance mean of ``I_s / c``); then, as long
    as that adds reflections, every shared spot with exactly one reflection
    still unknown gives it ``(I_s - sum_k c_k J_k) / c_j`` (:func:`peel`).
    Reflections only on spots with two or more unknowns stay unknown.

    Parameters
    ----------
    rows : dict of numpy.ndarray
        :func:`harmonic_rows` (``spot``, ``correction``, ``n_harmonics``).
    intensity, sigma : numpy.ndarray
        ``I_s`` and ``sigma_s`` of every spot.
    ids : numpy.ndarray of int
        Reflection (0 .. n-1) of each row.
    n : int

    Returns
    -------
    (numpy.ndarray, numpy.ndarray, numpy.ndarray)
        ``J``, ``SIGJ`` (NaN where unknown) and the spots that gave each.
    """
    variance = np.square(sigma)
    single = rows["n_harmonics"] == 1
    s, c = rows["spot"][single], rows["correction"][single]
    j, sigj, counts = weighted_mean(ids[single], intensity[s] / c, variance[s] / np.square(c), n)
    while True:
        target, values, variances = peel(rows, intensity, variance, ids, (j, sigj))
        if not target.any():
            return j, sigj, counts
        new_j, new_sigj, new_counts = weighted_mean(ids[target], values, variances, n)
        found = np.isfinite(new_j)
        j[found], sigj[found], counts[found] = new_j[found], new_sigj[found], new_counts[found]


def laue_oracle_merge(data, anomalous=True, single_only=False):
    """The oracle's merged table (columns of a ``careless_online poly`` merge).

    Parameters
    ----------
    data : careless_online.simulate.laue.LaueData
    anomalous : bool
        Friedel mates apart (``F(+)``, ``F(-)`` and their mean ``F``).
    single_only : bool
        Merge only spots with one harmonic (no deconvolution).

    Returns
    -------
    rs.DataSet
    """
    spots = data.spots
    rows = harmonic_rows(data)
    if single_only:
        rows = {key: value[rows["n_harmonics"] == 1] for key, value in rows.items()}
    index = ReflectionIndex.from_cell(spots.cell, spots.spacegroup, data.config.dmin * (1 - 1e-6),
                                      anomalous=anomalous)
    asu, plus = map_to_asu(rows["hkl"], spots.spacegroup)
    ids = index.lookup(asu, plus)
    rows = {key: value[ids >= 0] for key, value in rows.items()}
    intensity, sigma = (spots[c].to_numpy(np.float64) for c in ("I", "SigI"))
    j, sigj, counts = deconvolve(rows, intensity, sigma, ids[ids >= 0], len(index))
    f, sigf = french_wilson(index, j, sigj)
    return writers.merged_table(index, f, sigf, counts)


def reflection_spots(data):
    """How each reflection (ASU, Friedel mates together) was recorded: on single spots or only shared.

    Parameters
    ----------
    data : careless_online.simulate.laue.LaueData

    Returns
    -------
    pandas.DataFrame
        Indexed by the ASU H, K, L: ``spots`` (harmonic rows of the
        reflection), ``single`` (of them on spots with one harmonic) and
        ``d``.  ``single == 0``: recorded only as a harmonic of a shared
        spot; ``single == spots``: never shared.
    """
    rows = harmonic_rows(data)
    asu, _ = map_to_asu(rows["hkl"], data.spots.spacegroup)
    frame = pd.DataFrame({"H": asu[:, 0], "K": asu[:, 1], "L": asu[:, 2], "single": rows["n_harmonics"] == 1,
                          "d": rows["d"]})
    return frame.groupby(["H", "K", "L"]).agg(spots=("single", "size"), single=("single", "sum"), d=("d", "first"))
