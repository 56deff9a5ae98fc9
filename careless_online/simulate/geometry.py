"""Diffraction geometry of a still image: orientation, Ewald sphere, detector.

Laboratory frame: the beam travels along +z, s0 = (0, 0, 1/λ); the detector is
a flat plane normal to the beam at z = D.  A reflection h of a crystal with
orientation U and reciprocal basis B (columns a*, b*, c*) sits at q = U B h and
scatters along s1 = s0 + q; its Ewald offset is |s1| - 1/λ.
"""

import gemmi
import numpy as np
from scipy.spatial.transform import Rotation

#: Cell lengths that share one jitter factor, by crystal system.
_TIED_LENGTHS = {
    "tetragonal": [0, 0, 2],
    "trigonal": [0, 0, 2],
    "hexagonal": [0, 0, 2],
    "cubic": [0, 0, 0],
}


def reciprocal_basis(cell):
    """Matrix whose columns are a*, b*, c* in Cartesian coordinates (Å⁻¹).

    Parameters
    ----------
    cell : gemmi.UnitCell

    Returns
    -------
    numpy.ndarray
        Shape (3, 3); the transpose of gemmi's fractionalization matrix, so
        ``reciprocal_basis(cell) @ h`` is the Cartesian scattering vector of h.
    """
    return np.array(cell.frac.mat).T


def random_rotation(rng):
    """A rotation matrix drawn uniformly from SO(3)."""
    return Rotation.random(random_state=rng).as_matrix()


def jitter_cell(cell, spacegroup, relative_sd, rng):
    """Scale the cell lengths by random factors that keep the crystal system.

    Parameters
    ----------
    cell : gemmi.UnitCell
    spacegroup : gemmi.SpaceGroup
    relative_sd : float
        Rms relative change of each independent length.
    rng : numpy.random.Generator

    Returns
    -------
    gemmi.UnitCell
    """
    factors = 1.0 + relative_sd * rng.standard_normal(3)
    tied = _TIED_LENGTHS.get(spacegroup.crystal_system_str())
    if tied is not None:
        factors = factors[tied]
    return gemmi.UnitCell(cell.a * factors[0], cell.b * factors[1], cell.c * factors[2],
                          cell.alpha, cell.beta, cell.gamma)


def scattered_beam(hkl_t, a_matrix, wavelength, out=None):
    """Scattered-beam vectors and Ewald offsets.

    Parameters
    ----------
    hkl_t : numpy.ndarray
        Miller indices as floats, transposed: shape (3, n).
    a_matrix : numpy.ndarray
        U B, shape (3, 3).
    wavelength : float
    out : tuple of numpy.ndarray, optional
        Buffers of shapes (3, n) and (n,) to fill (saves allocating large
        arrays for every image).

    Returns
    -------
    tuple of numpy.ndarray
        s1 = s0 + q, shape (3, n), and the Ewald offset |s1| - 1/λ, shape (n,).
    """
    n = hkl_t.shape[1]
    s1, offset = out if out is not None else (np.empty((3, n)), np.empty(n))
    np.einsum("ij,jk->ik", a_matrix, hkl_t, out=s1)  # faster than BLAS for 3 x 3
    s1[2] += 1.0 / wavelength
    np.einsum("ij,ij->j", s1, s1, out=offset)
    np.sqrt(offset, out=offset)
    offset -= 1.0 / wavelength
    return s1, offset


def nominal_offset(s1, wavelength, nominal_wavelength):
    """Ewald offsets recomputed with the nominal wavelength.

    A processing program that knows only the nominal wavelength λ₀ places the
    sphere at radius 1/λ₀: for q = s1 - s0 (s0 of the shot's own λ), the
    recorded offset is |q + (0, 0, 1/λ₀)| - 1/λ₀.

    Parameters
    ----------
    s1 : numpy.ndarray
        Shape (n, 3), scattered beams of the shot (wavelength ``wavelength``).
    wavelength, nominal_wavelength : float

    Returns
    -------
    numpy.ndarray
        Shape (n,).
    """
    s1_nominal = np.array(s1, dtype=float, copy=True)
    s1_nominal[:, 2] += 1.0 / nominal_wavelength - 1.0 / wavelength
    return np.sqrt(np.einsum("ij,ij->i", s1_nominal, s1_nominal)) - 1.0 / nominal_wavelength


def profile_width(q2, wavelength, profile_radius, mosaicity_deg, bandwidth):
    """Rms width of the Ewald-offset profile of reflections at |q|² = ``q2``.

    σ² = r² + (η |q|)² + (δλ/λ · λ|q|²/2)²: domain size, mosaic rotation and
    wavelength spread (the last is how far the sphere's surface moves at q
    when 1/λ changes by δλ/λ².)
    """
    eta = np.deg2rad(mosaicity_deg)
    return np.sqrt(profile_radius ** 2 + eta ** 2 * q2
                   + (bandwidth * wavelength * q2 / 2.0) ** 2)


def partiality(ewald_offset, width):
    """Gaussian partiality exp(-e²/(2σ²)): 1 on the Ewald sphere."""
    return np.exp(-0.5 * (ewald_offset / width) ** 2)


def lorentz_factor(width, reference_width):
    """Lorentz-like factor of still-image partiality: ``reference_width / width``.

    A still records the part of a reflection's reciprocal-space profile (a
    Gaussian of rms width σ across the Ewald sphere) that the sphere's thin
    shell cuts, which is proportional to the profile's density there,
    exp(-e²/(2σ²)) / σ: at equal Ewald offset a narrow profile (low
    resolution, small mosaicity) records more of its intensity than a wide
    one.  The factor is relative to ``reference_width``.
    """
    return reference_width / np.asarray(width)


def polarization_factor(s1, fraction):
    """Polarization factor 1 - f u_x² - (1 - f) u_y², u = s1/|s1|.

    ``fraction`` is the part of the beam polarized along x (1 for an undulator
    beam polarized in the horizontal plane).
    """
    u2 = s1 * s1 / (s1 * s1).sum(1, keepdims=True)
    return 1.0 - fraction * u2[:, 0] - (1.0 - fraction) * u2[:, 1]


def detector_position(s1, distance, pixel_size, pixels):
    """Where scattered beams hit a flat detector normal to the beam.

    Parameters
    ----------
    s1 : numpy.ndarray
        Shape (n, 3).
    distance, pixel_size : float
        mm; the beam hits pixel (nx/2, ny/2).
    pixels : tuple of 2 int
        Detector size (fast = x, slow = y).

    Returns
    -------
    tuple of numpy.ndarray
        Fast and slow pixel coordinates, and a mask of the beams that land on
        the detector.
    """
    with np.errstate(divide="ignore", invalid="ignore"):
        x = pixels[0] / 2.0 + distance * s1[:, 0] / s1[:, 2] / pixel_size
        y = pixels[1] / 2.0 + distance * s1[:, 1] / s1[:, 2] / pixel_size
    hit = (s1[:, 2] > 0) & (x >= 0) & (x < pixels[0]) & (y >= 0) & (y < pixels[1])
    return x, y, hit
