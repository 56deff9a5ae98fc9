"""Python entry points: simulate in memory, write files, or stream blocks to disk."""

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import reciprocalspaceship as rs

from careless_online.errors import InputError
from careless_online.simulate import structure
from careless_online.simulate.config import SimulationConfig
from careless_online.simulate.dials import DialsWriter
from careless_online.simulate.images import (
    OBSERVABLE_COLUMNS,
    OBSERVATION_TYPES,
    ImageBlock,
    ImageSimulator,
    observation_table,
)
from careless_online.simulate.mtz import write_images_csv, write_truth_mtz, write_unmerged_mtz
from careless_online.simulate.stream import StreamWriter

FORMATS = ("stream", "mtz", "dials")
#: Formats written unless others are asked for.
DEFAULT_FORMATS = ("stream", "mtz")


class _CrystalProperties:
    """Cell and space group of an object with a ``truth`` DataSet."""

    @property
    def cell(self):
        """gemmi.UnitCell of the reference crystal."""
        return self.truth.cell

    @property
    def spacegroup(self):
        """gemmi.SpaceGroup."""
        return self.truth.spacegroup


@dataclass
class Crystal(_CrystalProperties):
    """A simulated crystal: its true structure factors and its parameters.

    Attributes
    ----------
    truth : rs.DataSet
        Merged ASU truth (see :func:`structure.truth_table`).
    config : SimulationConfig
    anomalous : dict
        ``{element: (f', f'')}`` used.
    model : structure.AtomModel
        The atoms of the unit cell.
    """

    truth: rs.DataSet
    config: SimulationConfig
    anomalous: dict
    model: object = None


@dataclass
class SimulatedData(_CrystalProperties):
    """Everything :func:`simulate` made.

    Attributes
    ----------
    observations : rs.DataSet
        Unmerged, indexed by original H, K, L: BATCH (1-based image), I, SIGI,
        XDET, YDET, ewald_offset, s1x, s1y, s1z, and the truth PARTIALITY,
        SCALE, BFACTOR (image), POLARIZATION, FTRUE (|F(h)| of this h),
        IEXPECTED (expected signal photons), BACKGROUND, COUNTS.
    truth : rs.DataSet
        Merged ASU truth: F, PHI, F(+), PHI(+), F(-), PHI(-), DANO.
    images : pandas.DataFrame
        One row per image: image (0-based), BATCH, scale, bfactor, U00..U22
        (lab = U · crystal Cartesian), a, b, c, alpha, beta, gamma (the image's
        cell), A00..A22 (U B: columns a*, b*, c* in the lab frame, Å⁻¹),
        n_reflections.
    config : SimulationConfig
    anomalous : dict
        ``{element: (f', f'')}`` used.
    model : structure.AtomModel
        The atoms of the unit cell.
    """

    observations: rs.DataSet
    truth: rs.DataSet
    images: pd.DataFrame
    config: SimulationConfig
    anomalous: dict
    model: object = None


def make_crystal(config):
    """Build the atoms and true structure factors of a :class:`SimulationConfig`.

    The atoms use the generator seeded with ``(seed, 2**32 - 1)``, a stream
    no image uses.

    Returns
    -------
    Crystal
    """
    config = config.validated()
    rng = np.random.default_rng([config.seed, 2 ** 32 - 1])
    model, terms = structure.build_model(config, rng)
    truth = structure.truth_table(model, config.dmin, terms, solvent_terms(config))
    return Crystal(truth, config, terms, model)


def solvent_terms(config):
    """``(k_sol, B_sol)`` of a :class:`SimulationConfig`'s Babinet bulk solvent."""
    return float(config.bulk_solvent), float(config.bulk_solvent_b)


def simulate(n_images=100, seed=None, config=None, **params):
    """Simulate a serial-crystallography data set in memory.

    Parameters
    ----------
    n_images : int
        Number of (indexed) still images.
    seed : int, optional
        Random seed; overrides ``config.seed`` (0 by default).
    config : SimulationConfig, optional
        Base parameters; defaults to ``SimulationConfig()``.
    **params
        Any :class:`SimulationConfig` field (``dmin``, ``cell``, ``spacegroup``,
        ``pdb``, ``fpp``, ``mosaicity``, ...), overriding ``config``.

    Returns
    -------
    SimulatedData
    """
    config = _config(config, seed, params)
    _check_n_images(n_images)
    crystal = make_crystal(config)
    block = ImageSimulator(crystal.truth, config).block(0, int(n_images))
    return SimulatedData(block.observations(crystal.cell, crystal.spacegroup), crystal.truth,
                         block.image_table(), config, crystal.anomalous, crystal.model)


def write(sim, base, formats=DEFAULT_FORMATS, truth_columns=False):
    """Write a :class:`SimulatedData` to files named after ``base``.

    Parameters
    ----------
    sim : SimulatedData
    base : str
        Path prefix: ``<base>.stream``, ``<base>.mtz`` (unmerged), the
        folder ``<base>_dials`` (one DIALS stills pair ``<name>_000001.expt``
        and ``.refl`` of all images, see :mod:`careless_online.simulate.dials`),
        ``<base>_truth.mtz``, ``<base>_images.csv`` and ``<base>_model.pdb``
        (the atoms of the asymmetric unit) are written.
    formats : sequence of str
        Any of "stream", "mtz", "dials".  Truth and image table are always written.
    truth_columns : bool
        Put the truth columns in the unmerged MTZ too.

    Returns
    -------
    dict
        ``{"stream"|"mtz"|"dials"|"truth"|"images"|"model": path}`` of the files
        (for "dials": the folder) written.
    """
    formats = _formats(formats)
    paths = _paths(base, formats)
    if "stream" in formats:
        with StreamWriter(paths["stream"], sim.cell, sim.spacegroup, sim.config) as out:
            out.write_block(_block_from_table(sim.observations, sim.images))
    if "mtz" in formats:
        write_unmerged_mtz(sim.observations, paths["mtz"], truth_columns)
    if "dials" in formats:
        _dials_writer(paths, sim.spacegroup, sim.config).write_block(
            _block_from_table(sim.observations, sim.images))
    write_truth_mtz(sim.truth, paths["truth"])
    write_images_csv(sim.images, paths["images"])
    if sim.model is not None:
        structure.write_model(sim.model, paths["model"])
    else:
        del paths["model"]
    return paths


def simulate_to_files(base, n_images=100, formats=DEFAULT_FORMATS, seed=None, config=None,
                      block_size=500, interval=0.0, truth_columns=False, progress=None,
                      **params):
    """Simulate straight to files, one block of images at a time.

    The stream is written (and flushed) block by block, so a large stream never
    needs all its observations in memory, and ``interval`` > 0 makes it grow
    like a live experiment.  DIALS stills are written one pair per block
    into the folder ``<base>_dials`` (each member renamed into place when
    complete, see :class:`~careless_online.simulate.dials.DialsWriter`), so
    with ``interval`` > 0 pairs keep arriving.  Only the unmerged MTZ, when asked for, gathers
    all observations (observable columns only) before it is written.  The data
    equal those of :func:`simulate` with the same parameters.

    Parameters
    ----------
    base : str
        Path prefix, as for :func:`write`.
    n_images : int
    formats : sequence of str
        Any of "stream", "mtz", "dials".
    seed : int, optional
    config : SimulationConfig, optional
    block_size : int
        Images simulated (and appended to the stream, or written as one
        DIALS pair) at a time.
    interval : float
        Seconds to wait after each block.
    truth_columns : bool
        Put the truth columns in the unmerged MTZ too.
    progress : callable, optional
        Called as ``progress(images_done, n_images)`` after each block.
    **params
        :class:`SimulationConfig` fields.

    Returns
    -------
    dict
        Paths written, as for :func:`write`.
    """
    config = _config(config, seed, params)
    _check_n_images(n_images)
    if int(block_size) < 1:
        raise InputError(f"--block-size must be >= 1, got {block_size}")
    formats = _formats(formats)
    paths = _paths(base, formats)
    crystal = make_crystal(config)
    write_truth_mtz(crystal.truth, paths["truth"])
    structure.write_model(crystal.model, paths["model"])
    sim = ImageSimulator(crystal.truth, config)
    writer = StreamWriter(paths["stream"], crystal.cell, crystal.spacegroup, config) \
        if "stream" in formats else None
    dials = _dials_writer(paths, crystal.spacegroup, config) if "dials" in formats else None
    columns = list(OBSERVATION_TYPES) if truth_columns else OBSERVABLE_COLUMNS
    tables, images = [], []
    try:
        for start in range(0, int(n_images), int(block_size)):
            block = sim.block(start, min(start + int(block_size), int(n_images)))
            if writer is not None:
                writer.write_block(block)
            if dials is not None:
                dials.write_block(block)
            if "mtz" in formats:
                tables.append(block.arrays(columns))
            images.append(block.image_table())
            if progress is not None:
                progress(start + len(block.images), int(n_images))
            if interval > 0:
                time.sleep(interval)
    finally:
        if writer is not None:
            writer.close()
    if "mtz" in formats:
        arrays = {c: np.concatenate([t.pop(c) for t in tables]) for c in list(tables[0])}
        del tables
        write_unmerged_mtz(observation_table(arrays, crystal.cell, crystal.spacegroup),
                           paths["mtz"], True)
    write_images_csv(pd.concat(images, ignore_index=True), paths["images"])
    return paths


def _config(config, seed, params):
    base = SimulationConfig() if config is None else config
    if seed is not None:
        params = dict(params, seed=int(seed))
    try:
        return base.replace(**params)
    except TypeError as err:
        raise InputError(f"unknown simulation parameter ({err})") from None


def _check_n_images(n_images):
    if int(n_images) != n_images or n_images < 1:
        raise InputError(f"--n-images must be a whole number >= 1, got {n_images}")


def _formats(formats):
    formats = [formats] if isinstance(formats, str) else list(formats)
    bad = [f for f in formats if f not in FORMATS]
    if bad or not formats:
        raise InputError(f"unknown output format(s) {bad}; choose from {', '.join(FORMATS)}")
    return formats


def _paths(base, formats):
    base = Path(base)
    if base.parent != Path("") and not base.parent.is_dir():
        raise InputError("output folder does not exist", path=base.parent)
    paths = {f: f"{base}.{f}" for f in formats if f != "dials"}
    if "dials" in formats:
        paths["dials"] = f"{base}_dials"
    paths["truth"] = f"{base}_truth.mtz"
    paths["images"] = f"{base}_images.csv"
    paths["model"] = f"{base}_model.pdb"
    return paths


def _dials_writer(paths, spacegroup, config):
    """The writer of the DIALS pairs, into ``paths["dials"]``, named after the base."""
    prefix = Path(paths["dials"]).name[: -len("_dials")]
    return DialsWriter(paths["dials"], prefix, spacegroup, config)


def _block_from_table(observations, images):
    """Rebuild the per-image arrays of an :class:`ImageBlock` from in-memory tables."""
    batch = observations["BATCH"].to_numpy()
    order = np.argsort(batch, kind="stable")
    hkl = observations.get_hkls()[order]
    cols = {c: observations[c].to_numpy(float)[order]
            for c in ("I", "SIGI", "XDET", "YDET", "COUNTS", "ewald_offset", "s1x", "s1y", "s1z")}
    image_rows = images.to_dict("records")
    bounds = np.searchsorted(batch[order], [im["BATCH"] for im in image_rows] + [np.inf])
    bounds[-1] = len(batch)
    refls = []
    for i, im in enumerate(image_rows):
        sel = slice(bounds[i], bounds[i + 1])
        refls.append({"hkl": hkl[sel], **{c: values[sel] for c, values in cols.items() if c != "COUNTS"},
                      "peak": cols["COUNTS"][sel],
                      "background_estimate": cols["COUNTS"][sel] - cols["I"][sel]})
        im["BATCH"] = int(im["BATCH"])
    return ImageBlock(refls, image_rows)
