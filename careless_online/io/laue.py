"""Laue spots to observation rows: one row per harmonic, the spot's intensity on each.

A Laue file holds one row per recorded spot, with its wavelength in a
column (``Wavelength`` by default).  :func:`expand_spots` turns those rows
into one row per harmonic (:func:`careless_online.io.harmonics.expand_harmonics`):
the harmonic's index ``n h_1`` replaces the written one, its wavelength
``lambda_1 / n`` the spot's, and two columns are added,

==============  ==========================================================
``spot``        the spot's number within its image (float32, exact below 2^24)
``harmonic``    the order ``n`` of the row's reflection on the spot's ray
==============  ==========================================================

while I, SigI and every other column are the spot's.  Rows of one spot stay
consecutive through the cache and the batches (both keep the order within an
image), so a batch knows which rows add up to one measured intensity
(:class:`careless_online.io.spots.SpotSegments`).
"""

from dataclasses import dataclass, replace

import gemmi
import numpy as np

from careless_online.errors import InputError
from careless_online.io.harmonics import expand_harmonics

#: Columns :func:`expand_spots` adds.
SPOT_COLUMNS = ("spot", "harmonic")


@dataclass(frozen=True)
class LaueOptions:
    """How Laue spots are read.

    Attributes
    ----------
    wavelength_key : str
        Column of each spot's wavelength (Angstrom).
    wavelength_range : (float, float)
        The beam's band ``(lo, hi)`` in Angstrom, ``0 < lo < hi``.
    """

    wavelength_key: str = "Wavelength"
    wavelength_range: tuple = (0.0, 0.0)

    def __post_init__(self):
        if not str(self.wavelength_key).strip():
            raise InputError("--wavelength-key is empty")
        low, high = (float(x) for x in self.wavelength_range)
        if not (np.isfinite(low) and np.isfinite(high) and 0 < low < high):
            raise InputError(f"--wavelength-range needs 0 < LO < HI in Angstrom (got {low:g} {high:g})")
        object.__setattr__(self, "wavelength_range", (low, high))

    def to_dict(self):
        """JSON-serializable copy."""
        return {"wavelength_key": self.wavelength_key, "wavelength_range": list(self.wavelength_range)}

    @classmethod
    def from_dict(cls, value):
        """Inverse of :meth:`to_dict` (an instance or None passes through)."""
        if value is None or isinstance(value, cls):
            return value
        return cls(value["wavelength_key"], tuple(value["wavelength_range"]))


def spot_wavelengths(data, key, path):
    """The wavelength column of a file's spots; InputError naming the file if it has none."""
    if key not in data.columns:
        shown = ", ".join(c for c in data.columns if c not in ("H", "K", "L", "image"))
        raise InputError(f"no wavelength column '{key}' (columns: {shown}); name it with --wavelength-key", path)
    return data[key].to_numpy(np.float64)


def out_of_band(wavelength, band, path, drop_invalid):
    """Mask of spots whose wavelength is outside ``band``; InputError unless ``drop_invalid``."""
    low, high = band
    tolerance = 1e-6 * high
    with np.errstate(invalid="ignore"):
        outside = ~((wavelength >= low - tolerance) & (wavelength <= high + tolerance))
    if outside.any() and not drop_invalid:
        finite = wavelength[np.isfinite(wavelength)]
        spread = f"{finite.min():.4g}-{finite.max():.4g}" if len(finite) else "none finite"
        raise InputError(f"{int(outside.sum())} of {len(wavelength)} spots have a wavelength outside "
                         f"--wavelength-range {low:g} {high:g} A (the file's: {spread} A); widen the range, "
                         "or --drop-invalid to discard them", path)
    return outside


def spot_numbers(image):
    """Each row's number among the rows of its image, in file order (0, 1, ...)."""
    image = np.asarray(image)
    order = np.argsort(image, kind="stable")
    sorted_image = image[order]
    starts = np.flatnonzero(np.r_[True, sorted_image[1:] != sorted_image[:-1]])
    counts = np.diff(np.r_[starts, len(image)])
    numbers = np.empty(len(image), dtype=np.int64)
    numbers[order] = np.arange(len(image)) - np.repeat(starts, counts)
    return numbers


def expand_spots(raw, cell, spacegroup, dmin, laue, drop_invalid=False):
    """One row per harmonic of each spot of a file.

    Parameters
    ----------
    raw : careless_online.io.readers.RawReflections
        The spots as read.
    cell : gemmi.UnitCell
    spacegroup : gemmi.SpaceGroup
    dmin : float
        Resolution limit of the merge.
    laue : LaueOptions
    drop_invalid : bool
        Discard spots outside the band (else refuse the file).

    Returns
    -------
    raw : RawReflections
        Rows per harmonic (see the module docstring).
    dropped : dict
        Spots dropped, by reason.
    """
    data = raw.data
    wavelength = spot_wavelengths(data, laue.wavelength_key, raw.path)
    outside = out_of_band(wavelength, laue.wavelength_range, raw.path, drop_invalid)
    indexed = np.any(data[["H", "K", "L"]].to_numpy() != 0, axis=1)
    spots = np.flatnonzero(~outside & indexed)
    spot_number = spot_numbers(data["image"].to_numpy())
    harmonics = expand_harmonics(data[["H", "K", "L"]].to_numpy()[spots], wavelength[spots], cell, spacegroup,
                                 laue.wavelength_range, dmin)
    rows = spots[harmonics["spot"]]
    expanded = data.iloc[rows].reset_index(drop=True)
    expanded[["H", "K", "L"]] = harmonics["hkl"]
    expanded[laue.wavelength_key] = harmonics["wavelength"].astype(np.float32)
    expanded["spot"] = spot_number[rows].astype(np.float32)
    expanded["harmonic"] = harmonics["order"].astype(np.float32)
    n_with = len(np.unique(rows))
    dropped = {"wavelength outside the band": int(outside.sum()),
               "no harmonic in the band, to dmin and present": int(len(spots) - n_with)}
    return replace(raw, data=expanded), dropped


def file_band(path, key):
    """``(min, max)`` of the wavelength column of an MTZ file (its finite, positive values).

    Raises
    ------
    InputError
        For a file without the column or without a usable wavelength.
    """
    try:
        mtz = gemmi.read_mtz_file(str(path))
    except (RuntimeError, ValueError) as err:
        raise InputError(f"not a readable MTZ file ({str(err).splitlines()[0][:120]})", path) from None
    labels = [c.label for c in mtz.columns]
    if key not in labels:
        raise InputError(f"no wavelength column '{key}' (columns: {', '.join(labels)}); name it with "
                         "--wavelength-key", path)
    values = np.asarray(mtz.column_with_label(key).array, dtype=np.float64)
    values = values[np.isfinite(values) & (values > 0)]
    if not len(values):
        raise InputError(f"the wavelength column '{key}' holds no positive value", path)
    return float(values.min()), float(values.max())


def data_band(paths, key):
    """The band spanned by the spots of all ``paths``: the default ``--wavelength-range``."""
    bands = np.array([file_band(path, key) for path in paths])
    return float(bands[:, 0].min()), float(bands[:, 1].max())


def prediction_columns(table_options):
    """Laue columns of the predictions file, with their MTZ types: ``spot``, ``harmonic`` and the wavelength.

    Parameters
    ----------
    table_options : dict
        A cache's :meth:`~careless_online.io.table.TableOptions.to_dict`.

    Returns
    -------
    dict
        Empty for monochromatic data.
    """
    laue = LaueOptions.from_dict(table_options.get("laue"))
    if laue is None:
        return {}
    return {"spot": "I", "harmonic": "I", laue.wavelength_key: "R"}
