"""Isomorphous difference maps and their positive and negative peaks.

The map coefficients are the (weighted) differences ``WDF`` of
:mod:`careless_online.stats.difference` with the phases of a reference
model (or given phases); the map, computed by gemmi, is put in units of its
standard deviation over the unit cell.  Peaks are found by
:func:`careless_online.stats.maps.other_peaks` (positive ones in the map,
negative ones in the negated map) and named by their nearest model atom.
"""

import gemmi
import numpy as np
import pandas as pd
import reciprocalspaceship as rs

from careless_online.stats.maps import model_phases, other_peaks


def difference_map(table, phases, column="WDF", sample_rate=3.0):
    """Difference map in units of its standard deviation.

    Parameters
    ----------
    table : reciprocalspaceship.DataSet
        Differences indexed by H, K, L, with cell and space group.
    phases : array-like
        Phase (degrees) of each row of ``table``.
    column : str
        Coefficient column (``WDF`` or ``DF``).
    sample_rate : float
        Grid spacing is d_min / (2 * sample_rate) or finer.

    Returns
    -------
    gemmi.FloatGrid
    """
    coefficients = rs.DataSet({"DF": table[column].to_numpy(dtype=float)}, index=table.index,
                              cell=table.cell, spacegroup=table.spacegroup, merged=True)
    coefficients["DF"] = coefficients["DF"].astype("F")
    coefficients["PHI"] = rs.DataSeries(np.asarray(phases, dtype=float), index=table.index, dtype="Phase")
    grid = coefficients.to_gemmi().transform_f_phi_to_map("DF", "PHI", sample_rate=sample_rate)
    grid.normalize()
    return grid


def phases_from_model(table, structure):
    """Phases (degrees) of a model's structure factors at the rows of ``table``."""
    return model_phases(structure, table)


def phases_from_mtz(table, phased, column="PHI"):
    """Phases (degrees) of ``table``'s reflections taken from another merged dataset.

    Rows without a phase there are dropped from ``table``.

    Returns
    -------
    (reciprocalspaceship.DataSet, numpy.ndarray)
        The rows kept and their phases.
    """
    joined = table.join(phased[[column]], how="inner")
    return joined[list(table.columns)], joined[column].to_numpy(dtype=float)


def write_ccp4(grid, path):
    """Write a map as a CCP4 file covering the unit cell."""
    ccp4 = gemmi.Ccp4Map()
    ccp4.grid = grid
    ccp4.update_ccp4_header()
    ccp4.write_ccp4_map(str(path))
    return str(path)


def _negated(grid):
    return gemmi.FloatGrid(-np.array(grid, copy=False), grid.unit_cell, grid.spacegroup)


def difference_peaks(grid, structure, n_peaks=10):
    """The highest positive and the deepest negative peaks, with their nearest atoms.

    Parameters
    ----------
    grid : gemmi.FloatGrid
        Difference map in sigma units.
    structure : gemmi.Structure
        Model naming the nearest atoms.
    n_peaks : int
        Peaks of each sign (symmetry copies and peaks within 1 Å of a
        reported one are skipped).

    Returns
    -------
    pandas.DataFrame
        Columns ``peak`` (``positive 1`` …, ``negative 1`` …), ``height_sigma``
        (negative for negative peaks), ``x``, ``y``, ``z``, ``nearest_atom``,
        ``distance`` (Å).
    """
    frames = []
    for sign, signed_grid in ((1, grid), (-1, _negated(grid))):
        peaks = other_peaks(signed_grid, structure, [], n_peaks=n_peaks)
        peaks["height_sigma"] = sign * peaks["height_sigma"]
        peaks["peak"] = [f"{'positive' if sign > 0 else 'negative'} {i + 1}" for i in range(len(peaks))]
        frames.append(peaks)
    table = pd.concat(frames, ignore_index=True)
    return table[["peak", "height_sigma", "x", "y", "z", "nearest_atom", "distance"]]


def atom_heights(grid, atoms):
    """Map value (sigma) at each of ``atoms`` (gemmi.Position list), tricubic."""
    return np.array([grid.tricubic_interpolation(pos) for pos in atoms])
