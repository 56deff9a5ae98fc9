"""The oracle merge: what a merger that knew every hidden correction would get.

The simulator knows, for every observation i of reflection h on image b, the
factor that multiplies ``|F(h)|²`` in the expected signal (see
:mod:`careless_online.simulate`)::

    c_i = K_b · exp(-B_b s_h² / 2) · p_i · P_i        (s_h² = 1/d_h² of the reference cell)

(image scale, image B-factor, partiality, including the Lorentz-like factor
and the image's own mosaicity when the simulation has them, polarization; the
random ``model_error`` is no correction and stays; the constant
``mean_counts / <|F|²>`` is left out: it rescales every reflection alike).
The oracle divides each observation by its own correction and takes the
inverse-variance weighted mean per unique reflection (Friedel mates apart)::

    J_h = Σ_i w_i I_i / c_i / Σ_i w_i,   w_i = c_i² / SIGI_i²,   SIGJ_h = (Σ_i w_i)^-1/2

and turns ``J`` into amplitudes by French-Wilson, exactly as the ``--naive``
baseline does with its per-image scales (:func:`careless_online.model.naive.french_wilson`).
No merger can know the corrections better, so its figures are the ceiling of
the benchmarks.

Command line::

    python -m careless_online.simulate.oracle BASE.mtz OUT.mtz [--dmin D]

where ``BASE.mtz`` is an unmerged MTZ written with ``--mtz-truth-columns``.
"""

import argparse

import numpy as np
import reciprocalspaceship as rs

from careless_online.cli.common import user_errors_exit
from careless_online.errors import InputError
from careless_online.io import writers
from careless_online.io.reflections import ReflectionIndex, map_to_asu
from careless_online.model.naive import french_wilson

#: Truth columns of the unmerged table that the oracle needs.
TRUTH_COLUMNS = ("I", "SIGI", "SCALE", "BFACTOR", "PARTIALITY", "POLARIZATION")


def true_correction(observations):
    """Each observation's hidden multiplicative correction ``c_i`` (see the module docstring).

    Parameters
    ----------
    observations : rs.DataSet
        Unmerged, indexed by the observed H, K, L, with the truth columns
        SCALE, BFACTOR, PARTIALITY and POLARIZATION.

    Returns
    -------
    numpy.ndarray of float64
    """
    missing = [c for c in TRUTH_COLUMNS if c not in observations.columns]
    if missing:
        raise InputError(f"the oracle needs the simulator's truth columns; missing {', '.join(missing)} "
                         "(simulate with --mtz-truth-columns)")
    hkl = observations.get_hkls().astype(float)
    s2 = 1.0 / np.asarray(observations.cell.calculate_d_array(hkl)) ** 2
    col = {c: observations[c].to_numpy(np.float64) for c in TRUTH_COLUMNS}
    return col["SCALE"] * np.exp(-col["BFACTOR"] * s2 / 2.0) * col["PARTIALITY"] * col["POLARIZATION"]


def oracle_intensities(observations, index):
    """Merged intensities of the observations divided by their true corrections.

    Parameters
    ----------
    observations : rs.DataSet
        As for :func:`true_correction`.
    index : careless_online.io.reflections.ReflectionIndex
        The unique reflections to merge into (anomalous: Friedel mates apart).

    Returns
    -------
    (numpy.ndarray, numpy.ndarray, numpy.ndarray)
        ``J``, ``SIGJ`` (NaN where unobserved) and the observation counts, each
        of length ``len(index)``.
    """
    c = true_correction(observations)
    asu, plus = map_to_asu(observations.get_hkls(), index.spacegroup)
    ids = index.lookup(asu, plus)
    keep = (ids >= 0) & (c > 0)
    ids, c = ids[keep], c[keep]
    intensity = observations["I"].to_numpy(np.float64)[keep]
    sigma = observations["SIGI"].to_numpy(np.float64)[keep]
    return weighted_mean(ids, intensity / c, np.square(sigma / c), len(index))


def weighted_mean(ids, values, variances, n):
    """Inverse-variance weighted mean per reflection id: ``(mean, sd, count)``, each ``[n]``, NaN where none.

    ``mean_h = Σ_i w_i x_i / Σ_i w_i``, ``sd_h = (Σ_i w_i)^-1/2``, ``w_i = 1 / variance_i``.
    """
    weight = 1.0 / variances
    total = np.bincount(ids, weight, minlength=n)
    with np.errstate(invalid="ignore", divide="ignore"):
        return (np.bincount(ids, weight * values, minlength=n) / total, 1.0 / np.sqrt(total),
                np.bincount(ids, minlength=n))


def oracle_merge(observations, dmin=None, anomalous=True):
    """The oracle's merged table (same columns as a ``careless_online mono`` merge).

    Parameters
    ----------
    observations : rs.DataSet
        As for :func:`true_correction`, with cell and space group.
    dmin : float, optional
        Resolution limit (default: the highest resolution observed).
    anomalous : bool
        Keep Friedel mates apart (``F(+)``, ``F(-)`` and their mean ``F``).

    Returns
    -------
    rs.DataSet
    """
    if dmin is None:
        dmin = float(np.min(observations.cell.calculate_d_array(observations.get_hkls().astype(float))))
    index = ReflectionIndex.from_cell(observations.cell, observations.spacegroup, float(dmin) * (1 - 1e-6),
                                      anomalous=anomalous)
    intensity, sigma, counts = oracle_intensities(observations, index)
    f, sigf = french_wilson(index, intensity, sigma)
    return writers.merged_table(index, f, sigf, counts)


def build_parser():
    """Arguments of ``python -m careless_online.simulate.oracle``."""
    p = argparse.ArgumentParser(prog="careless_online.simulate.oracle",
                                description="Merge simulated observations with their true corrections "
                                            "(the benchmarks' ceiling).")
    p.add_argument("unmerged", help="unmerged MTZ written by the simulator with --mtz-truth-columns")
    p.add_argument("out", help="merged MTZ to write")
    p.add_argument("--dmin", type=float, default=None, help="resolution limit (Å); default: all data")
    p.add_argument("--no-anomalous", action="store_true", help="merge Friedel mates together")
    return p


@user_errors_exit
def main(argv=None):
    """Run the oracle merge from the command line."""
    args = build_parser().parse_args(argv)
    try:
        observations = rs.read_mtz(args.unmerged)
    except (OSError, RuntimeError) as err:
        raise InputError(f"cannot read ({err})", args.unmerged) from None
    merged = oracle_merge(observations, args.dmin, anomalous=not args.no_anomalous)
    writers.write_mtz(merged, args.out)
    print(args.out)


if __name__ == "__main__":
    main()
