"""From raw reflections to the observation table the model learns from.

One row per observation with the columns

========================  ==========================================================
``image_id``              global image number (int32), over all input files
``file_id``               index of the input file (int32)
``Hobs, Kobs, Lobs``      Miller indices as indexed (int32)
``H, K, L``               indices mapped to the reciprocal ASU (int32)
``plus``                  1 for the Friedel-plus member, 0 for minus (int8)
``refl_id``               id of the unique reflection (int32, see ReflectionIndex)
``centric``, ``epsilon``  of that reflection
``dHKL``                  resolution (Angstrom)
``I``, ``SigI``           intensity and its uncertainty (float32)
any other column          candidate metadata (float32), e.g. XDET, ewald_offset
========================  ==========================================================
"""

from dataclasses import dataclass, field

import gemmi
import numpy as np
import pandas as pd
import reciprocalspaceship as rs

from careless_online.errors import InputError
from careless_online.io.laue import LaueOptions, expand_spots
from careless_online.io.outliers import REASON as OUTLIER_REASON, implausible
from careless_online.io.reflections import ReflectionIndex, map_to_asu


@dataclass
class TableOptions:
    """How raw reflections become observations.

    Attributes
    ----------
    spacegroup : str or None
        Space group override (else the file's).
    cell : sequence of 6 floats or None
        Unit cell override (else the file's).
    anomalous : bool
        Keep Friedel mates apart.
    dmin : float or None
        Resolution cut in Angstrom (else the data's own limit).
    isigi_cutoff : float or None
        Drop observations with I/SigI below this.
    cell_tolerance : float
        Images whose cell lengths deviate by more than this fraction (or
        whose angles deviate by more than 100 times this, in degrees) from
        the reference cell are dropped.
    drop_invalid : bool
        Skip damaged records instead of refusing the file: observations with
        a NaN/inf or enormous intensity or sigma, a non-positive sigma, a
        NaN/inf metadata value, and damaged stream chunks.  What is skipped is counted in the load report.
    intensity_key, uncertainty_key, image_key : str or None
        MTZ column overrides for I, SigI and the image number.
    laue : careless_online.io.laue.LaueOptions or None
        Laue spots: each becomes one row per harmonic
        (:func:`careless_online.io.laue.expand_spots`) before anything else.
    """

    spacegroup: object = None
    cell: object = None
    anomalous: bool = False
    dmin: object = None
    isigi_cutoff: object = None
    cell_tolerance: float = 0.05
    drop_invalid: bool = False
    intensity_key: object = None
    uncertainty_key: object = None
    image_key: object = None
    laue: object = None

    def __post_init__(self):
        self.laue = LaueOptions.from_dict(self.laue)
        if not (np.isfinite(self.cell_tolerance) and self.cell_tolerance > 0):
            raise InputError(f"--cell-tolerance must be a positive fraction (got {self.cell_tolerance})")
        if self.dmin is not None and not (np.isfinite(self.dmin) and self.dmin > 0):
            raise InputError(f"--dmin must be positive (got {self.dmin})")
        if self.isigi_cutoff is not None and not np.isfinite(self.isigi_cutoff):
            raise InputError(f"--isigi-cutoff must be a number (got {self.isigi_cutoff})")
        for flag, key in (("--intensity-key", self.intensity_key), ("--uncertainty-key", self.uncertainty_key),
                          ("--image-key", self.image_key)):
            if key is not None and not str(key).strip():
                raise InputError(f"{flag} is empty")

    def to_dict(self):
        """JSON-serializable copy."""
        return {
            "spacegroup": None if self.spacegroup is None else str(self.spacegroup),
            "cell": None if self.cell is None else [float(x) for x in self.cell],
            "anomalous": bool(self.anomalous),
            "dmin": None if self.dmin is None else float(self.dmin),
            "isigi_cutoff": None if self.isigi_cutoff is None else float(self.isigi_cutoff),
            "cell_tolerance": float(self.cell_tolerance),
            "drop_invalid": bool(self.drop_invalid),
            "intensity_key": self.intensity_key,
            "uncertainty_key": self.uncertainty_key,
            "image_key": self.image_key,
            **({} if self.laue is None else {"laue": self.laue.to_dict()}),
        }


@dataclass
class LoadReport:
    """Counts of what was read, kept and dropped, and why."""

    read: int = 0
    kept: int = 0
    images_read: int = 0
    images_dropped_cell: int = 0
    dropped: dict = field(default_factory=dict)
    damaged_chunks: int = 0
    first_damage: str = ""
    no_image_cells: bool = False
    duplicate_images: int = 0
    duplicate_rows: int = 0

    def drop(self, reason, count):
        """Record ``count`` observations dropped for ``reason``."""
        if count:
            self.dropped[reason] = self.dropped.get(reason, 0) + int(count)

    def repeats(self, n_rows, n_images, n_image_rows):
        """Record repeated rows and images dropped (:class:`~careless_online.io.duplicates.RepeatFilter`)."""
        self.duplicate_rows += int(n_rows)
        self.duplicate_images += int(n_images)
        self.drop("repeated row of its image", n_rows)
        self.drop("duplicate image", n_image_rows)
        self.kept -= int(n_rows) + int(n_image_rows)

    def merge(self, other):
        """Add the counts of another report to this one."""
        self.read += other.read
        self.kept += other.kept
        self.images_read += other.images_read
        self.images_dropped_cell += other.images_dropped_cell
        self.duplicate_images += other.duplicate_images
        self.duplicate_rows += other.duplicate_rows
        for reason, count in other.dropped.items():
            self.drop(reason, count)
        self.first_damage = self.first_damage or other.first_damage
        self.damaged_chunks += other.damaged_chunks
        self.no_image_cells = self.no_image_cells or other.no_image_cells

    def skip_damaged(self, damaged):
        """Count damaged chunks ``[(byte offset, reason), ...]`` that were skipped."""
        if damaged and not self.first_damage:
            self.first_damage = f"first at byte {damaged[0][0]}: {damaged[0][1]}"
        self.damaged_chunks += len(damaged)

    def summary(self):
        """One line for the log."""
        parts = [f"{self.kept} of {self.read} observations kept from {self.images_read} images"]
        if self.images_dropped_cell:
            parts.append(f"{self.images_dropped_cell} images dropped for their cell")
        if self.no_image_cells:
            parts.append("no per-image cells, so --cell-tolerance drops nothing")
        if self.damaged_chunks:
            plural = "s" if self.damaged_chunks > 1 else ""
            parts.append(f"WARNING {self.damaged_chunks} damaged chunk{plural} skipped ({self.first_damage})")
        parts += [f"{n} dropped ({why})" for why, n in sorted(self.dropped.items())]
        return "; ".join(parts)


def parse_spacegroup(text, path=None):
    """A gemmi.SpaceGroup from a name or number; InputError if unknown."""
    if isinstance(text, gemmi.SpaceGroup):
        return text
    try:
        sg = gemmi.SpaceGroup(int(text)) if str(text).strip().isdigit() else gemmi.SpaceGroup(str(text))
    except (ValueError, RuntimeError):
        raise InputError(f"unknown space group '{text}'", path) from None
    return sg


def parse_cell(values, path=None):
    """A gemmi.UnitCell from 6 numbers (or a comma/space separated string)."""
    if isinstance(values, gemmi.UnitCell):
        return values
    if isinstance(values, str):
        values = values.replace(",", " ").split()
    try:
        params = [float(v) for v in values]
    except (TypeError, ValueError):
        raise InputError(f"bad unit cell '{values}' (need a, b, c, alpha, beta, gamma)", path) from None
    if len(params) != 6 or min(params) <= 0 or max(params[3:]) >= 180:
        raise InputError(f"bad unit cell '{values}' (need a, b, c > 0 and angles in (0, 180))", path)
    return gemmi.UnitCell(*params)


def resolve_symmetry(raw, options):
    """Decide the reference cell and space group for a file.

    Parameters
    ----------
    raw : RawReflections
    options : TableOptions

    Returns
    -------
    (gemmi.UnitCell, gemmi.SpaceGroup)

    Raises
    ------
    InputError
        If either is unknown, or the cell is incompatible with the space group.
    """
    sg = parse_spacegroup(options.spacegroup, raw.path) if options.spacegroup is not None else raw.spacegroup
    if sg is None:
        raise InputError("the file does not give a space group; pass --spacegroups", raw.path)
    cell = parse_cell(options.cell, raw.path) if options.cell is not None else raw.cell
    if cell is None:
        raise InputError("the file does not give a unit cell; pass --cell", raw.path)
    params = cell.parameters
    if not (np.all(np.isfinite(params)) and min(params) > 0 and max(params[3:]) < 180 and cell.volume > 0):
        raise InputError(f"the file's unit cell {tuple(round(p, 2) for p in params)} is not valid; pass --cell",
                         raw.path)
    if not cell.is_compatible_with_spacegroup(sg):
        raise InputError(
            f"unit cell {tuple(round(p, 2) for p in cell.parameters)} is incompatible with space group {sg.xhm()}",
            raw.path,
        )
    return cell, sg


def default_dmin(raw, cell, options=None):
    """The data's own resolution limit: the smallest d of the observations that are kept.

    Observations of images dropped for their cell (``options.cell_tolerance``)
    and, under ``options.drop_invalid``, invalid rows do not count: a run of
    another crystal form appended to a stream must not set the resolution.
    When every image is dropped, all observations count (and the conversion
    then says why nothing is kept).

    Raises
    ------
    InputError
        When no observation has nonzero Miller indices (naming why).
    """
    options = options or TableOptions()
    data = raw.data
    if len(data) == 0:
        where = f" in the first {raw.n_chunks} chunks" if hasattr(raw, "n_chunks") else ""
        hint = "; give it with --dmin" if where else ""
        raise InputError(f"no observations{where} (no indexed crystal with reflections) to take the resolution "
                         f"limit from{hint}", raw.path)
    hkl = data[["H", "K", "L"]].to_numpy()
    keep = ~np.isin(data["image"].to_numpy(), _bad_cell_images(raw, cell, options.cell_tolerance))
    if options.drop_invalid:
        keep &= ~np.any(_invalid_masks(data), axis=0)
    indexed = np.any(hkl != 0, axis=1)
    if not (keep & indexed).any():
        keep = np.ones(len(hkl), dtype=bool)
    if not indexed.any():
        raise InputError("no indexed reflections (every observation has Miller indices 0,0,0)", raw.path)
    return float(np.min(cell.calculate_d_array(hkl[keep & indexed])))


def _bad_cell_images(raw, cell, tolerance):
    if not raw.image_cells:
        return np.zeros(0, dtype=np.int64)
    images = np.fromiter(raw.image_cells.keys(), dtype=np.int64)
    params = np.asarray(list(raw.image_cells.values()), dtype=float)
    ref = np.asarray(cell.parameters, dtype=float)
    length_dev = np.abs(params[:, :3] / ref[:3] - 1.0).max(axis=1)
    angle_dev = np.abs(params[:, 3:] - ref[3:]).max(axis=1)
    bad = (length_dev > tolerance) | (angle_dev > 100.0 * tolerance)
    return images[bad]


#: Fewest observations at absent positions from which a space group can be refused.
MIN_ABSENT_OBSERVATIONS = 20
#: Fraction of those that must be strong (I/SigI > 3) to refuse the group.  At
#: truly absent positions I/SigI is noise, so strong ones are rare outliers
#: (0.1 % for Gaussian noise, a few % in poor data); in a wrong group they are
#: ordinary reflections, of which typically half or more are strong.
STRONG_ABSENT_FRACTION = 0.25


def _check_absences(hkl, isigi, sg, path):
    """Refuse a space group whose systematic absences are strongly observed."""
    absent = rs.utils.is_absent(hkl, sg) if len(hkl) else np.zeros(0, bool)
    absent = np.asarray(absent, dtype=bool)
    n_absent = int(absent.sum())
    if n_absent >= MIN_ABSENT_OBSERVATIONS:
        n_strong = int((isigi[absent] > 3.0).sum())
        if n_strong >= STRONG_ABSENT_FRACTION * n_absent:
            raise InputError(
                f"space group {sg.xhm()} contradicts the data: {n_strong} of {n_absent} observations at "
                "systematically absent positions have I/SigI > 3",
                path,
            )
    return absent


#: Largest |I| or SigI accepted: the model squares them in float32 (max ~3e38).
MAX_MAGNITUDE = 1e15


def check_damage(raw, options, report=None):
    """Apply the damaged-chunk policy: refuse the file, or skip and count (``drop_invalid``).

    Raises
    ------
    InputError
        Naming the first damaged chunk, unless ``options.drop_invalid``.
    """
    if not raw.damaged:
        return
    offset, reason = raw.damaged[0]
    if not options.drop_invalid:
        count = f"{len(raw.damaged)} damaged chunk{'s' if len(raw.damaged) > 1 else ''}"
        raise InputError(f"damaged chunk at byte {offset}: {reason} ({count} in this block; "
                         "--drop-invalid skips them)", raw.path)
    if report is not None:
        report.skip_damaged(raw.damaged)


def _invalid_masks(data):
    """Rows with a bad I (non-finite or enormous), bad SigI (also <= 0), bad metadata (non-finite): three masks."""
    intensity = data["I"].to_numpy(np.float64)
    sigma = data["SigI"].to_numpy(np.float64)
    bad_i = ~np.isfinite(intensity) | (np.abs(intensity) > MAX_MAGNITUDE)
    bad_sigma = ~np.isfinite(sigma) | (sigma <= 0) | (sigma > MAX_MAGNITUDE)
    metadata = [c for c in data.columns if c not in ("H", "K", "L", "I", "SigI", "image")]
    bad_meta = np.zeros(len(data), dtype=bool)
    for name in metadata:
        bad_meta |= ~np.isfinite(data[name].to_numpy(np.float64))
    return bad_i, bad_sigma, bad_meta


def _invalid_rows(data, options, path):
    """Rows with a non-finite or enormous I or SigI, SigI <= 0, or non-finite metadata.

    InputError unless ``options.drop_invalid``.
    """
    bad_i, bad_sigma, bad_meta = _invalid_masks(data)
    invalid = bad_i | bad_sigma | bad_meta
    if invalid.any() and not options.drop_invalid:
        parts = [f"{int(bad_i.sum())} observations have a NaN, inf or enormous intensity",
                 f"{int(bad_sigma.sum())} observations have a NaN, non-positive or enormous sigma",
                 f"{int(bad_meta.sum())} observations have a NaN or inf metadata value"]
        parts = [p for p in parts if not p.startswith("0 ")]
        raise InputError(f"{' and '.join(parts)} (enormous: > {MAX_MAGNITUDE:.0e}; use --drop-invalid "
                         "to discard them)", path)
    return invalid


def make_observations(raw, index, file_id, image_offset, options):
    """Turn one file's (or block's) raw reflections into observation rows.

    Parameters
    ----------
    raw : RawReflections
    index : ReflectionIndex
        The unique reflections of the merge (fixes ASU, dmin and Friedel handling).
    file_id : int
    image_offset : int
        Added to the file's image numbers to give global ``image_id``.
    options : TableOptions

    Returns
    -------
    table : pandas.DataFrame
        Columns as in the module docstring.
    report : LoadReport
    """
    report = LoadReport(read=len(raw.data), images_read=int(raw.data["image"].nunique()) if len(raw.data) else 0)
    check_damage(raw, options, report)
    if len(raw.data) == 0:
        return pd.DataFrame(), report
    if options.laue is not None:
        raw = _harmonic_rows(raw, index, options, report)
    data = raw.data
    report.no_image_cells = not raw.image_cells
    intensity = data["I"].to_numpy(np.float64)
    sigma = data["SigI"].to_numpy(np.float64)
    hkl = data[["H", "K", "L"]].to_numpy(np.int32)
    keep = _measured_rows(raw, index, options, report, intensity, sigma, hkl)
    d = index.cell.calculate_d_array(hkl).astype(np.float32)
    high = keep & (d < index.dmin)
    report.drop("beyond dmin", high.sum())
    keep &= ~high
    rows, asu, plus, refl_id = _indexed_rows(keep, hkl, index, report)
    table = pd.DataFrame({
        "image_id": (data["image"].to_numpy(np.int64)[rows] + image_offset).astype(np.int32),
        "file_id": np.full(len(rows), file_id, dtype=np.int32),
        "Hobs": hkl[rows, 0], "Kobs": hkl[rows, 1], "Lobs": hkl[rows, 2],
        "H": asu[:, 0], "K": asu[:, 1], "L": asu[:, 2],
        "plus": plus.astype(np.int8),
        "refl_id": refl_id,
        "dHKL": d[rows],
        "I": intensity[rows].astype(np.float32),
        "SigI": sigma[rows].astype(np.float32),
    })
    for name in data.columns:
        if name not in table and name not in ("H", "K", "L", "image"):
            table[name] = data[name].to_numpy(np.float32)[rows]
    report.kept = len(table)
    return table, report


def _measured_rows(raw, index, options, report, intensity, sigma, hkl):
    """Rows kept by the checks of the measurement: valid numbers, the image's cell, plausibility, absences, I/SigI.

    Returns a boolean mask; every dropped row is counted in ``report`` under its reason.
    """
    data = raw.data
    invalid = _invalid_rows(data, options, raw.path)
    keep = ~invalid
    report.drop("invalid I or SigI", invalid.sum())

    bad_images = _bad_cell_images(raw, index.cell, options.cell_tolerance)
    if len(bad_images):
        in_bad = np.isin(data["image"].to_numpy(), bad_images)
        report.images_dropped_cell += len(bad_images)
        report.drop("image cell off reference", (in_bad & keep).sum())
        keep &= ~in_bad

    rows = np.flatnonzero(keep)
    outlier = implausible(intensity[rows], sigma[rows], data["image"].to_numpy()[rows])
    report.drop(OUTLIER_REASON, outlier.sum())
    keep[rows[outlier]] = False

    isigi = np.where(keep, intensity / np.where(keep, sigma, 1), 0)
    absent = _check_absences(hkl[keep], isigi[keep], index.spacegroup, raw.path)
    absent_all = np.zeros(len(keep), dtype=bool)
    absent_all[np.flatnonzero(keep)] = absent
    report.drop("systematic absence", absent_all.sum())
    keep &= ~absent_all

    if options.isigi_cutoff is not None:
        low = keep & (isigi < options.isigi_cutoff)
        report.drop("I/SigI cutoff", low.sum())
        keep &= ~low
    return keep


def _indexed_rows(keep, hkl, index, report):
    """The kept rows whose reflection is in the index: (rows, ASU indices, Friedel plus, reflection ids)."""
    rows = np.flatnonzero(keep)
    asu, plus = map_to_asu(hkl[rows], index.spacegroup)
    refl_id = index.lookup(asu, plus)
    missing = refl_id < 0
    report.drop("not in the reflection index", missing.sum())
    return rows[~missing], asu[~missing], plus[~missing], refl_id[~missing]


def _harmonic_rows(raw, index, options, report):
    """Laue spots as one row per harmonic; counts the spots dropped and the rows added."""
    raw, dropped = expand_spots(raw, index.cell, index.spacegroup, index.dmin, options.laue, options.drop_invalid)
    for reason, count in dropped.items():
        report.drop(f"Laue spot: {reason}", count)
    report.read = len(raw.data) + sum(dropped.values())  # a harmonic row is one observation
    return raw


def build_index(raw, options):
    """The ReflectionIndex implied by the first file and the options."""
    check_damage(raw, options)
    cell, sg = resolve_symmetry(raw, options)
    dmin = float(options.dmin) if options.dmin is not None else default_dmin(raw, cell, options)
    if dmin <= 0:
        raise InputError(f"--dmin must be positive (got {dmin})", raw.path)
    return ReflectionIndex.from_cell(cell, sg, dmin, options.anomalous)
