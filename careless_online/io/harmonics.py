"""Harmonic bookkeeping of Laue spots: which reflections add up on one detector position.

A Laue spot lies on a central ray of reciprocal space.  Every reflection of
that ray is a multiple of its primary index ``h_1 = h / gcd(h)``, and
reflection ``n h_1`` diffracts onto the same spot at wavelength
``lambda_1 / n``, where ``lambda_1 = gcd(h) lambda`` is the ray's longest
wavelength.  A spot therefore records the sum of its harmonics

.. math::

    I_{spot} = \\sum_{n \\in N} I_{n h_1}, \\qquad
    N = \\{ n \\ge 1 : \\lambda_{lo} \\le \\lambda_1 / n \\le \\lambda_{hi},\\;
            d_{h_1} / n \\ge d_{min},\\; n h_1 \\text{ not absent} \\},

the orders whose wavelength lies in the beam's band and whose resolution is
inside the merge's limit, systematic absences left out.  Pure numpy (and
gemmi through reciprocalspaceship for the absences); no TensorFlow.
"""

import numpy as np
import reciprocalspaceship as rs

#: Relative tolerance of the band and resolution edges (float32 wavelengths of the input).
EDGE_TOLERANCE = 1e-6


def primary_rays(hkl, wavelength):
    """Primary index and longest wavelength of each spot's central ray.

    Parameters
    ----------
    hkl : array of int, shape (n, 3)
        Indices as written (any member of the ray; not all zero).
    wavelength : array of float, shape (n,)
        Wavelength of each spot (Angstrom).

    Returns
    -------
    primary : numpy.ndarray of int64, shape (n, 3)
        ``h / g`` with ``g = gcd(|h|, |k|, |l|)``.
    longest : numpy.ndarray of float64, shape (n,)
        ``lambda_1 = g lambda``.
    order : numpy.ndarray of int64, shape (n,)
        ``g``: the written index's order on its ray.
    """
    hkl = np.asarray(hkl, dtype=np.int64).reshape(-1, 3)
    g = np.gcd.reduce(np.abs(hkl), axis=1)
    if np.any(g == 0):
        raise ValueError("the Miller index 0,0,0 has no central ray")
    return hkl // g[:, None], np.asarray(wavelength, dtype=np.float64) * g, g


def order_range(longest, d_primary, band, dmin):
    """First and last harmonic order of each ray inside the band and the resolution limit.

    Parameters
    ----------
    longest : array of float, shape (n,)
        ``lambda_1`` of each ray.
    d_primary : array of float, shape (n,)
        Resolution of each primary index (Angstrom).
    band : (float, float)
        ``(lambda_lo, lambda_hi)``.
    dmin : float
        Resolution limit (Angstrom).

    Returns
    -------
    (numpy.ndarray, numpy.ndarray)
        int64 ``n_first = ceil(lambda_1 / lambda_hi)`` and
        ``n_last = min(floor(lambda_1 / lambda_lo), floor(d_1 / dmin))``;
        a ray without harmonics has ``n_last < n_first``.
    """
    low, high = band
    slack = 1.0 + EDGE_TOLERANCE
    first = np.maximum(np.ceil(np.asarray(longest) / (high * slack)), 1).astype(np.int64)
    by_band = np.floor(np.asarray(longest) * slack / low)
    by_resolution = np.floor(np.asarray(d_primary) * slack / dmin)
    return first, np.minimum(by_band, by_resolution).astype(np.int64)


def expand_harmonics(hkl, wavelength, cell, spacegroup, band, dmin):
    """The harmonics recorded on each spot.

    Parameters
    ----------
    hkl : array of int, shape (n, 3)
        Indices of the spots as written.
    wavelength : array of float, shape (n,)
        Wavelength of each spot (Angstrom).
    cell : gemmi.UnitCell
    spacegroup : gemmi.SpaceGroup
        Harmonics at its systematic absences are left out.
    band : (float, float)
        The beam's wavelength range ``(lambda_lo, lambda_hi)`` (Angstrom).
    dmin : float
        Resolution limit (Angstrom).

    Returns
    -------
    dict of numpy.ndarray
        One entry per harmonic, harmonics of a spot consecutive and in
        increasing order: ``spot`` (int64 row of ``hkl``), ``hkl`` (int32
        ``[m, 3]``, ``n h_1``), ``wavelength`` (float64, ``lambda_1 / n``) and
        ``order`` (int64 ``n``).  A spot whose harmonics are all outside the
        band, beyond ``dmin`` or absent has none.
    """
    primary, longest, _ = primary_rays(hkl, wavelength)
    d_primary = cell.calculate_d_array(primary.astype(np.int32)) if len(primary) else np.zeros(0)
    first, last = order_range(longest, d_primary, band, dmin)
    counts = np.maximum(last - first + 1, 0)
    spot = np.repeat(np.arange(len(counts)), counts)
    within = np.arange(len(spot)) - np.repeat(np.cumsum(counts) - counts, counts)
    order = first[spot] + within
    expanded = primary[spot] * order[:, None]
    present = ~np.asarray(rs.utils.is_absent(expanded, spacegroup), dtype=bool) if len(spot) else np.zeros(0, bool)
    return {"spot": spot[present], "hkl": expanded[present].astype(np.int32),
            "wavelength": longest[spot][present] / order[present], "order": order[present]}
