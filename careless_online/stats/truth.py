"""A merge against known true amplitudes: resolution fall-off and honesty of SIGF.

Both figures need the truth, so they serve simulated data (benchmarks, tests)
and merges against a trusted reference.
"""

import numpy as np


def common_amplitudes(merged, truth):
    """Merged ``F``, ``SIGF`` and true ``F`` of the reflections both tables have.

    Parameters
    ----------
    merged : reciprocalspaceship.DataSet
        With ``F`` and ``SIGF``.
    truth : reciprocalspaceship.DataSet
        With ``F``.

    Returns
    -------
    (pandas.Index, numpy.ndarray, numpy.ndarray, numpy.ndarray)
        Miller indices, ``F``, ``SIGF`` and ``F_true`` (finite, ``SIGF > 0``).
    """
    joined = merged[["F", "SIGF"]].join(truth[["F"]].rename(columns={"F": "FTRUE"}), how="inner")
    f, sigf, ftrue = (joined[c].to_numpy(dtype=float) for c in ("F", "SIGF", "FTRUE"))
    ok = np.isfinite(f) & np.isfinite(sigf) & np.isfinite(ftrue) & (sigf > 0)
    return joined.index[ok], f[ok], sigf[ok], ftrue[ok]


def _shell_of(ds, index, edges):
    """Shell number (0 = lowest resolution) of each reflection ``index`` of ``ds`` by ``edges`` (Å)."""
    d = ds.loc[index].compute_dHKL()["dHKL"].to_numpy(dtype=float)
    edges = np.asarray(edges, dtype=float)
    return np.clip(np.searchsorted(-edges, -d, side="right") - 1, 0, len(edges) - 2), d


def fall_off(merged, truth, edges):
    """Shell means of merged ``F`` over shell means of true ``F``, and how flat they are.

    A merge that gets the resolution dependence of F right has the same ratio
    ``r_s = <F>_s / <F_true>_s`` in every shell ``s`` (its overall scale is
    arbitrary); its flatness is ``100 (max_s r_s - min_s r_s) / (max_s r_s + min_s r_s)``:
    the ratios lie within ± that many % of their mid-range.

    Parameters
    ----------
    merged, truth : reciprocalspaceship.DataSet
    edges : array of float
        Shell edges (Å), from low to high resolution (descending d).

    Returns
    -------
    dict
        ``shell_ratio`` (list of float, low to high resolution; empty shells
        left out) and ``ratio_flat_pct``.
    """
    index, f, _, ftrue = common_amplitudes(merged, truth)
    shell, _ = _shell_of(truth, index, edges)
    ratios = [float(f[shell == s].mean() / ftrue[shell == s].mean())
              for s in range(len(edges) - 1) if np.any(shell == s)]
    return {"shell_ratio": ratios,
            "ratio_flat_pct": 100.0 * (max(ratios) - min(ratios)) / (max(ratios) + min(ratios))}


def sigf_calibration(merged, truth):
    """rms z-score of the merged amplitudes against the truth.

    .. math:: z_h = \\frac{F_h - k F_{true,h}}{\\mathrm{SIGF}_h},\\qquad
              k = \\frac{\\sum_h F_h F_{true,h}}{\\sum_h F_{true,h}^2}

    ``rms z`` is 1 for honest uncertainties; larger means SIGF are too small
    by about that factor (errors the model does not account for), smaller that
    they are too large.

    Returns
    -------
    dict
        ``rms_z`` and ``k``.
    """
    _, f, sigf, ftrue = common_amplitudes(merged, truth)
    k = float(np.dot(f, ftrue) / np.dot(ftrue, ftrue))
    return {"rms_z": float(np.sqrt(np.mean(np.square((f - k * ftrue) / sigf)))), "k": k}


def scale_and_b(merged, reference, edges):
    """Overall scale k and B of merged ``F`` against reference ``F``: ``F ≈ k exp(-B s²/4) F_ref``.

    Fitted by least squares to the log of the shell ratios ``<F>_s / <F_ref>_s``
    against the shells' mean s² = 1/d², so that weak, noisy reflections do
    not dominate.

    Parameters
    ----------
    merged, reference : reciprocalspaceship.DataSet
        With ``F`` (``merged`` also ``SIGF``).
    edges : array of float
        Shell edges (Å), low to high resolution.

    Returns
    -------
    dict
        ``k``, ``B``, and per non-empty shell ``s2`` (mean s²), ``ratio``
        (``<F>/<F_ref>``) and ``ratio_after_b`` (ratio over the fit).
    """
    index, f, _, fref = common_amplitudes(merged, reference)
    shell, d = _shell_of(reference, index, edges)
    s2 = 1.0 / d ** 2
    used = [s for s in range(len(edges) - 1) if np.any(shell == s)]
    mean_s2 = np.array([s2[shell == s].mean() for s in used])
    ratio = np.array([f[shell == s].mean() / fref[shell == s].mean() for s in used])
    slope, intercept = np.polyfit(mean_s2, np.log(ratio), 1) if len(used) > 1 else (0.0, np.log(ratio[0]))
    fit = np.exp(intercept + slope * mean_s2)
    return {"k": float(np.exp(intercept)), "B": float(-4.0 * slope), "s2": mean_s2.tolist(),
            "ratio": ratio.tolist(), "ratio_after_b": (ratio / fit).tolist()}


def flatness_after_b(merged, truth, edges):
    """:func:`fall_off` after an overall scale and B (:func:`scale_and_b`).

    Returns
    -------
    dict
        ``shell_ratio_after_b`` (list, low to high resolution), ``ratio_flat_after_b_pct``
        (± % about the mid-range, as :func:`fall_off`) and ``fall_off_b`` (the fitted B, Å²).
    """
    fit = scale_and_b(merged, truth, edges)
    r = np.asarray(fit["ratio_after_b"])
    return {"shell_ratio_after_b": r.tolist(), "fall_off_b": fit["B"],
            "ratio_flat_after_b_pct": float(100.0 * (r.max() - r.min()) / (r.max() + r.min()))}


def sigf_calibration_by_shell(merged, truth, edges):
    """:func:`sigf_calibration` per resolution shell, after an overall scale and B.

    ``z_h = (F_h - k exp(-B s_h²/4) F_true,h) / SIGF_h`` with k and B of
    :func:`scale_and_b`, so that an overall B (which a merge may carry, and
    :func:`flatness_after_b` allows) is not counted as error; without it the
    same as :func:`sigf_calibration`'s z.

    Returns
    -------
    dict
        ``rms_z_shells`` and ``median_abs_z_shells`` (lists, low to high
        resolution; NaN for an empty shell).
    """
    fit = scale_and_b(merged, truth, edges)
    index, f, sigf, ftrue = common_amplitudes(merged, truth)
    shell, d = _shell_of(truth, index, edges)
    z = (f - fit["k"] * np.exp(-fit["B"] / (4.0 * d ** 2)) * ftrue) / sigf
    rms, median = [], []
    for s in range(len(edges) - 1):
        zs = z[shell == s]
        rms.append(float(np.sqrt(np.mean(zs ** 2))) if len(zs) else float("nan"))
        median.append(float(np.median(np.abs(zs))) if len(zs) else float("nan"))
    return {"rms_z_shells": rms, "median_abs_z_shells": median}


def strongest_error(merged, reference, edges, n=20):
    """Largest relative error of the ``n`` strongest reference reflections after an overall scale and B.

    ``max_h |F_h / (k exp(-B s_h²/4) F_ref,h) - 1|`` over the ``n`` largest
    ``F_ref`` that both tables have, with k and B of :func:`scale_and_b`.

    Parameters
    ----------
    merged, reference : reciprocalspaceship.DataSet
        With ``F`` and ``SIGF`` (e.g. a merge and the oracle's merge of the same data).
    edges : array of float
    n : int

    Returns
    -------
    dict
        ``strongest_max_err`` (a fraction), ``strongest_errors`` (F/F_fit - 1
        of each, strongest first) and ``strongest_d`` (their resolution, Å).
    """
    fit = scale_and_b(merged, reference, edges)
    index, f, _, fref = common_amplitudes(merged, reference)
    top = np.argsort(-fref)[:n]
    d = reference.loc[index[top]].compute_dHKL()["dHKL"].to_numpy(dtype=float)
    errors = f[top] / (fit["k"] * np.exp(-fit["B"] / (4.0 * d ** 2)) * fref[top]) - 1.0
    return {"strongest_max_err": float(np.abs(errors).max()), "strongest_errors": errors.tolist(),
            "strongest_d": d.tolist()}
