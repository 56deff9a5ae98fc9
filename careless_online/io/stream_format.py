"""The text of a CrystFEL stream: chunk boundaries, the target cell and one chunk's crystals.

A stream is a header (geometry, target unit cell) followed by chunks, one per
detector frame::

    ----- Begin chunk -----
    photon_energy_eV = 9700.0
    --- Begin crystal
    Cell parameters 7.9 7.9 3.8 nm, 90 90 90 deg
    astar = ... nm^-1          (also bstar, cstar)
    Reflections measured after indexing
       h    k    l          I   sigma(I)       peak background  fs/px  ss/px panel
     -37   11   -7     -15.11      20.15      14.00       7.51   17.5 1025.9 p0
    End of reflections
    --- End crystal
    ----- End chunk -----

Every crystal with reflections becomes one image.  Anything in a chunk that
does not follow this layout raises :class:`DamagedChunk` with the reason; the
caller decides what to do with the chunk (see docs/formats.md).

For each reflection the scattered-beam vector and its Ewald offset are
computed from the crystal's reciprocal basis :math:`A = (a^*, b^*, c^*)` and
the wavelength :math:`\\lambda`:

.. math::

    s_0 = (0, 0, 1/\\lambda), \\quad s_1 = A h + s_0, \\quad
    e = |s_1| - 1/\\lambda,

and the angular offset is the signed angle between :math:`q = A h` and its
projection :math:`q' = s_1 / (\\lambda |s_1|) - s_0` onto the Ewald sphere.
"""

import io
import re
from dataclasses import dataclass

import numpy as np

#: Columns of a parsed reflection row, in order.
COLUMNS = ("H", "K", "L", "I", "SigI", "peak", "background", "XDET", "YDET",
           "s1x", "s1y", "s1z", "ewald_offset", "angular_ewald_offset")
#: Largest |h|, |k|, |l| accepted (the reflection index packs them in 10 bits).
MAX_MILLER = 511

CHUNK_BEGIN = re.compile(rb"----- Begin chunk -----")
CHUNK_END = re.compile(rb"----- End chunk -----")
_CRYSTAL_BEGIN = "--- Begin crystal\n"
_CRYSTAL_END = "--- End crystal"
_ENERGY = re.compile(r"^photon_energy_eV\s*=\s*(\S+)", re.MULTILINE)
_CELL = re.compile(r"^Cell parameters(.*)$", re.MULTILINE)
_STAR = re.compile(r"^([abc])star\s*=(.*)$", re.MULTILINE)
_TABLE_START = "Reflections measured after indexing\n"
_TABLE_END = "End of reflections"
_HEADER_CELL = re.compile(r"^(a|b|c|al|be|ga)\s*=\s*(\S+)\s*(\S*)", re.MULTILINE)
_LATTICE = re.compile(r"^lattice_type\s*=\s*(\S+)", re.MULTILINE)


class DamagedChunk(ValueError):
    """A chunk that does not follow the stream layout; the message says why."""


@dataclass
class Crystal:
    """One indexed crystal of a chunk.

    Attributes
    ----------
    cell : tuple of 6 floats
        a, b, c (Angstrom), alpha, beta, gamma (degrees).
    rows : numpy.ndarray, shape (n, len(COLUMNS))
        One row per reflection, float64.
    """

    cell: tuple
    rows: np.ndarray


def _floats(text, count, what):
    """Exactly the first ``count`` numbers of ``text`` (words after them are ignored)."""
    words = text.replace(",", " ").split()
    try:
        values = [float(w) for w in words[:count]]
    except ValueError:
        raise DamagedChunk(f"non-numeric {what} '{text.strip()[:40]}'") from None
    if len(values) < count or not all(np.isfinite(values)):
        raise DamagedChunk(f"garbled {what} '{text.strip()[:40]}'")
    return values


def _cell(text):
    """'7.9 7.9 3.8 nm, 90 90 90 deg' -> (79, 79, 38, 90, 90, 90)."""
    match = _CELL.search(text)
    if match is None:
        raise DamagedChunk("crystal without 'Cell parameters'")
    numbers = re.findall(r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?", match.group(1))
    if len(numbers) < 6:
        raise DamagedChunk(f"garbled cell parameters '{match.group(1).strip()[:40]}'")
    a, b, c, al, be, ga = _floats(" ".join(numbers), 6, "cell parameters")
    if min(a, b, c) <= 0 or not all(0 < x < 180 for x in (al, be, ga)):
        raise DamagedChunk(f"impossible cell parameters '{match.group(1).strip()[:40]}'")
    return (10 * a, 10 * b, 10 * c, al, be, ga)


def _reciprocal_basis(text):
    """Columns a*, b*, c* in 1/Angstrom (the stream gives them in 1/nm)."""
    stars = {name: _floats(rest, 3, f"{name}star") for name, rest in _STAR.findall(text)}
    if sorted(stars) != ["a", "b", "c"]:
        raise DamagedChunk("crystal without astar, bstar and cstar")
    basis = np.array([stars["a"], stars["b"], stars["c"]]).T / 10.0
    if abs(np.linalg.det(basis)) < 1e-12:
        raise DamagedChunk("degenerate reciprocal basis")
    return basis


def _first_bad_line(lines):
    """Raise DamagedChunk naming the first reflection line that is not 9 or more numbers."""
    for number, line in enumerate(lines, start=1):
        words = line.split()
        if len(words) < 9:
            raise DamagedChunk(f"reflection line {number} has {len(words)} columns, needs 9 or more")
        _floats(" ".join(words[:9]), 9, f"reflection line {number}")
    raise DamagedChunk("unreadable reflection table")


def table_span(text):
    """Where the reflection lines of a crystal's text lie: (start, end), or None without a table.

    The lines start after the line naming the columns and end before ``End of reflections``
    (an empty span where that line does not end before it).
    """
    start = text.find(_TABLE_START)
    if start < 0:
        return None
    start += len(_TABLE_START)
    end = text.find(_TABLE_END, start)
    if end < 0:
        raise DamagedChunk("reflection table without 'End of reflections'")
    newline = text.find("\n", start)  # the first line names the columns
    first = start if newline < 0 else newline + 1
    return min(first, end), end


def _reflection_table(text):
    """The (n, 9) numbers h, k, l, I, sigma, peak, background, fs, ss of a crystal (n may be 0)."""
    span = table_span(text)
    rows = "" if span is None else text[span[0]:span[1]]
    if not rows.strip():
        return np.zeros((0, 9))
    try:
        table = np.loadtxt(io.StringIO(rows), usecols=range(9), comments=None, ndmin=2, dtype=np.float64)
    except ValueError:
        table = None
    if table is None or not np.isfinite(table).all():
        _first_bad_line(rows.splitlines())
    if np.any(table[:, :3] != np.rint(table[:, :3])) or np.any(np.abs(table[:, :3]) > MAX_MILLER):
        raise DamagedChunk(f"a Miller index that is not an integer within +-{MAX_MILLER}")
    return table


_COUNT = re.compile(r"^num_reflections\s*=\s*(\S+)", re.MULTILINE)


def check_count(head, n_rows):
    """The crystal's ``num_reflections`` (where given) must equal the rows of its table."""
    match = _COUNT.search(head)
    if match is None:
        return
    announced = _floats(match.group(1), 1, "num_reflections")[0]
    if announced != n_rows:
        raise DamagedChunk(f"num_reflections = {match.group(1)} but the table has {n_rows} lines")


def _ewald(table, basis, wavelength):
    """s1, Ewald offset and angular Ewald offset of each reflection (see module docstring)."""
    inv = 1.0 / wavelength
    q = table[:, :3] @ basis.T
    s1 = q + np.array([0.0, 0.0, inv])
    norm = np.linalg.norm(s1, axis=1)
    offset = norm - inv
    q_sphere = s1 * (inv / np.maximum(norm, 1e-30))[:, None] - np.array([0.0, 0.0, inv])
    cross = np.linalg.norm(np.cross(q, q_sphere), axis=1)
    angle = np.arctan2(cross, np.einsum("ij,ij->i", q, q_sphere))
    return np.column_stack([s1, offset, np.sign(offset) * angle])


def _wavelength(text, wavelength):
    if wavelength is not None:
        return float(wavelength)
    match = _ENERGY.search(text)
    if match is None:
        raise DamagedChunk("no photon_energy_eV line")
    energy = _floats(match.group(1), 1, "photon energy")[0]
    if energy <= 0:
        raise DamagedChunk(f"non-positive photon energy {energy}")
    import reciprocalspaceship as rs  # here, not at the top: the CLI's checks import this module before any reader

    return float(rs.utils.ev2angstroms(energy))


def _crystal_texts(text):
    """The text between each ``--- Begin crystal`` line and the next ``--- End crystal``, in order."""
    texts, position = [], 0
    while True:
        begin = text.find(_CRYSTAL_BEGIN, position)
        if begin < 0:
            return texts
        begin += len(_CRYSTAL_BEGIN)
        end = text.find(_CRYSTAL_END, begin)
        if end < 0:
            return texts
        texts.append(text[begin:end])
        position = end + len(_CRYSTAL_END)


def _chunk_text(data):
    """A chunk's text; DamagedChunk if it is not UTF-8 or a crystal lacks its end marker."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as err:
        raise DamagedChunk(f"bytes that are not UTF-8 text at chunk offset {err.start}") from None
    text = lf_lines(text)
    if text.count("--- Begin crystal") != text.count("--- End crystal"):
        raise DamagedChunk("a crystal without its end marker")
    return text


def lf_lines(text):
    """``text`` with Windows line ends (CRLF) made Unix ones (LF), as the layout is parsed with LF.

    Streams copied through Windows tools or some transfer paths end their
    lines (all, or those of later chunks) with CRLF; read as they are, every
    crystal would be missed.
    """
    return text.replace("\r\n", "\n") if "\r" in text else text


def parse_chunk(data, wavelength=None):
    """Crystals of one chunk.

    Parameters
    ----------
    data : bytes
        The chunk, from its begin marker to its end marker.
    wavelength : float, optional
        Wavelength in Angstrom (else from the chunk's photon energy).

    Returns
    -------
    list of Crystal
        The crystals that have reflections, in file order.

    Raises
    ------
    DamagedChunk
        If any part of the chunk breaks the layout.
    """
    text = _chunk_text(data)
    crystals = []
    for block in _crystal_texts(text):
        table = _reflection_table(block)
        head = block.split(_TABLE_START, 1)[0]  # the crystal's parameters, before its reflections
        cell = _cell(head)
        check_count(head, len(table))
        if len(table) == 0:
            continue
        ewald = _ewald(table, _reciprocal_basis(head), _wavelength(text, wavelength))
        crystals.append(Crystal(cell, np.column_stack([table, ewald])))
    return crystals


@dataclass
class CrystalRows:
    """A crystal of a chunk whose reflection lines are still text (see :func:`chunk_rows`).

    Attributes
    ----------
    cell : tuple of 6 floats
    basis : numpy.ndarray, shape (3, 3)
        Reciprocal basis, 1/Angstrom.
    wavelength : float
    rows : bytes
        The reflection lines, each ending with ``\\n``.
    """

    cell: tuple
    basis: np.ndarray
    wavelength: float
    rows: bytes

    def crystal(self, table):
        """The :class:`Crystal` of these rows, given their numbers (as :func:`parse_chunk` computes it)."""
        return Crystal(self.cell, np.column_stack([table, _ewald(table, self.basis, self.wavelength)]))


def chunk_rows(data, wavelength=None):
    """The crystals of a chunk with their reflection lines left as text, for a parse of many chunks at once.

    Only for chunks of ASCII text whose every table's lines end with a newline; the
    caller parses the lines (:mod:`careless_online.io.stream_rows`) and checks each
    table's line count against its ``num_reflections``.

    Returns
    -------
    list of (CrystalRows, str)
        Crystals with reflection lines, in file order, each with the crystal's text
        before its table (for :func:`check_count`); None where the chunk needs
        :func:`parse_chunk` (not ASCII, a table not ending in a newline, a carriage
        return not followed by a newline), which also names any damage.

    Raises
    ------
    DamagedChunk
        For damage found on the way (:func:`parse_chunk` gives the reason to report).
    """
    if not data.isascii():
        return None
    text = _chunk_text(data)
    crystals = []
    for block in _crystal_texts(text):
        span = table_span(block)
        rows = "" if span is None else block[span[0]:span[1]]
        head = block.split(_TABLE_START, 1)[0]
        cell = _cell(head)
        if not rows.strip():
            check_count(head, 0)
            continue
        if not rows.endswith("\n") or ("\r" in rows and rows.count("\r") != rows.count("\r\n")):
            return None  # a carriage return inside a line ends the line for numpy.loadtxt
        rows = CrystalRows(cell, _reciprocal_basis(head), _wavelength(text, wavelength), rows.encode("ascii"))
        crystals.append((rows, head))
    return crystals


def chunk_spans(handle, scan_bytes):
    """Byte spans of the chunks of a stream, in file order.

    Each begin marker is paired with the first end marker after it.  A begin
    marker followed by another begin marker before any end marker starts a
    damaged chunk, whose span ends where the next chunk begins; a begin marker
    with no end marker after it (a stream still being written) is not
    returned.

    Parameters
    ----------
    handle : binary file
    scan_bytes : int
        Bytes read at a time (bounds memory).

    Returns
    -------
    list of (int, int, bool)
        (start, end, complete) of each chunk.
    """
    begins, ends = _marker_positions(handle, scan_bytes)
    spans = []
    j = 0
    for i, begin in enumerate(begins):
        while j < len(ends) and ends[j] <= begin:
            j += 1  # an end marker without a begin: stray text between chunks
        following = begins[i + 1] if i + 1 < len(begins) else None
        if j < len(ends) and (following is None or ends[j] <= following):
            spans.append((begin, ends[j], True))
        elif following is not None:
            spans.append((begin, following, False))
    return spans


def _marker_positions(handle, scan_bytes):
    """Starts of begin markers and ends of end markers, read piece by piece."""
    overlap = max(len(CHUNK_BEGIN.pattern), len(CHUNK_END.pattern)) - 1
    begins, ends = [], []
    carry, base = b"", 0  # base: file offset of carry[0]
    while True:
        piece = handle.read(scan_bytes)
        if not piece:
            break
        text = carry + piece
        # a match that ends inside the carried bytes was found in the last piece
        begins += [base + m.start() for m in CHUNK_BEGIN.finditer(text) if m.end() > len(carry)]
        ends += [base + m.end() for m in CHUNK_END.finditer(text) if m.end() > len(carry)]
        keep = min(overlap, len(text))
        carry, base = text[len(text) - keep:], base + len(text) - keep
    return begins, ends


_LATTICE_CELL = {
    "cubic": lambda p: [p[0], p[0], p[0], 90.0, 90.0, 90.0],
    "tetragonal": lambda p: [p[0], p[0], p[2], 90.0, 90.0, 90.0],
    "hexagonal": lambda p: [p[0], p[0], p[2], 90.0, 90.0, 120.0],
    "orthorhombic": lambda p: [p[0], p[1], p[2], 90.0, 90.0, 90.0],
}


def target_cell(header):
    """The target unit cell of a stream header, or None.

    Parameters
    ----------
    header : bytes
        The text before the first chunk.

    Returns
    -------
    list of 6 floats or None
        a, b, c (Angstrom), alpha, beta, gamma (degrees); None if the header
        has no complete, positive unit cell.
    """
    begin = header.find(b"----- Begin unit cell -----")
    end = header.find(b"----- End unit cell -----")
    if begin < 0 or end < begin:
        return None
    text = lf_lines(header[begin:end].decode("utf-8", "replace"))
    values = {}
    for name, number, unit in _HEADER_CELL.findall(text):
        try:
            value = float(number)
        except ValueError:
            return None
        values[name] = 10 * value if unit == "nm" else value
    if sorted(values) != sorted(["a", "b", "c", "al", "be", "ga"]):
        return None
    params = [values[k] for k in ("a", "b", "c", "al", "be", "ga")]
    lattice = _LATTICE.search(text)
    if lattice is not None and lattice.group(1) in _LATTICE_CELL:
        params = _LATTICE_CELL[lattice.group(1)](params)
    if not all(np.isfinite(params)) or min(params) <= 0 or max(params[3:]) >= 180:
        return None
    return params
