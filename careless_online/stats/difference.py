"""Isomorphous differences of two merged datasets on a common scale.

For reflections ``h`` measured in a reference (e.g. dark) and a state (e.g.
light) dataset:

1. **Common scale.** The state is put on the reference's scale by
   ``F_s' = k exp(-B s^2 / 4) F_s`` (``s^2 = 1/d^2``), ``k`` and ``B`` from a
   weighted straight-line fit of ``ln sqrt(<F_r^2> / <F_s^2>)`` against
   ``s^2`` over equal-count resolution shells (one shell: ``B = 0``).
2. **Differences.** ``DF = F_s' - F_r``,
   ``SIGDF = sqrt(SIGF_s'^2 + SIGF_r^2)``.
3. **Weights** (the Bayesian q-weighting of Ursby & Bourgeois in the
   closed form of Ren et al.):

   .. math::

      w_h = \\left(1 + \\frac{SIGDF_h^2}{\\langle SIGDF^2\\rangle}
                 + \\alpha \\frac{DF_h^2}{\\langle DF^2\\rangle}\\right)^{-1},

   normalized to a mean of 1; ``WDF = w DF``.  Noisy differences and
   outliers are down-weighted; ``alpha = 0`` keeps only the noise term.
"""

import numpy as np
import pandas as pd
import reciprocalspaceship as rs

from careless_online.errors import DataError

#: Default outlier weight ``alpha`` of the q-weights.
DEFAULT_ALPHA = 0.05

#: MTZ types of the columns written.
COLUMN_TYPES = {"F_REF": "F", "SIGF_REF": "Q", "F_STATE": "F", "SIGF_STATE": "Q",
                "DF": "F", "SIGDF": "Q", "W": "W", "WDF": "F"}


def common_reflections(state, reference, column="F", sigma_column="SIGF"):
    """Amplitudes of the reflections both datasets hold (finite, positive widths).

    Parameters
    ----------
    state, reference : reciprocalspaceship.DataSet
        Merged datasets indexed by the same ASU H, K, L.
    column, sigma_column : str

    Returns
    -------
    reciprocalspaceship.DataSet
        ``F_STATE, SIGF_STATE, F_REF, SIGF_REF`` with the reference's cell and
        space group, and ``dHKL``.

    Raises
    ------
    DataError
        If no reflection is in both.
    """
    pick = {column: "F", sigma_column: "SIGF"}
    left = state[[column, sigma_column]].rename(columns=lambda c: pick[c] + "_STATE")
    right = reference[[column, sigma_column]].rename(columns=lambda c: pick[c] + "_REF")
    joined = left.join(right, how="inner")
    values = joined.to_numpy(dtype=float)
    keep = np.all(np.isfinite(values), axis=1) & (values[:, 1] > 0) & (values[:, 3] > 0)
    joined = joined[keep]
    if len(joined) == 0:
        raise DataError("the two datasets have no reflection in common")
    ds = rs.DataSet(joined, cell=reference.cell, spacegroup=reference.spacegroup, merged=True)
    return ds.compute_dHKL()


def relative_scale(common, bins=10):
    """``(k, B)`` putting the state on the reference's scale (see the module docstring).

    Parameters
    ----------
    common : reciprocalspaceship.DataSet
        From :func:`common_reflections`.
    bins : int
        Equal-count resolution shells of the fit.

    Returns
    -------
    (float, float)
    """
    s2 = 1.0 / np.square(common["dHKL"].to_numpy(dtype=float))
    ref = np.square(common["F_REF"].to_numpy(dtype=float))
    state = np.square(common["F_STATE"].to_numpy(dtype=float))
    shells = np.array_split(np.argsort(s2), max(1, min(int(bins), len(s2) // 20)))
    x = np.array([s2[i].mean() for i in shells])
    y = np.array([0.5 * np.log(ref[i].sum() / state[i].sum()) for i in shells])
    n = np.array([len(i) for i in shells], dtype=float)
    if len(shells) < 2:
        return float(np.exp(y[0])), 0.0
    slope, intercept = np.polyfit(x, y, 1, w=np.sqrt(n))
    return float(np.exp(intercept)), float(-4.0 * slope)


def q_weights(df, sigdf, alpha=DEFAULT_ALPHA):
    """Weights of the differences (see the module docstring), mean 1.

    Parameters
    ----------
    df, sigdf : array-like
    alpha : float
        Outlier term (>= 0).

    Returns
    -------
    numpy.ndarray
    """
    if alpha < 0:
        raise ValueError(f"alpha must be >= 0, got {alpha}")
    df, sigdf = np.asarray(df, dtype=float), np.asarray(sigdf, dtype=float)
    w = 1.0 / (1.0 + np.square(sigdf) / np.mean(np.square(sigdf)) + alpha * np.square(df) / np.mean(np.square(df)))
    return w / w.mean()


def difference_table(state, reference, column="F", sigma_column="SIGF", alpha=DEFAULT_ALPHA, bins=10):
    """Scaled amplitudes, ``DF``, ``SIGDF``, weights ``W`` and ``WDF``.

    Parameters
    ----------
    state, reference : reciprocalspaceship.DataSet
    column, sigma_column : str
    alpha : float
    bins : int

    Returns
    -------
    (reciprocalspaceship.DataSet, dict)
        Indexed by H, K, L with :data:`COLUMN_TYPES`' columns, and the scale
        ``{"k": k, "B": B}`` applied to the state.
    """
    common = common_reflections(state, reference, column, sigma_column)
    k, b = relative_scale(common, bins)
    s2 = 1.0 / np.square(common["dHKL"].to_numpy(dtype=float))
    factor = k * np.exp(-b * s2 / 4.0)
    out = common[["F_REF", "SIGF_REF"]].copy()
    out["F_STATE"] = common["F_STATE"].to_numpy(dtype=float) * factor
    out["SIGF_STATE"] = common["SIGF_STATE"].to_numpy(dtype=float) * factor
    out["DF"] = out["F_STATE"] - out["F_REF"].to_numpy(dtype=float)
    out["SIGDF"] = np.hypot(out["SIGF_STATE"].to_numpy(dtype=float), out["SIGF_REF"].to_numpy(dtype=float))
    out["W"] = q_weights(out["DF"], out["SIGDF"], alpha)
    out["WDF"] = out["W"] * out["DF"]
    return out[list(COLUMN_TYPES)].astype(COLUMN_TYPES), {"k": k, "B": b}


def difference_halves_cc(state_halves, reference_halves, column="F", sigma_column="SIGF"):
    """CC1/2 of ``DF``: Pearson CC of the differences of half 0 and half 1.

    Parameters
    ----------
    state_halves, reference_halves : sequence of two reciprocalspaceship.DataSet
        The half-dataset merges of each dataset (same repeat).

    Returns
    -------
    float
    """
    halves = [difference_table(s, r, column, sigma_column)[0]["DF"] for s, r in zip(state_halves, reference_halves)]
    both = pd.concat(halves, axis=1, join="inner").to_numpy(dtype=float)
    if len(both) < 3:
        raise DataError("fewer than 3 reflections have differences in both halves")
    return float(np.corrcoef(both[:, 0], both[:, 1])[0, 1])
