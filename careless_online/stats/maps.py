"""Anomalous difference maps with model phases, and the peaks in them.

The map coefficients are the anomalous differences ``F(+) - F(-)`` of
acentric reflections with the phase of the model's structure factor minus
90 degrees; the map (computed by gemmi) is put in units of its standard
deviation over the unit cell.
"""

import gemmi
import numpy as np
import pandas as pd
import reciprocalspaceship as rs
from scipy import ndimage

from careless_online.errors import DataError
from careless_online.stats.anomalous import anomalous_differences

#: Default selection of atoms whose peaks are reported.
DEFAULT_ELEMENTS = "S,SE,metals"

#: Keyword in an element list that selects every metal.
METALS = "metals"


def in_crystal_frame(structure, cell, spacegroup):
    """A copy of a model placed in a given unit cell and space group.

    Parameters
    ----------
    structure : gemmi.Structure
    cell : gemmi.UnitCell
    spacegroup : gemmi.SpaceGroup

    Returns
    -------
    gemmi.Structure
        A clone with ``cell`` and ``spacegroup`` and its symmetry images set up.
    """
    st = structure.clone()
    st.cell = gemmi.UnitCell(*cell.parameters)
    st.spacegroup_hm = spacegroup.xhm()
    st.setup_cell_images()
    return st


def model_phases(structure, ds):
    """Phases of the model's structure factors at the reflections of ``ds``.

    The model's X-ray density (gemmi's :class:`gemmi.DensityCalculatorX`, in
    the cell and space group of ``ds``) is Fourier transformed; blurring and
    sampling change amplitudes, not phases.

    Parameters
    ----------
    structure : gemmi.Structure
        The model (its first model is used).
    ds : reciprocalspaceship.DataSet
        Reflections indexed by H, K, L, with cell and space group.

    Returns
    -------
    numpy.ndarray of float, shape (len(ds),)
        Phases in degrees.
    """
    st = in_crystal_frame(structure, ds.cell, ds.spacegroup)
    calc = gemmi.DensityCalculatorX()
    calc.d_min = float(ds.compute_dHKL()["dHKL"].min())
    calc.rate = 1.5
    calc.set_refmac_compatible_blur(st[0])
    calc.set_grid_cell_and_spacegroup(st)
    calc.put_model_density_on_grid(st[0])
    coefficients = np.array(gemmi.transform_map_to_f_phi(calc.grid), copy=False)
    hkl = ds.get_hkls()
    shape = np.array(coefficients.shape)
    values = coefficients[tuple((hkl % shape).T)]
    return np.angle(values, deg=True)


def anomalous_map(merged, structure, column="F", sample_rate=3.0):
    """Anomalous difference map in units of its standard deviation.

    Parameters
    ----------
    merged : reciprocalspaceship.DataSet
        Merged data with ``column(+)`` and ``column(-)``.
    structure : gemmi.Structure
        The model that provides the phases.
    column : str, optional
        Amplitude column (without Friedel suffix).
    sample_rate : float, optional
        Map grid spacing is d_min / (2 * sample_rate) or finer (gemmi's rule).

    Returns
    -------
    gemmi.FloatGrid
        The map over the unit cell (mean 0, standard deviation 1).
    """
    differences = anomalous_differences(merged, column)
    if len(differences) == 0:
        raise DataError("no acentric reflection has both Friedel mates measured")
    coefficients = rs.DataSet({"DANO": differences["D" + column].to_numpy(dtype=float)},
                              index=differences.index, cell=merged.cell,
                              spacegroup=merged.spacegroup, merged=True)
    coefficients["DANO"] = coefficients["DANO"].astype("AnomalousDifference")
    phases = model_phases(structure, coefficients) - 90.0
    coefficients["PHANO"] = rs.DataSeries(phases, index=coefficients.index, dtype="Phase")
    grid = coefficients.to_gemmi().transform_f_phi_to_map("DANO", "PHANO", sample_rate=sample_rate)
    grid.normalize()
    return grid


def parse_elements(text):
    """Parse an element list such as ``"S,SE,metals"``.

    Parameters
    ----------
    text : str
        Comma-separated element symbols; the word ``metals`` adds all metals.

    Returns
    -------
    symbols : set of str
        Upper-case element symbols.
    metals : bool
        Whether every metal is selected.

    Raises
    ------
    ValueError
        For an unknown element symbol.
    """
    symbols, metals = set(), False
    for word in (w.strip() for w in text.split(",")):
        if not word:
            continue
        if word.lower() == METALS:
            metals = True
        elif gemmi.Element(word).atomic_number == 0:
            raise ValueError(f"unknown element {word!r}")
        else:
            symbols.add(word.upper())
    return symbols, metals


def select_atoms(structure, elements=DEFAULT_ELEMENTS):
    """Atoms of the first model whose element is selected.

    Parameters
    ----------
    structure : gemmi.Structure
    elements : str, optional
        See :func:`parse_elements`.

    Returns
    -------
    list of gemmi.CRA
    """
    symbols, metals = parse_elements(elements)
    return [cra for cra in structure[0].all()
            if cra.atom.element.name.upper() in symbols or (metals and cra.atom.element.is_metal)]


def _atom_label(cra):
    """A short label like ``A/MET 1/SD``."""
    return f"{cra.chain.name}/{cra.residue.name} {cra.residue.seqid.num}/{cra.atom.name}"


def atom_peaks(grid, atoms):
    """Map value at each atom (tricubic interpolation).

    Parameters
    ----------
    grid : gemmi.FloatGrid
        A map in sigma units.
    atoms : list of gemmi.CRA

    Returns
    -------
    pandas.DataFrame
        Columns ``atom``, ``element``, ``height_sigma``, ``x``, ``y``, ``z``.
    """
    rows = [{"atom": _atom_label(cra), "element": cra.atom.element.name,
             "height_sigma": grid.tricubic_interpolation(cra.atom.pos),
             "x": cra.atom.pos.x, "y": cra.atom.pos.y, "z": cra.atom.pos.z} for cra in atoms]
    return pd.DataFrame(rows, columns=["atom", "element", "height_sigma", "x", "y", "z"])


def _local_maxima(grid):
    """Grid positions and values of the local maxima, highest first."""
    values = np.array(grid, copy=False)
    is_max = (values == ndimage.maximum_filter(values, size=3, mode="wrap")) & (values > 0)
    index = np.argwhere(is_max)
    heights = values[is_max]
    order = np.argsort(heights)[::-1]
    fractions = index[order] / np.array(values.shape, dtype=float)
    return fractions, heights[order]


def _within(cell, references, pos, radius):
    """Whether any symmetry copy of ``pos`` is closer than ``radius`` to a reference."""
    return any(cell.find_nearest_image(ref, pos, gemmi.Asu.Any).dist() < radius
               for ref in references)


def other_peaks(grid, structure, atoms, n_peaks=5, exclude=2.0):
    """The highest map peaks away from the selected atoms.

    Symmetry-equivalent peaks are reported once.

    Parameters
    ----------
    grid : gemmi.FloatGrid
        A map in sigma units, with cell and space group.
    structure : gemmi.Structure
        The model (for the nearest atom of each peak).
    atoms : list of gemmi.CRA
        Atoms whose surroundings are excluded.
    n_peaks : int, optional
        Number of peaks to report.
    exclude : float, optional
        Peaks closer than this (Å, any symmetry copy) to ``atoms`` are skipped.

    Returns
    -------
    pandas.DataFrame
        Columns ``atom`` (``peak 1`` …), ``element`` (empty), ``height_sigma``,
        ``x``, ``y``, ``z``, ``nearest_atom`` and ``distance`` (Å).
    """
    st = in_crystal_frame(structure, grid.unit_cell, grid.spacegroup)
    cell, model = st.cell, st[0]
    search = gemmi.NeighborSearch(model, cell, max(exclude, 6.0)).populate()
    excluded = [cra.atom.pos for cra in atoms]
    accepted, rows = [], []
    for fraction, height in zip(*_local_maxima(grid)):
        if len(rows) >= n_peaks:
            break
        pos = cell.orthogonalize(gemmi.Fractional(*fraction))
        if _within(cell, excluded, pos, exclude) or _within(cell, accepted, pos, 1.0):
            continue
        accepted.append(pos)
        mark = search.find_nearest_atom(pos)
        nearest, distance = ("", np.nan)
        if mark is not None:
            cra = mark.to_cra(model)
            nearest = _atom_label(cra)
            distance = cell.find_nearest_image(cra.atom.pos, pos, gemmi.Asu.Any).dist()
        rows.append({"atom": f"peak {len(rows) + 1}", "element": "",
                     "height_sigma": float(height), "x": pos.x, "y": pos.y, "z": pos.z,
                     "nearest_atom": nearest, "distance": distance})
    return pd.DataFrame(rows, columns=["atom", "element", "height_sigma", "x", "y", "z",
                                       "nearest_atom", "distance"])


def anomalous_peak_table(merged, structure, elements=DEFAULT_ELEMENTS, n_peaks=5, exclude=2.0,
                         column="F", sample_rate=3.0):
    """Anomalous map peak heights at selected atoms and the highest other peaks.

    Parameters
    ----------
    merged : reciprocalspaceship.DataSet
        Merged data with ``column(+)`` and ``column(-)``.
    structure : gemmi.Structure
        Model in the same cell and origin as the data.
    elements : str, optional
        Atoms to report (see :func:`parse_elements`).
    n_peaks : int, optional
        Number of other peaks to report.
    exclude : float, optional
        Minimum distance (Å) of the other peaks from the selected atoms.
    column : str, optional
    sample_rate : float, optional

    Returns
    -------
    pandas.DataFrame
        Columns ``atom``, ``element``, ``height_sigma``, ``x``, ``y``,
        ``z``, ``nearest_atom``, ``distance``: the selected atoms first, then
        the other peaks.
    """
    grid = anomalous_map(merged, structure, column=column, sample_rate=sample_rate)
    atoms = select_atoms(structure, elements)
    at_atoms = atom_peaks(grid, atoms)
    others = other_peaks(grid, structure, atoms, n_peaks=n_peaks, exclude=exclude)
    frames = [f for f in (at_atoms, others) if len(f)]
    if not frames:
        return others
    return pd.concat(frames, ignore_index=True)[list(others.columns)]
