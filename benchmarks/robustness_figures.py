"""Figures of one merge of the robustness matrix, and its verdict against the done-when thresholds of issue 20.

Per merge (against the simulator's truth, 10 equal-count shells of the truth):
CC(F) overall and per shell; CCanom to the true anomalous differences; the
anomalous-map peak height at each anomalous element's atoms; mean F/F_true per
shell after an overall scale and B (and its flatness, ± %); SIGF rms z and
median |z| per shell; the 20 strongest reflections' largest relative error
against the oracle's merge (after an overall scale and B).  Relative figures
(% of the oracle, margin over naive) come from the rows of the same
configuration.
"""

import math

import numpy as np
import reciprocalspaceship as rs

from careless_online.stats import binning
from careless_online.stats.truth import flatness_after_b, sigf_calibration_by_shell, strongest_error
from quality import merged_quality, truth_shell_edges, with_mean_amplitude

#: Number of equal-count resolution shells.
SHELLS = 10
#: Number of strongest reflections compared with the oracle.
STRONGEST = 20
#: Done-when thresholds of issue 20.
THRESHOLDS = {"cc_anom_pct": 90.0, "peak_pct": 90.0, "strongest_err": 0.03, "flat_pct": 3.0, "rms_z": 2.0}


def measure(merged_path, info, elements, oracle_path=None):
    """Every figure of one merged MTZ.

    Parameters
    ----------
    merged_path : str
    info : dict
        Dataset record (``paths`` with ``truth`` and ``model``).
    elements : str
        Comma-separated anomalous scatterers.
    oracle_path : str, optional
        The oracle's merge of the same data: reference of the strongest
        reflections (else the truth).

    Returns
    -------
    dict
    """
    truth_path = info["paths"]["truth"]
    row = merged_quality(merged_path, truth_path, shells=SHELLS, model_path=info["paths"].get("model"),
                         elements=elements)
    merged = with_mean_amplitude(rs.read_mtz(str(merged_path)))
    truth = rs.read_mtz(str(truth_path))
    edges = truth_shell_edges(truth, SHELLS)
    shells = [r for r in row["shell_table"] if r["shell"] != binning.OVERALL]
    row["cc_F_shells"] = [float(r["CC"]) for r in shells]
    row["cc_anom_shells"] = [float(r["CCanom"]) for r in shells]
    row.update(flatness_after_b(merged, truth, edges))
    row.update(sigf_calibration_by_shell(merged, truth, edges))
    row["rms_z_max"] = float(np.nanmax(row["rms_z_shells"]))
    row["median_abs_z_max"] = float(np.nanmax(row["median_abs_z_shells"]))
    reference = rs.read_mtz(str(oracle_path)) if oracle_path else truth
    row.update(strongest_error(merged, reference, edges, STRONGEST))
    row["strongest_reference"] = "oracle" if oracle_path else "truth"
    return row


def _pct(value, reference):
    if value is None or reference is None or not reference or math.isnan(reference) or math.isnan(value):
        return None
    return 100.0 * value / reference


def add_relative(rows):
    """Add the % of the oracle and the margin over naive to the rows of one configuration.

    ``cc_anom_pct_oracle``, ``peaks_pct_oracle`` (per element),
    ``peak_pct_min``, ``cc_F_minus_naive`` and ``cc_F_shell_margin`` (the
    smallest per-shell CC(F) difference to naive).
    """
    ok = [r for r in rows if "error" not in r]
    oracle = next((r for r in ok if r["tool"] == "oracle"), None)
    naive = next((r for r in ok if r["tool"] == "naive"), None)
    for row in ok:
        if oracle is not None:
            row["cc_anom_pct_oracle"] = _pct(row["cc_anom"], oracle["cc_anom"])
            row["peaks_pct_oracle"] = {e: _pct(h, oracle["peaks"].get(e)) for e, h in row.get("peaks", {}).items()}
            values = [v for v in row["peaks_pct_oracle"].values() if v is not None]
            row["peak_pct_min"] = min(values) if values else None
        if naive is not None:
            row["cc_F_minus_naive"] = row["cc_F"] - naive["cc_F"]
            row["cc_F_shell_margin"] = float(np.nanmin(np.subtract(row["cc_F_shells"], naive["cc_F_shells"])))
    return rows


def verdict(row):
    """Which done-when criteria a (non-oracle) row fails, after :func:`add_relative`.

    Returns
    -------
    list of str
        The failed criteria (empty: PASS).  A figure that could not be
        computed (no oracle or naive row) counts as failed.
    """
    t = THRESHOLDS
    checks = {
        f"CCanom<{t['cc_anom_pct']:.0f}%": (row.get("cc_anom_pct_oracle") or 0) >= t["cc_anom_pct"],
        f"peaks<{t['peak_pct']:.0f}%": (row.get("peak_pct_min") or 0) >= t["peak_pct"],
        "CC(F)<naive": (row.get("cc_F_minus_naive") is not None and row["cc_F_minus_naive"] >= 0
                        and row["cc_F_shell_margin"] >= 0),
        f"strongest>{100 * t['strongest_err']:.0f}%": row.get("strongest_max_err", math.inf) <= t["strongest_err"],
        f"flat>{t['flat_pct']:.0f}%": row.get("ratio_flat_after_b_pct", math.inf) <= t["flat_pct"],
        f"rms z>{t['rms_z']:.0f}": row.get("rms_z_max", math.inf) <= t["rms_z"],
    }
    return [name for name, passed in checks.items() if not passed]


def summarize(rows):
    """:func:`add_relative`, then the ``verdict`` column (``PASS``, ``FAIL: ...``, or ``ceiling`` for the oracle)."""
    add_relative(rows)
    for row in rows:
        if "error" in row:
            row["verdict"] = "error"
        elif row["tool"] == "oracle":
            row["verdict"] = "ceiling"
        else:
            failed = verdict(row)
            row["verdict"] = "PASS" if not failed else "FAIL: " + ", ".join(failed)
        row["peaks_text"] = " ".join(f"{e} {v:.0f}" for e, v in (row.get("peaks_pct_oracle") or {}).items()
                                     if v is not None) or None
    return rows
