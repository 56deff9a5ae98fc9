"""Parameters of a simulation, their defaults and their validation."""

import dataclasses
import os
from dataclasses import dataclass

import gemmi

from careless_online.errors import InputError
from careless_online.io.table import parse_spacegroup

#: Default crystal: lysozyme-like, a space group with screw axes and centric zones.
DEFAULT_CELL = (79.1, 79.1, 38.0, 90.0, 90.0, 90.0)
DEFAULT_SPACEGROUP = "P 43 21 2"


@dataclass(frozen=True)
class SimulationConfig:
    """Every parameter of a simulated serial (still-image) experiment.

    Lengths are in Å, reciprocal lengths in Å⁻¹, angles in degrees, detector
    distances in mm, intensities in photons.  See :mod:`careless_online.simulate`
    for the equations these parameters enter.

    Parameters
    ----------
    cell : tuple of 6 float or None
        Unit cell a, b, c, alpha, beta, gamma.  None: the PDB model's cell, or
        :data:`DEFAULT_CELL` (79.1 79.1 38.0 90 90 90) without a model.
    spacegroup : str or None
        Space-group symbol.  None: the PDB model's, or ``P 43 21 2``.
    dmin : float
        High-resolution limit of the structure factors and of the images.
    pdb : str or None
        Coordinate file (PDB/mmCIF) giving the atoms; None: random atoms.
    n_atoms : int
        Random model: light atoms (C, N, O in protein-like proportions) per
        asymmetric unit.
    atom_b : float
        Random model: isotropic B-factor of every atom (Å²).
    anomalous_element : str or None
        Element given f' and f''.  None: Se for the random model; for a PDB
        model Se if it has any, otherwise S.
    n_anomalous : int
        Random model: anomalous atoms per asymmetric unit.
    anomalous_atoms : str or None
        Random model: several anomalous elements at once, as
        ``"EL:N[:FPP[:FP]],..."`` (e.g. ``"Zn:1,Ca:4,S:8"``): N atoms of each
        element per asymmetric unit with their own f'' and f' (Cromer-Liberman
        at ``wavelength`` unless given).  Replaces ``anomalous_element``,
        ``n_anomalous``, ``fprime`` and ``fpp``.  None: one element as those say.
    molecule_radius : float
        Random model: 0 places the atoms uniformly in the cell; > 0 gathers
        the atoms of each asymmetric unit into one compact molecule, a 3-D
        Gaussian cloud of this rms radius (Å) about a random centre, with
        vacuum between molecules, so that a few low-order reflections (those
        that the molecules' packing favours) are much stronger than the mean.
    bulk_solvent : float
        Babinet bulk-solvent scale k_sol in [0, 1): the solvent's structure
        factor ``-k_sol exp(-B_sol s²/4) F_N(h)`` is added (F_N: the structure
        factor without f'', as the solvent does not scatter anomalously), so
        low-resolution intensities fall by up to ``(1 - k_sol)²``.  0: no solvent.
    bulk_solvent_b : float
        B_sol of the Babinet term (Å²).
    fprime, fpp : float or None
        f' and f'' (electrons) of ``anomalous_element``.  None: the
        Cromer-Liberman values at ``wavelength`` (gemmi).  ``fpp=0`` removes the
        anomalous signal.
    wavelength : float
        X-ray wavelength (Å).  The default 0.97 Å lies above the Se K edge.
    bandwidth : float
        Relative rms spread of the wavelength within one pulse (dλ/λ).
    energy_jitter : float
        Relative rms shot-to-shot change of the mean wavelength.  Partiality
        follows the shot's own wavelength while the recorded wavelength and
        Ewald offsets (stream, ``ewald_offset``) use the nominal one, as
        processing programs without a per-shot spectrum do.
    mosaicity : float
        Rms mosaic spread (degrees).
    mosaicity_spread : float
        Standard deviation of the natural log of each image's mosaicity (its
        mean stays ``mosaicity``); 0: every image has ``mosaicity``.
    lorentz : bool
        Lorentz-like partiality: a still records the fraction of the
        reflection's reciprocal-space profile (rms width σ, see
        :func:`geometry.profile_width`) that the Ewald sphere cuts, so the
        partiality is ``σ_ref/σ · exp(-e²/(2σ²))`` with σ_ref the median
        nominal width of all reflections: narrow (low-resolution, or
        low-mosaicity image) profiles record more of their intensity than
        wide ones.  False: ``exp(-e²/(2σ²))``, at most 1.
    profile_radius : float
        Rms radius of a reciprocal-lattice point from the finite domain size (Å⁻¹).
    cell_jitter : float
        Relative rms variation of the cell lengths from image to image (the
        crystal system's constraints are kept).
    partiality_min : float
        Reflections whose partiality is below this are not recorded.
    detector_distance : float
        Sample-to-detector distance (mm); the detector is flat, normal to the beam.
    pixel_size : float
        Pixel edge (mm).
    detector_pixels : tuple of 2 int
        Detector size (fast, slow) in pixels; the beam hits its centre.
    polarization : float
        Fraction of the beam polarized along the laboratory x axis.
    mean_counts : float
        Expected photons of a full reflection with the mean |F|², image scale 1,
        image B 0 and polarization factor 1.
    scale_spread : float
        Standard deviation of the natural log of the image scale (mean scale 1).
    image_b_sd : float
        Standard deviation of the per-image B-factor (Å², mean 0).
    background : float
        Mean background photons under a spot.
    background_ratio : float
        Background area sampled for the background estimate, relative to the spot.
    sigma_fraction : float
        Fractional error term f of the reported sigma:
        ``SIGI² = counting variance + (f I)²``.  0: counting variance only.
    model_error : float
        Standard deviation e of the natural log of a multiplicative error on
        each reflection's expected signal (mean 1), which SIGI does not
        describe.  0: none.
    min_reflections : int
        Images with fewer recorded reflections are redrawn (a new orientation),
        like images that fail indexing.
    seed : int
        Random seed; image ``i`` uses the generator seeded with ``(seed, i)``, so
        the data do not depend on how the images are blocked.
    """

    cell: tuple = None
    spacegroup: str = None
    dmin: float = 3.0
    pdb: str = None
    n_atoms: int = 800
    atom_b: float = 20.0
    anomalous_element: str = None
    n_anomalous: int = 4
    anomalous_atoms: str = None
    molecule_radius: float = 0.0
    bulk_solvent: float = 0.0
    bulk_solvent_b: float = 46.0
    fprime: float = None
    fpp: float = None
    wavelength: float = 0.97
    bandwidth: float = 0.002
    energy_jitter: float = 0.0
    mosaicity: float = 0.1
    mosaicity_spread: float = 0.0
    lorentz: bool = False
    profile_radius: float = 5e-4
    cell_jitter: float = 0.002
    partiality_min: float = 0.05
    detector_distance: float = 100.0
    pixel_size: float = 0.1
    detector_pixels: tuple = (2000, 2000)
    polarization: float = 0.99
    mean_counts: float = 100.0
    scale_spread: float = 0.5
    image_b_sd: float = 5.0
    background: float = 20.0
    background_ratio: float = 4.0
    sigma_fraction: float = 0.0
    model_error: float = 0.0
    min_reflections: int = 10
    seed: int = 0

    def replace(self, **changes):
        """Return a copy with some parameters changed (and validated)."""
        return dataclasses.replace(self, **changes).validated()

    def validated(self):
        """Check every parameter, raising InputError for the first bad one.

        Returns
        -------
        SimulationConfig
            ``self``, for chaining.
        """
        positive = ("dmin", "wavelength", "detector_distance", "pixel_size",
                    "mean_counts", "background_ratio", "atom_b", "bulk_solvent_b")
        non_negative = ("bandwidth", "energy_jitter", "mosaicity", "profile_radius", "cell_jitter",
                        "scale_spread", "image_b_sd", "background", "molecule_radius", "mosaicity_spread",
                        "sigma_fraction", "model_error")
        for name in positive:
            if not getattr(self, name) > 0:
                raise InputError(f"--{_flag(name)} must be > 0, got {getattr(self, name)}")
        for name in non_negative:
            if not getattr(self, name) >= 0:
                raise InputError(f"--{_flag(name)} must be >= 0, got {getattr(self, name)}")
        if self.bandwidth == self.mosaicity == self.profile_radius == 0:
            raise InputError("--profile-radius, --mosaicity and --bandwidth cannot all be 0")
        if not 0 < self.partiality_min < 1:
            raise InputError(f"--partiality-min must lie in (0, 1), got {self.partiality_min}")
        if not 0 <= self.polarization <= 1:
            raise InputError(f"--polarization must lie in [0, 1], got {self.polarization}")
        if not 0 <= self.bulk_solvent < 1:
            raise InputError(f"--bulk-solvent must lie in [0, 1), got {self.bulk_solvent}")
        if self.fpp is not None and self.fpp < 0:
            raise InputError(f"--fpp must be >= 0, got {self.fpp}")
        for name in ("n_atoms", "n_anomalous", "min_reflections"):
            if int(getattr(self, name)) != getattr(self, name) or getattr(self, name) < 0:
                raise InputError(f"--{_flag(name)} must be a whole number >= 0")
        self._validate_anomalous_atoms()
        if self.pdb is None and self.n_atoms + sum(n for _, n in self.anomalous_counts().items()) == 0:
            raise InputError("--n-atoms and --n-anomalous cannot both be 0")
        if len(self.detector_pixels) != 2 or min(self.detector_pixels) < 1:
            raise InputError(f"--detector-pixels needs two sizes >= 1, got {self.detector_pixels}")
        if self.pdb is not None and not os.path.isfile(self.pdb):
            raise InputError("no such coordinate file", path=self.pdb)
        if self.anomalous_element is not None:
            element(self.anomalous_element)
        if self.cell is not None or self.spacegroup is not None:
            resolve_cell(self.cell or DEFAULT_CELL, self.spacegroup or DEFAULT_SPACEGROUP)
        return self

    def _validate_anomalous_atoms(self):
        if self.anomalous_atoms is None:
            return
        if self.pdb is not None:
            raise InputError("--anomalous-atoms places random atoms; with --pdb use --anomalous-element")
        if self.anomalous_element is not None or self.fprime is not None or self.fpp is not None:
            raise InputError("give either --anomalous-atoms or --anomalous-element/--fprime/--fpp")
        parse_anomalous_atoms(self.anomalous_atoms)

    def anomalous_counts(self):
        """Random model: ``{element: atoms per asymmetric unit}`` of the anomalous scatterers."""
        if self.anomalous_atoms is not None:
            return {el: n for el, n, _, _ in parse_anomalous_atoms(self.anomalous_atoms)}
        return {self.anomalous_element or "Se": self.n_anomalous}


def parse_anomalous_atoms(text):
    """Parse ``"EL:N[:FPP[:FP]],..."`` (see :class:`SimulationConfig` ``anomalous_atoms``).

    Returns
    -------
    list of (str, int, float or None, float or None)
        Element, atoms per asymmetric unit, f'' and f' (None: Cromer-Liberman).
    """
    out = []
    for item in str(text).split(","):
        fields = [f.strip() for f in item.split(":")]
        if not 2 <= len(fields) <= 4 or not fields[0]:
            raise InputError(f"--anomalous-atoms: give ELEMENT:COUNT[:FPP[:FP]], got {item.strip()!r}")
        try:
            count = int(fields[1])
            values = [float(v) for v in fields[2:]] + [None] * (4 - len(fields))
        except ValueError:
            raise InputError(f"--anomalous-atoms: bad number in {item.strip()!r}") from None
        name = element(fields[0]).name
        if count < 0 or (values[0] is not None and values[0] < 0):
            raise InputError(f"--anomalous-atoms: count and f'' must be >= 0 in {item.strip()!r}")
        if name in [o[0] for o in out]:
            raise InputError(f"--anomalous-atoms: element {name} given twice")
        out.append((name, count, values[0], values[1]))
    return out


def _flag(name):
    return name.replace("_", "-")


def element(symbol):
    """Return the gemmi.Element of ``symbol``, or raise InputError."""
    el = gemmi.Element(str(symbol))
    if el.atomic_number == 0 or el.it92 is None:
        raise InputError(f"unknown element {symbol!r}")
    return el


def resolve_cell(cell, symbol):
    """Build and check a gemmi cell and space group.

    Parameters
    ----------
    cell : sequence of 6 float
        a, b, c (Å), alpha, beta, gamma (degrees).
    symbol : str or gemmi.SpaceGroup
        Space group.

    Returns
    -------
    tuple of (gemmi.UnitCell, gemmi.SpaceGroup)
    """
    sg = symbol if isinstance(symbol, gemmi.SpaceGroup) else parse_spacegroup(symbol)
    values = [float(v) for v in cell]
    if len(values) != 6 or min(values[:3]) <= 0 or not all(0 < v < 180 for v in values[3:]):
        raise InputError(f"bad unit cell {tuple(cell)}: give a b c > 0 and angles in (0, 180)")
    uc = gemmi.UnitCell(*values)
    if not uc.volume > 0:
        raise InputError(f"unit cell {tuple(cell)} has no volume")
    if not uc.is_compatible_with_spacegroup(sg):
        raise InputError(f"unit cell {tuple(values)} does not fit space group {sg.hm} (give --cell)")
    return uc, sg
