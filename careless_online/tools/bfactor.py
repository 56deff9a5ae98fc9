"""Wilson B of a data set and rescaling to a B factor (careless.bfactor, careless.apply_bfactor).

Wilson's law: the mean intensity in a thin shell falls as ``<I> = K exp(-B / (2 d^2))``,
so ``log <I>`` is a straight line in ``1/d^2`` of slope ``-B/2``.  The fit uses
equal-count shells of ``1/d^2`` and the shells' mean intensity, as careless.bfactor does.
Rescaling by ``B`` multiplies amplitudes by ``exp(-B / (4 d^2))`` and intensities by
``exp(-B / (2 d^2))`` (careless.apply_bfactor's convention: a positive B damps the high
resolution).
"""

from dataclasses import dataclass

import numpy as np
import reciprocalspaceship as rs

from careless_online.errors import DataError
from careless_online.stats.inputs import has_friedel_columns
from careless_online.tools.files import sigma_name

#: Fewest shells a straight line can be fitted to with an uncertainty.
MIN_SHELLS = 3

#: MTZ column types of amplitudes (and anomalous differences) and of intensities.
AMPLITUDE_TYPES, INTENSITY_TYPES = ("F", "G", "D"), ("J", "K")

#: Types of uncertainty columns (of amplitudes: L, of intensities: M, either: Q).
SIGMA_TYPES = ("Q", "L", "M")


@dataclass
class WilsonFit:
    """A Wilson plot and its straight line.

    Attributes
    ----------
    b, b_error : float
        ``B = -2 slope`` (Å²) and its standard error.
    intercept : float
        ``log K``.
    inverse_d2, log_mean_i : numpy.ndarray
        The shells' mean ``1/d^2`` and ``log <I>``.
    dmin : float
        Highest resolution used (Å).
    """

    b: float
    b_error: float
    intercept: float
    inverse_d2: np.ndarray
    log_mean_i: np.ndarray
    dmin: float


def intensities(ds):
    """``(dHKL, I, SigI)`` of every measured reflection of a merged or unmerged file.

    ``I`` and its sigma are taken when present (Friedel columns ``I(+)``, ``I(-)``
    stacked when there is no mean ``I``), otherwise ``F^2 + SigF^2`` from the amplitudes.

    Raises
    ------
    DataError
        When the file has neither intensities nor amplitudes with uncertainties.
    """
    for name, square in (("I", False), ("F", True)):
        if name not in ds.columns and has_friedel_columns(ds, name):
            ds = ds.stack_anomalous()
        sigma = sigma_name(ds, name)
        if name in ds.columns and sigma is not None:
            value, error = ds[name].to_numpy(float), ds[sigma].to_numpy(float)
            if square:
                value, error = value ** 2 + error ** 2, 2.0 * np.abs(value) * error
            d = ds.compute_dHKL()["dHKL"].to_numpy(float)
            keep = np.isfinite(value) & np.isfinite(error) & (error > 0)
            return d[keep], value[keep], error[keep]
    raise DataError("no intensities (I with SigI/SIGI) or amplitudes (F with SigF/SIGF) to fit")


def shell_means(d, intensity, sigma, bins):
    """Mean ``1/d^2``, ``I`` and ``I/SigI`` in ``bins`` equal-count shells of ``1/d^2`` (low resolution first)."""
    inverse_d2 = 1.0 / np.square(d)
    labels, _ = rs.utils.bin_by_percentile(inverse_d2, bins)
    labels = np.asarray(labels)
    shells = np.unique(labels)
    means = [(inverse_d2[labels == s].mean(), intensity[labels == s].mean(),
              np.mean(intensity[labels == s] / sigma[labels == s])) for s in shells]
    return np.array(means).reshape(-1, 3).T


def fit_wilson_b(d, intensity, sigma, bins=20, dmin=None, dmax=np.inf, isigi_cutoff=1.5):
    """Fit ``log <I> = log K - B / (2 d^2)`` to shell means.

    Parameters
    ----------
    d, intensity, sigma : array-like
        Resolution (Å), intensity and uncertainty of each reflection.
    bins : int
        Equal-count shells.
    dmin, dmax : float, optional
        Resolution range (Å); ``dmin`` overrides ``isigi_cutoff``.
    isigi_cutoff : float, optional
        Without ``dmin``: fit only the shells up to the last one whose mean
        ``I/SigI`` reaches this (careless.bfactor's automatic limit); None: all.

    Returns
    -------
    WilsonFit

    Raises
    ------
    DataError
        Fewer than :data:`MIN_SHELLS` shells with a positive mean intensity.
    """
    d, intensity, sigma = (np.asarray(a, dtype=float) for a in (d, intensity, sigma))
    keep = (d <= dmax) & (d >= (dmin or 0.0))
    d, intensity, sigma = d[keep], intensity[keep], sigma[keep]
    if len(d) < MIN_SHELLS * 2:
        raise DataError(f"{len(d)} reflections in the resolution range: too few for a Wilson plot")
    x, mean_i, isigi = shell_means(d, intensity, sigma, bins)
    if dmin is None and isigi_cutoff is not None:
        strong = np.flatnonzero(isigi >= isigi_cutoff)
        last = strong.max() + 1 if len(strong) else 0
        x, mean_i = x[:last], mean_i[:last]
    usable = mean_i > 0
    x, mean_i = x[usable], mean_i[usable]
    if len(x) < MIN_SHELLS:
        raise DataError(f"only {len(x)} resolution shells with a positive mean intensity "
                        f"{'and I/SigI >= ' + str(isigi_cutoff) if dmin is None and isigi_cutoff else ''}: "
                        "too few for a Wilson plot (lower -c/--isigi-cutoff or give -d/--dmin)")
    y = np.log(mean_i)
    slope, intercept = np.polyfit(x, y, 1)
    residual = y - (slope * x + intercept)
    slope_error = np.sqrt(np.sum(residual ** 2) / (len(x) - 2) / np.sum((x - x.mean()) ** 2))
    return WilsonFit(b=-2.0 * float(slope), b_error=2.0 * float(slope_error), intercept=float(intercept),
                     inverse_d2=x, log_mean_i=y, dmin=float(1.0 / np.sqrt(x.max())))


def column_powers(ds):
    """Power of ``exp(-B / (4 d^2))`` each rescaled column takes: 1 for amplitudes, 2 for intensities.

    Uncertainty columns follow the column they belong to (``SigF`` -> ``F``);
    other columns are not rescaled.
    """
    powers = {}
    types = {c: ds[c].dtype.mtztype for c in ds.columns if hasattr(ds[c].dtype, "mtztype")}
    for column, mtztype in types.items():
        if mtztype in AMPLITUDE_TYPES:
            powers[column] = 1
        elif mtztype in INTENSITY_TYPES:
            powers[column] = 2
    for column, mtztype in types.items():
        if mtztype in SIGMA_TYPES:
            for prefix in ("Sig", "SIG"):
                if column.startswith(prefix) and column[len(prefix):] in powers:
                    powers[column] = powers[column[len(prefix):]]
    return powers


def apply_b(ds, b):
    """A copy of ``ds`` with amplitudes times ``exp(-B/(4 d^2))`` and intensities times ``exp(-B/(2 d^2))``."""
    out = ds.copy()
    inverse_d2 = 1.0 / np.square(ds.compute_dHKL()["dHKL"].to_numpy(float))
    for column, power in column_powers(ds).items():
        factor = np.exp(-0.25 * power * b * inverse_d2)
        out[column] = (ds[column].to_numpy(float) * factor).astype(np.float32)
        out[column] = out[column].astype(ds[column].dtype)
    return out
