"""The X-ray wavelength of the input files, for the headers of the output MTZ files.

Merging does not use the wavelength, so the observation table does not carry
it; the writers only need one value per merge.  It is read from the head of
each input: a CrystFEL stream's first ``photon_energy_eV`` (or the geometry's
``photon_energy``) in eV, a DIALS ``.expt``'s first beam (also for its ``.refl``),
an MTZ's datasets.
"""

import gzip
import json
import re

import gemmi
import numpy as np
import reciprocalspaceship as rs

#: Bytes of a stream searched for the photon energy.
_STREAM_HEAD_BYTES = 4 << 20

_ENERGY = (re.compile(rb"photon_energy_eV\s*=\s*([0-9.eE+-]+)"),
           re.compile(rb"(?m)^\s*photon_energy\s*=\s*([0-9.eE+-]+)\s*(?:eV)?\s*$"))


def _stream_wavelength(path):
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rb") as handle:
        head = handle.read(_STREAM_HEAD_BYTES)
    for pattern in _ENERGY:
        match = pattern.search(head)
        if match:
            try:
                energy = float(match.group(1))
            except ValueError:
                continue
            if energy > 0:
                return float(rs.utils.ev2angstroms(energy))
    return None


def _expt_wavelength(path):
    with open(path, "rb") as handle:
        beams = json.load(handle).get("beam") or [{}]
    return beams[0].get("wavelength")


def _mtz_wavelength(path):
    mtz = gemmi.read_mtz_file(path, with_data=False)
    values = [d.wavelength for d in mtz.datasets if d.wavelength > 0]
    return values[-1] if values else None


def file_wavelength(path):
    """Wavelength (Angstrom) recorded in one input file, or None.

    Parameters
    ----------
    path : str

    Returns
    -------
    float or None
        None when the file records none or is not a readable stream, ``.expt``
        (or the ``.refl`` of a DIALS pair) or MTZ (its reader reports damage; this is only a header value).
    """
    path = str(path)
    if path.endswith(".refl"):  # a DIALS pair is given by its reflection table: the beam is in the .expt
        path = path[: -len(".refl")] + ".expt"
    readers = {".expt": _expt_wavelength, ".mtz": _mtz_wavelength}
    suffix = next((s for s in readers if path.endswith(s)), None)
    reader = readers.get(suffix, _stream_wavelength if ".stream" in path else None)
    if reader is None:
        return None
    try:
        value = reader(path)
    except (OSError, ValueError, RuntimeError, AttributeError, TypeError):
        return None
    return float(value) if value and np.isfinite(value) and value > 0 else None


def input_wavelength(paths):
    """The median wavelength (Angstrom) over the input files that record one, or None."""
    values = [w for w in map(file_wavelength, paths) if w is not None]
    return float(np.median(values)) if values else None
