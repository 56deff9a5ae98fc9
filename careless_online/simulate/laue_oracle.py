"""The Laue oracle merge: the simulated spots with every hidden correction divided out.

The Laue simulator (:mod:`careless_online.simulate.laue`) knows the factor
that multiplies ``|F_h|^2`` in the expected counts of harmonic ``j`` (index
``h_j``, wavelength ``lambda_j``, resolution ``d_j``) of a spot on image ``b``:

.. math::

    c_j = K_b \\, e^{-B_b / (2 d_j^2)} \\, \\Phi(\\lambda_j) \\, L(\\lambda_j, d_j)

(image scale and B, spectrum, Lorentz factor; the constant
``mean_counts / <|F|^2>`` is left out, it rescales every reflection alike).
A spot records the sum of its harmonics, ``E[I_s] = sum_{j in s} c_j J_{h_j}``
with ``J_h = |F_h|^2``, so the oracle solves the weighted least-squares problem

.. math::

    \\hat J = \\arg\\min_J \\sum_s \\Big( \\frac{I_s - \\sum_{j \\in s} c_j J_{h_j}}{\\sigma_s} \\Big)^2

over the unique reflections (Friedel mates apart), which deconvolves
harmonic spots as far as the data determine them (``J`` of a reflection
recorded only on spots shared with other orders comes from the spread of
their wavelength ratios over images).  For spots of one harmonic it is the
inverse-variance weighted mean of ``I_s / c_j``.  ``SIGJ_h = (sum_s c_{h,s}^2
/ sigma_s^2)^{-1/2}``, the diagonal of the normal matrix: exact for single
spots, a lower bound where spots are shared.  ``single_only`` merges only
the spots with one harmonic.  Amplitudes by French-Wilson, as the mono
oracle (:mod:`careless_online.simulate.oracle`).
"""

import numpy as np
import pandas as pd
import scipy.sparse
import scipy.sparse.linalg

from careless_online.io import writers
from careless_online.io.harmonics import expand_harmonics
from careless_online.io.reflections import ReflectionIndex, map_to_asu
from careless_online.model.naive import french_wilson
from careless_online.simulate.laue import lorentz, spectrum


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


def deconvolve(rows, intensity, sigma, ids, n):
    """Weighted least-squares ``J`` of ``n`` reflections from spots that sum harmonics.

    Parameters
    ----------
    rows : dict of numpy.ndarray
        :func:`harmonic_rows` (``spot``, ``correction``).
    intensity, sigma : numpy.ndarray
        ``I_s`` and ``sigma_s`` of every spot.
    ids : numpy.ndarray of int
        Reflection (0 .. n-1) of each row.
    n : int

    Returns
    -------
    (numpy.ndarray, numpy.ndarray, numpy.ndarray)
        ``J``, ``SIGJ`` (NaN where unobserved) and the spots of each reflection.
    """
    spots, row_spot = np.unique(rows["spot"], return_inverse=True)
    weight = 1.0 / sigma[spots]
    design = scipy.sparse.csr_matrix((rows["correction"] * weight[row_spot], (row_spot, ids)),
                                     shape=(len(spots), n))
    information = np.asarray(design.multiply(design).sum(axis=0)).ravel()
    observed = information > 0
    column_scale = np.where(observed, 1.0 / np.sqrt(np.where(observed, information, 1.0)), 0.0)
    solution = scipy.sparse.linalg.lsqr(design @ scipy.sparse.diags(column_scale), intensity[spots] * weight,
                                        atol=1e-10, btol=1e-10, iter_lim=5000)[0]
    return (np.where(observed, solution * column_scale, np.nan), np.where(observed, column_scale, np.nan),
            np.bincount(ids, minlength=n))


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
