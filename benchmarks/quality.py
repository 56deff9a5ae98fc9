"""Quality of a merged MTZ against the simulator's truth, with careless_online's stats."""

import os

import numpy as np
import reciprocalspaceship as rs

from careless_online.io.layout import to_internal
from careless_online.stats import binning
from careless_online.stats.reference import cc_to_reference
from careless_online.stats.truth import fall_off, sigf_calibration


def with_mean_amplitude(ds):
    """Add ``F`` = mean of ``F(+)`` and ``F(-)`` (the one measured, if only one is) when missing.

    careless (and careless_online in its default column layout) and abismal
    write only Friedel-mate columns when merging anomalously.  Where the mates
    have uncertainties (careless's ``SigF(+)`` or ``SIGF(+)``), the file is
    read as careless_online's commands read it
    (:func:`careless_online.io.layout.to_internal`: inverse-variance weighted
    ``F, SIGF``, as careless_online writes them with ``--output-columns ccp4``);
    otherwise ``F`` is the plain mean of the measured mates.

    Parameters
    ----------
    ds : reciprocalspaceship.DataSet

    Returns
    -------
    reciprocalspaceship.DataSet
    """
    if "F" in ds.columns:
        return ds
    internal = to_internal(ds)
    if "F" in internal.columns:
        return internal
    mates = np.stack([ds["F(+)"].to_numpy(dtype=float), ds["F(-)"].to_numpy(dtype=float)])
    with np.errstate(invalid="ignore"), np.testing.suppress_warnings() as sup:
        sup.filter(RuntimeWarning)
        mean = np.nanmean(mates, axis=0)
    out = ds.copy()
    out["F"] = rs.DataSeries(mean, index=ds.index, dtype="SFAmplitude")
    return out


def truth_shell_edges(truth, shells=10):
    """Equal-count resolution shell edges (Å) of the truth, shared by all tools."""
    _, edges = binning.assign_shells(truth, shells)
    return edges


def peak_heights(merged, model_path, elements="Se"):
    """Mean anomalous-map height (σ) at the model's atoms of each element, and the highest other peak.

    Parameters
    ----------
    merged : reciprocalspaceship.DataSet
        With ``F(+)`` and ``F(-)``.
    model_path : str
        ``<base>_model.pdb`` of the simulator (phases and anomalous sites).
    elements : str, optional
        Comma-separated element symbols of the anomalous scatterers.

    Returns
    -------
    dict
        ``peaks`` (``{element: mean height}``), ``other_peak``, and
        ``se_peak`` (the first element's mean height, named as before).
    """
    import gemmi

    from careless_online.stats.maps import anomalous_peak_table

    table = anomalous_peak_table(merged, gemmi.read_structure(str(model_path)), elements=elements, n_peaks=1)
    names = [e.strip() for e in elements.split(",") if e.strip()]
    found = table["element"].astype(str).str.upper()
    peaks = {e: float(table.loc[found == e.upper(), "height_sigma"].mean()) for e in names}
    others = ~found.isin([e.upper() for e in names])
    return {"peaks": peaks, "se_peak": peaks[names[0]],
            "other_peak": float(table.loc[others, "height_sigma"].max())}


def merged_quality(merged_path, truth_path, shells=10, model_path=None, elements="Se"):
    """CC of F and of F(+)-F(-) with the truth, overall and in the highest-resolution shell.

    Parameters
    ----------
    merged_path : str
        Merged MTZ with ``F(+)``/``F(-)`` (and ``F``, else their mean is used).
    truth_path : str
        ``<base>_truth.mtz`` of the simulator.
    shells : int
        Equal-count shells of the truth.
    model_path : str, optional
        ``<base>_model.pdb`` of the simulator; adds :func:`peak_heights`.
    elements : str, optional
        Anomalous scatterers whose peaks :func:`peak_heights` measures.

    Returns
    -------
    dict
        ``cc_F``, ``cc_F_high``, ``cc_anom``, ``cc_anom_high``, ``n_F``,
        ``n_anom``, ``high_shell`` (d range of the last shell, Å),
        ``shell_table`` (list of dict rows), the figures of
        :func:`careless_online.stats.truth.fall_off` and
        :func:`careless_online.stats.truth.sigf_calibration` and, with ``model_path``, the
        :func:`peak_heights`.
    """
    merged = with_mean_amplitude(rs.read_mtz(str(merged_path)))
    truth = rs.read_mtz(str(truth_path))
    edges = truth_shell_edges(truth, shells)
    table = cc_to_reference(merged, truth, column="F", anomalous=True, bins=edges)
    last = binning.shell_labels(len(edges) - 1)[-2]
    overall = binning.OVERALL
    peaks = peak_heights(merged, model_path, elements) if model_path and os.path.exists(model_path) else {}
    return {
        **peaks, **fall_off(merged, truth, edges), **sigf_calibration(merged, truth),
        "cc_F": float(table.loc[overall, "CC"]), "cc_F_high": float(table.loc[last, "CC"]),
        "cc_anom": float(table.loc[overall, "CCanom"]), "cc_anom_high": float(table.loc[last, "CCanom"]),
        "n_F": int(table.loc[overall, "n"]), "n_anom": int(table.loc[overall, "n_anom"]),
        "high_shell": f"{table.loc[last, 'd_max']:.2f}-{table.loc[last, 'd_min']:.2f}",
        "shell_table": table.reset_index().to_dict(orient="records"),
    }
