"""The metadata keys an input file offers, known before its data are read.

A metadata key names a column of the observation table: one of the file's
own numeric columns, or one made while converting (:data:`DERIVED`).  A
CrystFEL stream and a DIALS reflection table have fixed columns; an MTZ
file lists its columns in its header, which gemmi reads without the data.
Only the standard library, numpy and gemmi are imported, so the command line
can check the keys before TensorFlow or the readers load.
"""

import gemmi

from careless_online.io.stream_format import COLUMNS as STREAM_COLUMNS

#: Columns every observation table has, whatever the input (made while converting).
DERIVED = ("dHKL", "BATCH", "image_id", "file_id", "Hobs", "Kobs", "Lobs")

#: DIALS reflection-table columns kept as metadata, and their names in the observation table.
DIALS_RENAMES = {"xyzcal.px.0": "XDET", "xyzcal.px.1": "YDET", "s1.0": "s1x", "s1.1": "s1y",
                 "s1.2": "s1z", "delpsical.rad": "delpsi"}

#: Columns of a file that are never metadata (indices, symmetry operator, partiality flag, I and sigma).
_NOT_METADATA = {"H", "K", "L", "M/ISYM", "PARTIAL", "I", "SigI"}


def available_keys(path, kind):
    """The metadata keys an input can give.

    Parameters
    ----------
    path : str
    kind : str
        ``mtz``, ``stream`` or ``dials``.

    Returns
    -------
    set of str or None
        None for an MTZ file whose header gemmi cannot read (its reader
        reports the damage when the data are converted).
    """
    if kind == "stream":
        own = STREAM_COLUMNS
    elif kind == "dials":
        own = DIALS_RENAMES.values()
    else:
        try:
            own = [column.label for column in gemmi.read_mtz_file(str(path), with_data=False).columns]
        except RuntimeError:  # gemmi's error for a damaged or foreign file
            return None
    return (set(own) - _NOT_METADATA) | set(DERIVED)
