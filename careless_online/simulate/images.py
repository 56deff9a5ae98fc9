"""Still images of a simulated crystal: which reflections each records, and how bright.

Per image i (its own generator seeded with (seed, i)): a uniform random
orientation U_i, a jittered cell B_i, optionally a jittered mean wavelength
λ_i (``energy_jitter``; partiality follows λ_i, the recorded Ewald offset the
nominal λ), a lognormal scale K_i (mean 1) and a B-factor B_i; each
reflection h near the Ewald sphere gets

    expected signal  S = mean_counts K_i |F(h)|²/<|F|²> exp(-B_i s²/2) p P
    counts           C ~ Poisson(S ε + bg)
    background est.  b = Poisson(r bg) / r      (r = background_ratio)
    I = C - b,  SIGI = sqrt(max(C + b/r, 1) + (f I)²)

with p the partiality (times the Lorentz-like factor σ_ref/σ with ``lorentz``),
P the polarization factor, f = ``sigma_fraction`` and ε = 1, or with
``model_error`` e > 0 a lognormal error exp(e N(0, 1) - e²/2) per reflection
that SIGI does not describe.  With ``mosaicity_spread`` each image draws its
own mosaicity (lognormal about ``mosaicity``), so its profile widths differ.
"""

from dataclasses import dataclass

import numpy as np
import pandas as pd
import reciprocalspaceship as rs

from careless_online.errors import InputError
from careless_online.simulate import geometry

#: Redraws allowed for an image with too few reflections before giving up.
MAX_ATTEMPTS = 50

#: Columns of the observation table and their MTZ types.
OBSERVATION_TYPES = {
    "BATCH": "B", "I": "J", "SIGI": "Q", "XDET": "R", "YDET": "R",
    "ewald_offset": "R", "s1x": "R", "s1y": "R", "s1z": "R",
    "PARTIALITY": "R", "SCALE": "R", "BFACTOR": "R", "POLARIZATION": "R",
    "FTRUE": "F", "IEXPECTED": "J", "BACKGROUND": "R", "COUNTS": "R",
}

#: Observation columns that a real processing program would also produce.
OBSERVABLE_COLUMNS = ["BATCH", "I", "SIGI", "XDET", "YDET", "ewald_offset", "s1x", "s1y", "s1z"]


@dataclass
class Catalogue:
    """Every reflection of the crystal (all of reciprocal space to dmin).

    Attributes
    ----------
    hkl : numpy.ndarray
        Miller indices (not mapped to the ASU), shape (n, 3), int; systematic
        absences excluded.
    s2 : numpy.ndarray
        1/d² of the reference cell.
    intensity : numpy.ndarray
        |F(h)|² / <|F|²>, with the anomalous F of this very h.
    amplitude : numpy.ndarray
        |F(h)|.
    """

    hkl: np.ndarray
    s2: np.ndarray
    intensity: np.ndarray
    amplitude: np.ndarray


def catalogue(truth):
    """Expand an ASU truth table (see :func:`structure.truth_table`) to all of reciprocal space.

    Parameters
    ----------
    truth : rs.DataSet
        With F(+) and F(-).

    Returns
    -------
    Catalogue
    """
    sg, cell = truth.spacegroup, truth.cell
    dmin = truth.compute_dHKL()["dHKL"].min()
    hkl = rs.utils.generate_reciprocal_cell(cell, dmin * (1 - 1e-6))
    hkl = hkl[~rs.utils.is_absent(hkl, sg) & np.any(hkl != 0, axis=1)]
    asu, isym = rs.utils.hkl_to_asu(hkl, sg)
    keys = truth.get_hkls()
    order = np.argsort(_key(keys))
    pos = np.searchsorted(_key(keys)[order], _key(asu))
    pos = np.clip(pos, 0, len(order) - 1)
    found = _key(keys)[order][pos] == _key(asu)
    hkl, isym, rows = hkl[found], isym[found], order[pos[found]]
    plus = isym % 2 == 1
    amp = np.where(plus, truth["F(+)"].to_numpy(float)[rows], truth["F(-)"].to_numpy(float)[rows])
    mean_sq = np.mean(np.concatenate([truth["F(+)"].to_numpy(float), truth["F(-)"].to_numpy(float)]) ** 2)
    s2 = 1.0 / np.asarray(cell.calculate_d_array(hkl.astype(float))) ** 2
    return Catalogue(hkl.astype(np.int32), s2, amp ** 2 / mean_sq, amp)


def _key(hkl):
    hkl = np.asarray(hkl, dtype=np.int64) + 1024
    return (hkl[:, 0] * 2048 + hkl[:, 1]) * 2048 + hkl[:, 2]


class ImageSimulator:
    """Draws still images of one crystal.

    Parameters
    ----------
    truth : rs.DataSet
        ASU truth table (see :func:`structure.truth_table`).
    config : SimulationConfig
    """

    def __init__(self, truth, config):
        self.cell, self.spacegroup, self.config = truth.cell, truth.spacegroup, config
        self.cat = catalogue(truth)
        self.width = self._width(config.mosaicity)
        #: Reference width of the Lorentz-like partiality: the median nominal width.
        self.reference_width = float(np.median(self.width))
        self._hkl_t = np.ascontiguousarray(self.cat.hkl.T, dtype=float)
        self._buffers = (np.empty(self._hkl_t.shape), np.empty(len(self.cat.hkl)))

    def _width(self, mosaicity):
        """Profile width of every catalogue reflection for a mosaicity (degrees)."""
        config = self.config
        return geometry.profile_width(self.cat.s2, config.wavelength, config.profile_radius,
                                      mosaicity, config.bandwidth)

    def _shot_wavelength(self, rng):
        """The mean wavelength of one shot: nominal, or jittered by ``energy_jitter``."""
        jitter = self.config.energy_jitter
        if jitter == 0:
            return self.config.wavelength  # no draw: data without jitter stay as they were
        return self.config.wavelength * (1.0 + jitter * rng.standard_normal())

    def _shot_mosaicity(self, rng):
        """One image's mosaicity and profile widths: nominal, or lognormal by ``mosaicity_spread``."""
        spread = self.config.mosaicity_spread
        if spread == 0:
            return self.config.mosaicity, self.width  # no draw: data without spread stay as they were
        mosaicity = self.config.mosaicity * np.exp(spread * rng.standard_normal() - spread ** 2 / 2)
        return mosaicity, self._width(mosaicity)

    def block(self, start, stop):
        """Simulate images ``start`` to ``stop - 1`` (0-based) as an :class:`ImageBlock`."""
        results = [self.image(i) for i in range(start, stop)]
        return ImageBlock([r for r, _ in results], [im for _, im in results])

    def _orient(self, rng):
        """Draw orientations until one records enough reflections (see :meth:`image`).

        Returns
        -------
        dict
            ``u``, ``cell``, ``a_matrix``, ``wavelength``, ``mosaicity``,
            ``near`` (catalogue rows recorded), ``width`` (their profile
            widths), ``x``, ``y``, ``s1`` and ``offset`` of those rows.
        """
        config = self.config
        min_refl = max(config.min_reflections, 2)
        cut = np.sqrt(-2.0 * np.log(config.partiality_min))
        for _ in range(MAX_ATTEMPTS):
            u = geometry.random_rotation(rng)
            img_cell = geometry.jitter_cell(self.cell, self.spacegroup, config.cell_jitter, rng)
            a_matrix = u @ geometry.reciprocal_basis(img_cell)
            wavelength = self._shot_wavelength(rng)
            mosaicity, width = self._shot_mosaicity(rng)
            s1, offset = geometry.scattered_beam(self._hkl_t, a_matrix, wavelength, self._buffers)
            near = np.flatnonzero(np.abs(offset) < cut * width)
            x, y, hit = geometry.detector_position(s1[:, near].T, config.detector_distance,
                                                   config.pixel_size, config.detector_pixels)
            near = near[hit]
            if len(near) >= min_refl:
                return {"u": u, "cell": img_cell, "a_matrix": a_matrix, "wavelength": wavelength,
                        "mosaicity": mosaicity, "near": near, "width": width[near], "x": x[hit], "y": y[hit],
                        "s1": s1[:, near].T, "offset": offset[near]}
        raise InputError(
            f"images record fewer than {min_refl} reflections; raise --mosaicity or "
            "--profile-radius, lower --dmin, or enlarge the detector")

    def _partiality(self, shot):
        """Partiality of the recorded reflections, with the Lorentz-like factor if asked for."""
        part = geometry.partiality(shot["offset"], shot["width"])
        if self.config.lorentz:
            part = part * geometry.lorentz_factor(shot["width"], self.reference_width)
        return part

    def _counts(self, expected, rng):
        """Photon counts, background estimate, I and SIGI of expected signals (see the module docstring)."""
        config = self.config
        signal = expected
        if config.model_error > 0:  # no draw without it: such data stay as they were
            e = config.model_error
            signal = expected * np.exp(e * rng.standard_normal(len(expected)) - e ** 2 / 2)
        counts = rng.poisson(signal + config.background).astype(float)
        ratio = config.background_ratio
        bg_est = rng.poisson(config.background * ratio, size=len(expected)) / ratio
        intensity = counts - bg_est
        variance = np.maximum(counts + bg_est / ratio, 1.0) + (config.sigma_fraction * intensity) ** 2
        return counts, bg_est, intensity, np.sqrt(variance)

    def image(self, index):
        """Simulate one still image.

        Parameters
        ----------
        index : int
            0-based image number; seeds the image's random generator.

        Returns
        -------
        tuple of (dict, dict)
            Per-reflection arrays (keys of :data:`OBSERVATION_TYPES` except
            BATCH, plus ``hkl``, ``peak``, ``background_estimate``) and the
            image's truth (scale, B, orientation U00..U22, cell, A00..A22 =
            U B with columns a*, b*, c* in the lab frame, Å⁻¹, and with
            ``mosaicity_spread`` > 0 its mosaicity).
        """
        config, cat = self.config, self.cat
        rng = np.random.default_rng([config.seed, index])
        shot = self._orient(rng)
        near, s1 = shot["near"], shot["s1"]
        part = self._partiality(shot)
        recorded_offset = geometry.nominal_offset(s1, shot["wavelength"], config.wavelength)
        pol = geometry.polarization_factor(s1, config.polarization)
        scale = np.exp(config.scale_spread * rng.standard_normal() - config.scale_spread ** 2 / 2)
        bfac = config.image_b_sd * rng.standard_normal()
        expected = (config.mean_counts * scale * cat.intensity[near]
                    * np.exp(-bfac * cat.s2[near] / 2.0) * part * pol)
        counts, bg_est, intensity, sigma = self._counts(expected, rng)
        n = len(near)
        refl = {
            "hkl": cat.hkl[near], "I": intensity, "SIGI": sigma,
            "XDET": shot["x"], "YDET": shot["y"], "ewald_offset": recorded_offset,
            "s1x": s1[:, 0], "s1y": s1[:, 1], "s1z": s1[:, 2],
            "PARTIALITY": part, "SCALE": np.full(n, scale), "BFACTOR": np.full(n, bfac),
            "POLARIZATION": pol, "FTRUE": cat.amplitude[near], "IEXPECTED": expected,
            "BACKGROUND": np.full(n, float(config.background)), "COUNTS": counts,
            "peak": counts, "background_estimate": bg_est,
        }
        return refl, self._image_truth(index, shot, scale, bfac, n)

    def _image_truth(self, index, shot, scale, bfac, n):
        """The per-image truth row of :meth:`image`."""
        u, img_cell, a_matrix = shot["u"], shot["cell"], shot["a_matrix"]
        image = {"image": index, "BATCH": index + 1, "scale": scale, "bfactor": bfac,
                 "wavelength": shot["wavelength"],
                 **{f"U{r}{c}": u[r, c] for r in range(3) for c in range(3)},
                 "a": img_cell.a, "b": img_cell.b, "c": img_cell.c,
                 "alpha": img_cell.alpha, "beta": img_cell.beta, "gamma": img_cell.gamma,
                 **{f"A{r}{c}": a_matrix[r, c] for r in range(3) for c in range(3)},
                 "n_reflections": n}
        if self.config.mosaicity_spread > 0:
            image["mosaicity"] = shot["mosaicity"]
        return image


@dataclass
class ImageBlock:
    """Consecutive simulated images.

    Attributes
    ----------
    reflections : list of dict
        Per image, the arrays returned by :func:`simulate_image`.
    images : list of dict
        Per image, its truth (see :meth:`ImageSimulator.image`).
    """

    reflections: list
    images: list

    def image_table(self):
        """Per-image truth as a DataFrame, one row per image."""
        return pd.DataFrame(self.images)

    def arrays(self, columns=None):
        """The block's reflections as a dict of concatenated arrays.

        Parameters
        ----------
        columns : list of str, optional
            Subset of :data:`OBSERVATION_TYPES` keys; all by default.  H, K, L
            (int32) always come first; the other columns are float32.
        """
        columns = list(OBSERVATION_TYPES) if columns is None else list(columns)
        hkl = np.concatenate([r["hkl"] for r in self.reflections])
        data = {"H": hkl[:, 0], "K": hkl[:, 1], "L": hkl[:, 2]}
        for name in columns:
            if name == "BATCH":
                values = [np.full(len(r["hkl"]), im["BATCH"])
                          for r, im in zip(self.reflections, self.images)]
            else:
                values = [r[name] for r in self.reflections]
            data[name] = np.concatenate(values).astype(np.float32)
        return data

    def observations(self, cell, spacegroup, columns=None):
        """The block's reflections as an unmerged rs.DataSet (see :func:`observation_table`)."""
        return observation_table(self.arrays(columns), cell, spacegroup)


def observation_table(arrays, cell, spacegroup):
    """An unmerged rs.DataSet indexed by H, K, L from a dict of column arrays.

    Parameters
    ----------
    arrays : dict
        H, K, L and columns named in :data:`OBSERVATION_TYPES`.
    cell : gemmi.UnitCell
    spacegroup : gemmi.SpaceGroup

    Returns
    -------
    rs.DataSet
    """
    ds = rs.DataSet(arrays, cell=cell, spacegroup=spacegroup, merged=False)
    types = {c: OBSERVATION_TYPES.get(c, "H") for c in arrays}
    return ds.astype(types, copy=False).set_index(["H", "K", "L"])
