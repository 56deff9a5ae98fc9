"""Simulated Laue (pink-beam) still images with known truth.

Crystal and true structure factors as in :mod:`careless_online.simulate`
(random atoms with anomalous scatterers, :func:`~careless_online.simulate.make_crystal`;
f' and f'' at the band's centre).  Image ``i`` has a uniform random
orientation ``U_i``; with ``A_i = U_i B`` and the beam along +z, reflection
``h`` (scattering vector ``q = A_i h``) meets the Ewald sphere of wavelength

.. math::

    \\lambda_h = -2 q_z / |q|^2 ,

and is recorded when ``lambda_lo <= lambda_h <= lambda_hi``, ``d_h >= dmin``
and its diffracted beam goes forward (``cos 2 theta >= 0.2``).  Its expected counts are

.. math::

    S_h = c \\, K_i \\, e^{-B_i s^2 / 2} \\, \\Phi(\\lambda_h) \\,
          L(\\lambda_h, d_h) \\, |F_h|^2 / \\langle |F|^2 \\rangle ,

with the spectrum ``Phi(lambda) = exp(-(lambda - lambda_c)^2 / (2 w^2))``
(``lambda_c`` the band's centre, ``w`` = ``spectrum_width`` times the band),
the Laue Lorentz factor ``L = lambda^4 / sin^2 theta = 4 lambda^2 d^2``
(normalized at ``lambda_c`` and ``2 dmin``), image scale ``K_i =
exp(N(-sigma_K^2/2, sigma_K))`` and image B ``B_i ~ N(0, sigma_B)``.  ``F_h``
is ``F(+)`` or ``F(-)`` of the reflection's ASU index, so Friedel's law is
broken by f''.  Reflections on one central ray (multiples ``n h_1`` of a
primary index) diffract at ``lambda_1 / n`` onto one spot, whose counts are
``C ~ Poisson(sum_n S_{n h_1} + b)`` with ``I = C - b`` and
``SigI = sqrt(max(C, 1))``.  Each spot is written with the index and
wavelength of its lowest recorded order, as a Laue indexer would.
"""

from dataclasses import dataclass

import numpy as np
import pandas as pd
import reciprocalspaceship as rs

from careless_online.checks import integer_at_least, non_negative, positive
from careless_online.io.harmonics import primary_rays
from careless_online.io.reflections import map_to_asu, pack_hkl
from careless_online.simulate.api import make_crystal
from careless_online.simulate.config import SimulationConfig
from careless_online.simulate.geometry import random_rotation, reciprocal_basis
from careless_online.simulate.structure import write_model


@dataclass(frozen=True)
class LaueConfig:
    """Parameters of a simulated Laue data set (see the module docstring).

    Attributes
    ----------
    n_images : int
    band : (float, float)
        ``(lambda_lo, lambda_hi)`` in Angstrom.
    spectrum_width : float
        ``w`` over ``lambda_hi - lambda_lo``.
    cell, spacegroup, dmin, n_atoms, anomalous_atoms :
        The crystal (:class:`~careless_online.simulate.SimulationConfig`'s fields).
    mean_counts : float
        ``c``: counts of an average reflection at the spectrum's peak.
    scale_spread, image_b_sd : float
        ``sigma_K`` and ``sigma_B`` (Angstrom^2).
    background : float
        ``b``: background counts under each spot.
    detector_distance : float
        mm, for the X, Y columns (pixels of 0.1 mm about the beam at 0).
    seed : int
    """

    n_images: int = 20
    band: tuple = (1.0, 1.2)
    spectrum_width: float = 0.4
    cell: tuple = (34.0, 45.0, 58.0, 90.0, 90.0, 90.0)
    spacegroup: str = "P 21 21 21"
    dmin: float = 2.5
    n_atoms: int = 400
    anomalous_atoms: str = "Zn:2,S:8"
    mean_counts: float = 400.0
    scale_spread: float = 0.3
    image_b_sd: float = 3.0
    background: float = 10.0
    detector_distance: float = 100.0
    seed: int = 0

    def __post_init__(self):
        low, high = (float(x) for x in self.band)
        if not 0 < low < high:
            raise ValueError(f"band must be 0 < lo < hi, got {self.band}")
        for name in ("spectrum_width", "dmin", "mean_counts", "detector_distance"):
            positive(name, getattr(self, name))
        for name in ("scale_spread", "image_b_sd", "background"):
            non_negative(name, getattr(self, name))
        integer_at_least("n_images", self.n_images, 1)

    @property
    def centre(self):
        """``lambda_c``, the band's centre."""
        return 0.5 * (self.band[0] + self.band[1])

    def crystal_config(self):
        """The :class:`SimulationConfig` of the crystal (f', f'' at the band's centre)."""
        return SimulationConfig(cell=tuple(self.cell), spacegroup=self.spacegroup, dmin=self.dmin,
                                n_atoms=self.n_atoms, anomalous_atoms=self.anomalous_atoms,
                                wavelength=self.centre, seed=self.seed)


@dataclass
class LaueData:
    """A simulated Laue set: ``spots`` (unmerged, one row per spot), ``truth`` (merged), ``images`` and ``model``."""

    spots: rs.DataSet
    truth: rs.DataSet
    images: pd.DataFrame
    config: LaueConfig
    model: object = None


def sphere_reflections(truth, cell, spacegroup, dmin):
    """Every present reflection to ``dmin`` (full sphere), with its true ``|F|^2``.

    Returns
    -------
    (numpy.ndarray, numpy.ndarray)
        ``hkl`` int ``[n, 3]`` and ``|F_h|^2`` (``F(+)`` or ``F(-)`` of its ASU index).
    """
    hkl = rs.utils.generate_reciprocal_cell(cell, dmin)
    hkl = hkl[np.any(hkl != 0, axis=1) & ~rs.utils.is_absent(hkl, spacegroup)]
    asu, plus = map_to_asu(hkl, spacegroup)
    truth_hkl = truth.index.to_frame().to_numpy()
    keys = pack_hkl(truth_hkl, np.ones(len(truth_hkl), bool))
    order = np.argsort(keys)
    row = order[np.searchsorted(keys[order], pack_hkl(asu, np.ones(len(asu), bool)))]
    f = np.where(plus, truth["F(+)"].to_numpy(float)[row], truth["F(-)"].to_numpy(float)[row])
    return hkl, np.square(f)


def spectrum(wavelength, config):
    """``Phi(lambda)``, peak 1 at the band's centre."""
    width = config.spectrum_width * (config.band[1] - config.band[0])
    return np.exp(-0.5 * np.square((wavelength - config.centre) / width))


def lorentz(wavelength, d, config):
    """Laue Lorentz factor ``4 lambda^2 d^2``, 1 at ``lambda_c`` and ``d = 2 dmin``."""
    return np.square(wavelength / config.centre) * np.square(d / (2.0 * config.dmin))


def recorded(hkl, a_matrix, d, config):
    """Reflections of one orientation recorded in the band, their wavelengths and detector positions.

    Returns
    -------
    (numpy.ndarray, numpy.ndarray, numpy.ndarray)
        Boolean mask over ``hkl``, ``lambda_h`` and ``[n, 2]`` X, Y (pixels) of the recorded ones.
    """
    q = hkl @ a_matrix.T
    with np.errstate(divide="ignore", invalid="ignore"):
        wavelength = -2.0 * q[:, 2] / np.einsum("ij,ij->i", q, q)
    s1 = q * wavelength[:, None]
    s1[:, 2] += 1.0  # unit vector of the diffracted beam: s0 + q scaled by lambda
    mask = (wavelength >= config.band[0]) & (wavelength <= config.band[1]) & (s1[:, 2] >= 0.2) & (d >= config.dmin)
    xy = config.detector_distance * s1[mask, :2] / s1[mask, 2:3] / 0.1
    return mask, wavelength[mask], xy


def image_spots(hkl, f2, d, config, cell, rng):
    """The spots of one image: recorded harmonics summed per central ray, Poisson counts.

    Returns
    -------
    (dict of numpy.ndarray, float, float)
        Spot columns ``H, K, L, Wavelength, X, Y, I, SigI, n_harmonics``, the image's ``K_i`` and ``B_i``.
    """
    scale = np.exp(rng.normal(-0.5 * config.scale_spread ** 2, config.scale_spread))
    b_factor = rng.normal(0.0, config.image_b_sd)
    mask, wavelength, xy = recorded(hkl, random_rotation(rng) @ reciprocal_basis(cell), d, config)
    counts = (config.mean_counts * scale * np.exp(-0.5 * b_factor / np.square(d[mask])) * spectrum(wavelength, config)
              * lorentz(wavelength, d[mask], config) * f2[mask])
    primary, _, order = primary_rays(hkl[mask], wavelength)
    ray_keys = pack_hkl(primary, np.ones(len(primary), bool))
    rays, ray = np.unique(ray_keys, return_inverse=True)
    first = np.lexsort((order, ray))  # by ray, lowest order first
    lead = first[np.r_[True, ray[first][1:] != ray[first][:-1]]]
    expected = np.bincount(ray, weights=counts, minlength=len(rays))[ray[lead]]
    c = rng.poisson(expected + config.background).astype(float)
    spots = {"H": hkl[mask][lead, 0], "K": hkl[mask][lead, 1], "L": hkl[mask][lead, 2],
             "Wavelength": wavelength[lead], "X": xy[lead, 0], "Y": xy[lead, 1],
             "I": c - config.background, "SigI": np.sqrt(np.maximum(c, 1.0)),
             "n_harmonics": np.bincount(ray, minlength=len(rays))[ray[lead]]}
    return spots, scale, b_factor


def simulate_laue(config=None, crystal=None, **params):
    """Simulate a Laue data set.

    Parameters
    ----------
    config : LaueConfig, optional
    crystal : careless_online.simulate.api.Crystal, optional
        The crystal (default: :func:`~careless_online.simulate.make_crystal` of
        the configuration), e.g. the light state of a dark/light pair.
    **params
        :class:`LaueConfig` fields overriding ``config``.

    Returns
    -------
    LaueData
    """
    config = LaueConfig(**{**(config.__dict__ if config else {}), **params})
    crystal = crystal if crystal is not None else make_crystal(config.crystal_config())
    hkl, f2 = sphere_reflections(crystal.truth, crystal.cell, crystal.spacegroup, config.dmin)
    f2 = f2 / np.mean(f2)
    d = crystal.cell.calculate_d_array(hkl)
    frames, images = [], []
    for i in range(int(config.n_images)):
        spots, scale, b_factor = image_spots(hkl, f2, d, config, crystal.cell, np.random.default_rng([config.seed, i]))
        frames.append(pd.DataFrame(spots).assign(BATCH=i + 1))
        images.append({"BATCH": i + 1, "scale": scale, "B": b_factor, "n_spots": len(spots["I"])})
    return LaueData(_spot_table(pd.concat(frames, ignore_index=True), crystal), crystal.truth,
                    pd.DataFrame(images), config, crystal.model)


def _spot_table(frame, crystal):
    """The spots as an unmerged ``rs.DataSet`` with MTZ column types."""
    ds = rs.DataSet(frame, cell=crystal.cell, spacegroup=crystal.spacegroup, merged=False)
    types = {"H": "H", "K": "H", "L": "H", "BATCH": "B", "I": "J", "SigI": "Q", "Wavelength": "R", "X": "R",
             "Y": "R", "n_harmonics": "I"}
    return ds.astype(types).set_index(["H", "K", "L"])


def write_laue(data, base, truth_columns=False):
    """Write ``<base>.mtz`` (spots), ``<base>_truth.mtz`` and ``<base>_images.csv``; returns the three paths.

    ``truth_columns``: keep the simulator's ``n_harmonics`` column in the spots file.  With a
    model, ``<base>_model.pdb`` (the atoms of the asymmetric unit) is written too.
    """
    spots = data.spots if truth_columns else data.spots.drop(columns=["n_harmonics"])
    paths = (f"{base}.mtz", f"{base}_truth.mtz", f"{base}_images.csv")
    spots.write_mtz(paths[0])
    data.truth.write_mtz(paths[1])
    data.images.to_csv(paths[2], index=False, float_format="%.8g")
    if data.model is not None:
        write_model(data.model, f"{base}_model.pdb")
    return paths
