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
    d = truth.loc[index].compute_dHKL()["dHKL"].to_numpy(dtype=float)
    edges = np.asarray(edges, dtype=float)
    shell = np.clip(np.searchsorted(-edges, -d, side="right") - 1, 0, len(edges) - 2)
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
