"""Many chunks of a stream at once: the reflection lines of all their crystals read in one numpy pass.

:func:`parse_chunks` gives, for every chunk, what :func:`stream_format.parse_chunk
<careless_online.io.stream_format.parse_chunk>` gives for it, number for number.  The crystals'
parameters are read chunk by chunk as before; their reflection lines, which are nearly all of a
stream, are gathered and read together by :func:`~careless_online.io.stream_rows.fixed_width_rows`.
A chunk any of whose lines leaves that layout, or that is damaged in any way, is read again by
``parse_chunk``, which then also names the damage.
"""

import numpy as np

from careless_online.io import stream_format, stream_rows
from careless_online.io.stream_format import DamagedChunk


def _one_by_one(data, wavelength):
    """``parse_chunk`` of one chunk: its crystals, or the DamagedChunk saying what is wrong."""
    try:
        return stream_format.parse_chunk(data, wavelength)
    except DamagedChunk as err:
        return err


def _rows_of(data, wavelength):
    """The chunk's crystals with their lines as text, or None where it needs ``parse_chunk``."""
    try:
        return stream_format.chunk_rows(data, wavelength)
    except DamagedChunk:
        return None


def _crystals(pieces, values, usable, first):
    """The chunk's :class:`~careless_online.io.stream_format.Crystal` list, or None if a table is not usable.

    ``pieces`` are the chunk's (CrystalRows, head); their lines are the rows of ``values`` from ``first`` on.
    """
    crystals = []
    for rows, head in pieces:
        last = first + rows.rows.count(b"\n")
        if not usable[first:last].all():
            return None
        try:
            stream_format.check_count(head, last - first)
        except DamagedChunk:
            return None
        crystals.append(rows.crystal(values[first:last]))
        first = last
    return crystals


def parse_chunks(chunks, wavelength=None):
    """The crystals of each chunk, as :func:`~careless_online.io.stream_format.parse_chunk` gives them.

    Parameters
    ----------
    chunks : list of bytes
        Chunks, each from its begin marker to its end marker.
    wavelength : float, optional
        Wavelength in Angstrom (else each chunk's photon energy).

    Returns
    -------
    list
        Per chunk, its list of Crystal, or the DamagedChunk that ``parse_chunk`` raises for it.
    """
    results = [None] * len(chunks)
    gathered = []  # (chunk number, [(CrystalRows, head), ...]) of the chunks read together
    for number, data in enumerate(chunks):
        pieces = _rows_of(data, wavelength)
        if pieces is None:
            results[number] = _one_by_one(data, wavelength)
        else:
            gathered.append((number, pieces))
    values, valid = stream_rows.fixed_width_rows(b"".join(rows.rows for _, pieces in gathered for rows, _ in pieces))
    usable = valid & np.all(np.abs(values[:, :3]) <= stream_format.MAX_MILLER, axis=1)
    first = 0
    for number, pieces in gathered:
        crystals = _crystals(pieces, values, usable, first)
        first += sum(rows.rows.count(b"\n") for rows, _ in pieces)
        results[number] = _one_by_one(chunks[number], wavelength) if crystals is None else crystals
    return results
