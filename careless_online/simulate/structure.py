"""Atomic models and their structure factors, with anomalous scattering and bulk solvent.

F(h) = sum_j occ_j (f0_j(s) + f'_j + i f''_j) exp(-B_j s²/4) exp(2πi h·x_j),
summed over every atom of the unit cell (the asymmetric unit expanded by the
space group's operations), with s = 1/d and f0 from the IT92 coefficients;
optionally plus a Babinet bulk-solvent term -k_sol exp(-B_sol s²/4) F_N(h).
"""

from dataclasses import dataclass

import gemmi
import numpy as np
import reciprocalspaceship as rs

from careless_online.errors import InputError
from careless_online.simulate.config import (
    DEFAULT_CELL,
    DEFAULT_SPACEGROUP,
    element,
    parse_anomalous_atoms,
    resolve_cell,
)

#: Proportions of the light atoms of the random model (protein-like).
LIGHT_ATOMS = {"C": 0.64, "N": 0.18, "O": 0.18}

#: Largest number of (reflection, atom) terms evaluated at once.
_CHUNK_TERMS = 2_000_000


@dataclass
class AtomModel:
    """All atoms of one unit cell.

    Attributes
    ----------
    cell : gemmi.UnitCell
    spacegroup : gemmi.SpaceGroup
    frac : numpy.ndarray
        Fractional coordinates, shape (n, 3).
    elements : numpy.ndarray
        Element symbol of each atom, shape (n,).
    b : numpy.ndarray
        Isotropic B-factors (Å²), shape (n,).
    occ : numpy.ndarray
        Occupancies, shape (n,).
    """

    cell: gemmi.UnitCell
    spacegroup: gemmi.SpaceGroup
    frac: np.ndarray
    elements: np.ndarray
    b: np.ndarray
    occ: np.ndarray


def expand_to_cell(frac, spacegroup):
    """Apply every operation of ``spacegroup`` to fractional coordinates.

    Parameters
    ----------
    frac : numpy.ndarray
        Shape (n, 3).
    spacegroup : gemmi.SpaceGroup

    Returns
    -------
    numpy.ndarray
        Shape (n_ops * n, 3), operation-major, wrapped into [0, 1).
    """
    out = []
    for op in spacegroup.operations():
        rot = np.array(op.rot, dtype=float) / op.DEN
        tran = np.array(op.tran, dtype=float) / op.DEN
        out.append(frac @ rot.T + tran)
    return np.concatenate(out) % 1.0


def random_model(cell, spacegroup, n_atoms, anomalous_counts, b, rng, molecule_radius=0.0):
    """Random atoms in the asymmetric unit, expanded by symmetry.

    A uniform point of the unit cell is a uniform point of the asymmetric unit
    once the space group is applied, so coordinates are drawn in the cell.
    With ``molecule_radius`` > 0 the atoms of the asymmetric unit instead form
    one compact molecule: Cartesian offsets drawn from an isotropic Gaussian
    of rms radius ``molecule_radius`` (per axis ``molecule_radius / sqrt(3)``)
    about a centre drawn uniformly in the cell.

    Parameters
    ----------
    cell : gemmi.UnitCell
    spacegroup : gemmi.SpaceGroup
    n_atoms : int
        Light atoms per asymmetric unit (C, N, O as :data:`LIGHT_ATOMS`).
    anomalous_counts : dict
        ``{element: atoms per asymmetric unit}`` of the anomalous scatterers.
    b : float
        B-factor of every atom.
    rng : numpy.random.Generator
    molecule_radius : float, optional
        Rms radius (Å) of the molecule; 0: uniform atoms.

    Returns
    -------
    AtomModel
    """
    names = list(LIGHT_ATOMS)
    light = rng.choice(names, size=n_atoms, p=list(LIGHT_ATOMS.values()))
    heavy = [np.full(int(n), str(el)) for el, n in anomalous_counts.items()]
    elements = np.concatenate([light, *heavy])
    if molecule_radius > 0:
        offsets = rng.normal(scale=molecule_radius / np.sqrt(3.0), size=(len(elements), 3))
        frac = rng.uniform(size=3) + offsets @ np.array(cell.frac.mat).T
    else:
        frac = rng.uniform(size=(len(elements), 3))
    n_ops = len(spacegroup.operations())
    full = expand_to_cell(frac % 1.0, spacegroup)
    return AtomModel(cell, spacegroup, full, np.tile(elements, n_ops),
                     np.full(len(full), float(b)), np.ones(len(full)))


def read_model(path, cell=None, spacegroup=None):
    """Read the atoms of the first model of a coordinate file, expanded to the cell.

    Parameters
    ----------
    path : str
        PDB or mmCIF file readable by ``gemmi.read_structure``.
    cell, spacegroup : optional
        Override the file's cell (6 numbers; the atoms keep their fractional
        coordinates) and space-group symbol.

    Returns
    -------
    AtomModel
    """
    try:
        st = gemmi.read_structure(str(path))
    except (RuntimeError, ValueError) as err:
        raise InputError(f"cannot read coordinates ({err})", path=path) from None
    if len(st) == 0:
        raise InputError("no model in coordinate file", path=path)
    symbol = spacegroup or st.spacegroup_hm
    if not symbol:
        raise InputError("no space group in coordinate file; give --spacegroup", path=path)
    params = cell or (st.cell.a, st.cell.b, st.cell.c, st.cell.alpha, st.cell.beta, st.cell.gamma)
    uc, sg = resolve_cell(params, symbol)
    atoms = [cra.atom for cra in st[0].all()]
    if not atoms:
        raise InputError("no atoms in coordinate file", path=path)
    frac = np.array([st.cell.fractionalize(a.pos).tolist() for a in atoms])
    elements = np.array([a.element.name for a in atoms])
    for name in np.unique(elements):
        element(name)
    n_ops = len(sg.operations())
    return AtomModel(uc, sg, expand_to_cell(frac, sg), np.tile(elements, n_ops),
                     np.tile([a.b_iso for a in atoms], n_ops).astype(float),
                     np.tile([a.occ for a in atoms], n_ops).astype(float))


def write_model(model, path):
    """Write the asymmetric-unit atoms of a model as a PDB file (gemmi).

    The atoms of the first symmetry operation are written, one residue per
    atom (chain A, residue names ``ATM`` and, for anything but C, N, O,
    the element symbol), with the cell and space group, so that phases and
    heavy-atom sites can be taken from it (e.g. by
    ``careless_online.anomalous_peaks``).

    Parameters
    ----------
    model : AtomModel
    path : str
    """
    n_ops = len(model.spacegroup.operations())
    n = len(model.frac) // n_ops
    structure = gemmi.Structure()
    structure.cell = model.cell
    structure.spacegroup_hm = model.spacegroup.xhm()
    chain = gemmi.Chain("A")
    for i in range(n):
        symbol = str(model.elements[i])
        residue = gemmi.Residue()
        residue.name = "ATM" if symbol in LIGHT_ATOMS else symbol.upper()
        residue.seqid = gemmi.SeqId(i + 1, " ")
        residue.het_flag = "H"
        atom = gemmi.Atom()
        atom.name = symbol.upper()
        atom.element = gemmi.Element(symbol)
        atom.pos = model.cell.orthogonalize(gemmi.Fractional(*model.frac[i]))
        atom.b_iso = float(model.b[i])
        atom.occ = float(model.occ[i])
        residue.add_atom(atom)
        chain.add_residue(residue)
    pdb_model = gemmi.Model(1)
    pdb_model.add_chain(chain)
    structure.add_model(pdb_model)
    structure.setup_entities()
    structure.write_pdb(str(path))


def build_model(config, rng):
    """Build the atom model a :class:`SimulationConfig` asks for, and its anomalous terms.

    Returns
    -------
    tuple of (AtomModel, dict)
        The model and ``{element: (f', f'')}`` of its anomalous scatterers.
    """
    if config.pdb is not None:
        model = read_model(config.pdb, config.cell, config.spacegroup)
        anom = config.anomalous_element
        if anom is None:
            anom = "Se" if np.any(model.elements == "Se") else "S"
        return model, {anom: anomalous_terms(anom, config.wavelength, config.fprime, config.fpp)}
    cell, sg = resolve_cell(config.cell or DEFAULT_CELL, config.spacegroup or DEFAULT_SPACEGROUP)
    model = random_model(cell, sg, config.n_atoms, config.anomalous_counts(), config.atom_b, rng,
                         config.molecule_radius)
    if config.anomalous_atoms is not None:
        terms = {el: anomalous_terms(el, config.wavelength, fp, fpp)
                 for el, _, fpp, fp in parse_anomalous_atoms(config.anomalous_atoms)}
    else:
        anom = config.anomalous_element or "Se"
        terms = {anom: anomalous_terms(anom, config.wavelength, config.fprime, config.fpp)}
    return model, terms


def anomalous_terms(symbol, wavelength, fprime=None, fpp=None):
    """f' and f'' of an element: the given values, else Cromer-Liberman at ``wavelength``."""
    energy = rs.utils.angstroms2ev(float(wavelength))
    cl_fp, cl_fpp = gemmi.cromer_liberman(z=element(symbol).atomic_number, energy=energy)
    return (cl_fp if fprime is None else float(fprime), cl_fpp if fpp is None else float(fpp))


def form_factor(symbol, s2):
    """IT92 atomic form factor f0 at s² = 1/d² (Å⁻²)."""
    coefs = element(symbol).it92.get_coefs()
    a, b, c = coefs[0:4], coefs[4:8], coefs[8]
    stol2 = np.asarray(s2)[..., None] / 4.0
    return (np.asarray(a) * np.exp(-np.asarray(b) * stol2)).sum(-1) + c


def structure_factors(model, hkl, anomalous, solvent=(0.0, 0.0)):
    """Structure factors of ``hkl`` and of ``-hkl``.

    Parameters
    ----------
    model : AtomModel
    hkl : numpy.ndarray
        Miller indices, shape (n, 3).
    anomalous : dict
        ``{element: (f', f'')}``; other elements scatter with f0 only.
    solvent : tuple of (float, float), optional
        Babinet bulk solvent ``(k_sol, B_sol)``: ``-k_sol exp(-B_sol s²/4) F_N``
        is added to each of F(h), F(-h) and F_N (F_N(-h) = conj F_N(h));
        ``k_sol = 0``: none.

    Returns
    -------
    tuple of numpy.ndarray (complex)
        F(h), F(-h), and F_N(h), the structure factor without f'' (which obeys
        Friedel's law).
    """
    hkl = np.asarray(hkl, dtype=float)
    s2 = 1.0 / np.asarray(model.cell.calculate_d_array(hkl)) ** 2
    f_plus = np.zeros(len(hkl), complex)
    f_minus = np.zeros(len(hkl), complex)
    f_normal = np.zeros(len(hkl), complex)
    for symbol in np.unique(model.elements):
        sel = model.elements == symbol
        fp, fpp = anomalous.get(symbol, (0.0, 0.0))
        real = form_factor(symbol, s2) + fp
        total = _atom_sum(hkl, s2, model.frac[sel], model.b[sel], model.occ[sel])
        f_normal += real * total
        f_plus += (real + 1j * fpp) * total
        f_minus += (real + 1j * fpp) * np.conj(total)
    k_sol, b_sol = solvent
    if k_sol > 0:
        babinet = k_sol * np.exp(-b_sol * s2 / 4.0) * f_normal
        f_plus, f_minus, f_normal = f_plus - babinet, f_minus - np.conj(babinet), f_normal - babinet
    return f_plus, f_minus, f_normal


def _atom_sum(hkl, s2, frac, b, occ):
    """sum_j occ_j exp(-B_j s²/4) exp(2πi h·x_j) for every h, in chunks."""
    # einsum rather than BLAS: much faster for these thin products on few cores.
    out = np.empty(len(hkl), complex)
    frac_t = np.ascontiguousarray(2.0 * np.pi * frac.T)
    step = max(1, _CHUNK_TERMS // max(1, len(frac)))
    for start in range(0, len(hkl), step):
        sl = slice(start, start + step)
        phase = np.einsum("ij,jk->ik", hkl[sl], frac_t)
        if np.ptp(b) == 0:  # one B for all: the Debye-Waller factor comes out of the sum
            dw = np.exp(-s2[sl] * b[0] / 4.0)
            out[sl] = dw * (np.einsum("ij,j->i", np.cos(phase), occ)
                            + 1j * np.einsum("ij,j->i", np.sin(phase), occ))
        else:
            weight = occ * np.exp(-np.outer(s2[sl] / 4.0, b))
            out[sl] = (weight * np.cos(phase)).sum(1) + 1j * (weight * np.sin(phase)).sum(1)
    return out


def truth_table(model, dmin, anomalous, solvent=(0.0, 0.0)):
    """The true structure factors of the reciprocal asymmetric unit.

    Parameters
    ----------
    model : AtomModel
    dmin : float
    anomalous : dict
        ``{element: (f', f'')}``.
    solvent : tuple of (float, float), optional
        Babinet bulk solvent ``(k_sol, B_sol)`` (see :func:`structure_factors`).

    Returns
    -------
    rs.DataSet
        Merged, indexed by H, K, L of the reciprocal ASU (systematic absences
        excluded), with F(+), PHI(+) = |F(h)|, arg F(h); F(-), PHI(-) = |F(-h)|,
        -arg F(-h) (rs's convention, so ``ds.stack_anomalous()`` gives F(-h) at
        -h; centric rows carry F(-) = F(+) and the (+) phase), DANO = F(+) - F(-),
        and F, PHI of the structure without f''.  Phases in degrees.
    """
    hkl = rs.utils.generate_reciprocal_asu(model.cell, model.spacegroup, dmin, anomalous=False)
    f_plus, f_minus, f_normal = structure_factors(model, hkl, anomalous, solvent)
    ds = rs.DataSet({"H": hkl[:, 0], "K": hkl[:, 1], "L": hkl[:, 2]},
                    cell=model.cell, spacegroup=model.spacegroup, merged=True)
    ds = ds.astype({"H": "H", "K": "H", "L": "H"}).set_index(["H", "K", "L"])
    ds["F"] = rs.DataSeries(np.abs(f_normal), dtype="F", index=ds.index)
    ds["PHI"] = rs.DataSeries(np.angle(f_normal, deg=True), dtype="P", index=ds.index)
    ds["F(+)"] = rs.DataSeries(np.abs(f_plus), dtype="G", index=ds.index)
    ds["PHI(+)"] = rs.DataSeries(np.angle(f_plus, deg=True), dtype="P", index=ds.index)
    # rs convention (as DataSet.stack_anomalous reads it): PHI(-) = -arg F(-h), so
    # that PHI(-) == PHI(+) without anomalous scattering; centrics copy the (+) phase.
    centric = rs.utils.is_centric(hkl, model.spacegroup)
    phi_minus = np.where(centric, np.angle(f_plus, deg=True), -np.angle(f_minus, deg=True))
    ds["F(-)"] = rs.DataSeries(np.abs(f_minus), dtype="G", index=ds.index)
    ds["PHI(-)"] = rs.DataSeries(rs.utils.canonicalize_phases(phi_minus), dtype="P", index=ds.index)
    ds["DANO"] = rs.DataSeries(np.abs(f_plus) - np.abs(f_minus), dtype="D", index=ds.index)
    return ds
