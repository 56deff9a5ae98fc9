"""Readers: one function per file format, each returning a :class:`RawReflections`.

A reader does not map to the ASU or filter; it only brings a file into the
common raw form: observed Miller indices ``H, K, L``, intensity ``I`` and its
uncertainty ``SigI``, a per-file image number ``image`` (0-based, in the order
the images appear), and every other numeric column the file offers as
candidate metadata (``XDET``, ``YDET``, ``ewald_offset``, ``s1x`` ...).

Streams can be read in blocks of chunks (:func:`iter_stream_blocks`) so that a
multi-gigabyte stream never needs to be in memory at once.
"""

import json
import math
import os
import re
from dataclasses import dataclass, field

import gemmi
import numpy as np
import pandas as pd
import reciprocalspaceship as rs

from careless_online.errors import InputError

#: Column names accepted for the intensity and its uncertainty, in order of preference.
INTENSITY_KEYS = ("I", "IMEAN", "IOBS", "intensity.sum.value")
UNCERTAINTY_KEYS = ("SigI", "SIGI", "SIGIMEAN", "SIGIOBS")
#: Column names accepted for the image number in MTZ files.
IMAGE_KEYS = ("BATCH", "image_id", "IMAGE")


@dataclass
class RawReflections:
    """Observations of one file (or one block of a stream) in the common raw form.

    Attributes
    ----------
    data : pandas.DataFrame
        Columns ``H, K, L`` (int32), ``I, SigI`` (float32), ``image`` (int64,
        0-based per file) and numeric metadata columns (float32).
    cell : gemmi.UnitCell or None
        The file's reference cell, if it states one.
    spacegroup : gemmi.SpaceGroup or None
        The file's space group, if it states one.
    image_cells : dict
        Optional per-image cells ``{image: (a, b, c, alpha, beta, gamma)}``.
    path : str
        The file the observations come from.
    """

    data: pd.DataFrame
    cell: object = None
    spacegroup: object = None
    image_cells: dict = field(default_factory=dict)
    path: str = ""


def file_format(path):
    """Name the format of ``path`` from its extension.

    Returns
    -------
    str
        One of ``"mtz"``, ``"stream"``, ``"dials"``.

    Raises
    ------
    InputError
        For an unknown extension.
    """
    ext = os.path.splitext(str(path))[1].lower()
    if ext == ".mtz":
        return "mtz"
    if ext == ".stream":
        return "stream"
    if ext in (".refl", ".expt"):
        return "dials"
    raise InputError("unknown file format (expected .mtz, .stream, or DIALS .expt/.refl)", path)


def _check_readable(path):
    if not os.path.exists(path):
        raise InputError("no such file", path)
    if os.path.getsize(path) == 0:
        raise InputError("file is empty", path)


def _pick(columns, candidates, what, path, override=None):
    if override is not None:
        if override not in columns:
            raise InputError(f"no column '{override}' for the {what} (columns: {', '.join(columns)})", path)
        return override
    for name in candidates:
        if name in columns:
            return name
    raise InputError(f"no {what} column (looked for {', '.join(candidates)}; columns: {', '.join(columns)})", path)


def _finish(frame, path, intensity_key=None, uncertainty_key=None, image_key=None):
    """Rename to the common columns and cast; keep numeric metadata."""
    columns = list(frame.columns)
    ikey = _pick(columns, INTENSITY_KEYS, "intensity", path, intensity_key)
    skey = _pick(columns, UNCERTAINTY_KEYS, "intensity uncertainty", path, uncertainty_key)
    bkey = _pick(columns, IMAGE_KEYS, "image (BATCH)", path, image_key)
    out = pd.DataFrame(
        {
            "H": frame["H"].to_numpy(np.int32),
            "K": frame["K"].to_numpy(np.int32),
            "L": frame["L"].to_numpy(np.int32),
            "I": frame[ikey].to_numpy(np.float32),
            "SigI": frame[skey].to_numpy(np.float32),
        }
    )
    batch = frame[bkey].to_numpy(np.int64)
    out["BATCH"] = batch.astype(np.float32)
    _, out["image"] = np.unique(batch, return_inverse=True)
    skip = {"H", "K", "L", ikey, skey, bkey, "M/ISYM", "PARTIAL"}
    for name in columns:
        if name in skip or name in out:
            continue
        values = frame[name]
        if pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values):
            out[name] = values.to_numpy(np.float32)
    return out


def read_mtz(path, intensity_key=None, uncertainty_key=None, image_key=None):
    """Read an unmerged MTZ file.

    Parameters
    ----------
    path : str
    intensity_key, uncertainty_key, image_key : str, optional
        Override the columns used for I, SigI and the image number
        (defaults: the first of :data:`INTENSITY_KEYS`, :data:`UNCERTAINTY_KEYS`,
        :data:`IMAGE_KEYS` present).

    Returns
    -------
    RawReflections
    """
    _check_readable(path)
    try:
        ds = rs.read_mtz(str(path))
    except Exception as err:  # gemmi raises RuntimeError on corrupt files
        raise InputError(f"not a readable MTZ file ({err})", path) from None
    if ds.merged:
        raise InputError("this MTZ is merged; careless_online needs unmerged observations", path)
    if ds.spacegroup is None:
        raise InputError("the MTZ has no space group", path)
    ds = ds.reset_index()
    data = _finish(ds, path, intensity_key, uncertainty_key, image_key)
    return RawReflections(data, ds.cell, ds.spacegroup, {}, str(path))


# ---------------------------------------------------------------------------- streams

_STREAM_COLUMNS = ["H", "K", "L", "I", "SigI", "peak", "background", "XDET", "YDET",
                   "s1x", "s1y", "s1z", "ewald_offset", "angular_ewald_offset"]


def _stream_loader(path):
    _check_readable(path)
    with open(path, "rb") as handle:
        head = handle.read(4096)
    if b"CrystFEL stream format" not in head:
        raise InputError("not a CrystFEL stream (no 'CrystFEL stream format' header)", path)
    return rs.io.crystfel.StreamLoader(str(path))


def _parse_cell_text(text):
    """'7.9 7.9 3.8 nm, 90 90 90 deg' -> (79, 79, 38, 90, 90, 90)."""
    numbers = [float(x) for x in re.findall(r"[-+]?\d*\.?\d+(?:[eE][-+]?\d+)?", str(text))]
    if len(numbers) < 6:
        return None
    a, b, c, al, be, ga = numbers[:6]
    return (10 * a, 10 * b, 10 * c, al, be, ga)


def _stream_reference_cell(loader):
    try:
        cell = loader.extract_target_unit_cell()
    except Exception:
        return None
    if cell is None:
        return None
    params = list(cell.parameters) if hasattr(cell, "parameters") else [float(x) for x in cell]
    if not all(math.isfinite(p) and p > 0 for p in params):
        return None
    return gemmi.UnitCell(*params)


#: Bytes of a stream scanned at a time for chunk markers (bounds memory).
_SCAN_BYTES = 32 * 2**20


def _marker_positions(handle, begin_marker, end_marker):
    """Starts of ``begin_marker`` and ends of ``end_marker`` in a file, read piece by piece."""
    overlap = max(len(begin_marker.pattern), len(end_marker.pattern)) - 1
    begins, ends = [], []
    carry, base = b"", 0  # base: file offset of carry[0]
    while True:
        piece = handle.read(_SCAN_BYTES)
        if not piece:
            break
        text = carry + piece
        # a match that ends inside the carried bytes was found in the last piece
        begins += [base + m.start() for m in begin_marker.finditer(text) if m.end() > len(carry)]
        ends += [base + m.end() for m in end_marker.finditer(text) if m.end() > len(carry)]
        keep = min(overlap, len(text))
        carry, base = text[len(text) - keep:], base + len(text) - keep
    return begins, ends


def _chunk_spans(loader):
    """Byte spans (start, end) of each complete chunk of a stream, in file order."""
    with open(loader.filename, "rb") as handle:
        begins, ends = _marker_positions(handle, loader.block_regex_bytes["chunk_begin"],
                                         loader.block_regex_bytes["chunk_end"])
    return list(zip(begins, ends))


def count_stream_chunks(path):
    """Number of complete chunks in a stream (a truncated last chunk is not counted)."""
    return len(_chunk_spans(_stream_loader(path)))


_CELL_LINE = re.compile(r"^Cell parameters (.*)$", re.MULTILINE)


def _crystal_cells(handle, begin, end):
    handle.seek(begin)
    text = handle.read(end - begin).decode("utf-8", "replace")
    return [_parse_cell_text(m.group(1)) for m in _CELL_LINE.finditer(text)]


def _parse_block(loader, spans, wavelength, first_image, path):
    """Parse chunks into one frame; every crystal is an image."""
    columns = list(_STREAM_COLUMNS)
    arrays, images, cells = [], [], {}
    image = first_image
    with open(path, "rb") as handle:
        for begin, end in spans:
            try:
                chunk = loader._parse_chunk(begin, end, wavelength, None, None, None)
            except Exception as err:
                raise InputError(
                    f"unreadable chunk at byte {begin} ({type(err).__name__}: {err})", path
                ) from None
            crystal_cells = _crystal_cells(handle, begin, end)
            for number, peaks in enumerate(chunk["peak_lists"]):
                peaks = np.atleast_2d(peaks)
                if number < len(crystal_cells) and crystal_cells[number] is not None:
                    cells[image] = crystal_cells[number]
                arrays.append(peaks[:, : len(columns)])
                images.append(np.full(len(peaks), image, dtype=np.int64))
                image += 1
    if arrays:
        values = np.concatenate(arrays).astype(np.float64)
        image_of = np.concatenate(images)
    else:
        values = np.zeros((0, len(columns)))
        image_of = np.zeros(0, dtype=np.int64)
    data = pd.DataFrame({k: np.rint(values[:, i]).astype(np.int32) for i, k in enumerate(columns[:3])})
    for i, name in enumerate(columns[3:], start=3):
        data[name] = values[:, i].astype(np.float32)
    data["image"] = image_of
    data["BATCH"] = image_of.astype(np.float32)
    return data, cells, image


def iter_stream_blocks(path, chunks_per_block=2000, wavelength=None, start_chunk=0, first_image=0):
    """Read a CrystFEL stream block by block.

    Each crystal of each chunk becomes one image; images are numbered from
    ``first_image`` in file order across blocks.  Only complete chunks are
    read, so a stream that is still being written can be read again later from
    ``start_chunk``.

    Parameters
    ----------
    path : str
    chunks_per_block : int
        Chunks parsed per block (bounds memory).
    wavelength : float, optional
        Override the wavelength (Angstrom) used for Ewald offsets.
    start_chunk : int
        Skip this many complete chunks (to follow a growing file).
    first_image : int
        Number given to the first image read.

    Yields
    ------
    RawReflections
        One per block; ``image_cells`` holds the per-crystal cells and the
        attribute ``n_chunks`` counts the chunks the block read.
    """
    image = first_image
    for block in stream_blocks(path, chunks_per_block, start_chunk):
        raw = read_stream_block(path, block, wavelength, image)
        image = raw.next_image
        yield raw


def stream_blocks(path, chunks_per_block=2000, start_chunk=0):
    """Split a CrystFEL stream into blocks of complete chunks.

    Parameters
    ----------
    path : str
    chunks_per_block : int
    start_chunk : int
        Skip this many complete chunks.

    Returns
    -------
    list of list of (int, int)
        Byte spans of the chunks of each block, in file order; each block can
        be parsed on its own (by :func:`read_stream_block`, also in another
        process).
    """
    path = str(path)
    spans = _chunk_spans(_stream_loader(path))[start_chunk:]
    if not spans and start_chunk == 0:
        raise InputError("the stream holds no complete chunk (empty or truncated)", path)
    return [spans[first:first + chunks_per_block] for first in range(0, len(spans), chunks_per_block)]


def read_stream_block(path, spans, wavelength=None, first_image=0):
    """Parse one block of a stream (see :func:`stream_blocks`).

    Parameters
    ----------
    path : str
    spans : list of (int, int)
        Byte spans of the block's chunks.
    wavelength : float, optional
    first_image : int
        Number given to the block's first crystal.

    Returns
    -------
    RawReflections
        With the attributes ``n_chunks`` (chunks read) and ``next_image``
        (number of the crystal after the block's last).
    """
    path = str(path)
    loader = _stream_loader(path)
    data, cells, next_image = _parse_block(loader, spans, wavelength, first_image, path)
    raw = RawReflections(data, _stream_reference_cell(loader), None, cells, path)
    raw.n_chunks = len(spans)
    raw.next_image = next_image
    return raw


def read_stream(path, wavelength=None):
    """Read a whole CrystFEL stream (see :func:`iter_stream_blocks`).

    Returns
    -------
    RawReflections
    """
    blocks = list(iter_stream_blocks(path, wavelength=wavelength))
    data = pd.concat([b.data for b in blocks], ignore_index=True)
    cells = {}
    for b in blocks:
        cells.update(b.image_cells)
    if len(data) == 0:
        raise InputError("the stream holds no indexed reflections", path)
    return RawReflections(data, blocks[0].cell, None, cells, str(path))


# ---------------------------------------------------------------------------- DIALS

def dials_pair(path):
    """The (``.expt``, ``.refl``) pair that belongs to ``path`` (either member)."""
    stem, _ = os.path.splitext(str(path))
    return stem + ".expt", stem + ".refl"


def _cell_from_real_space(crystal):
    a, b, c = (np.asarray(crystal[k], dtype=float) for k in ("real_space_a", "real_space_b", "real_space_c"))

    def angle(u, v):
        return math.degrees(math.acos(np.dot(u, v) / (np.linalg.norm(u) * np.linalg.norm(v))))

    return (np.linalg.norm(a), np.linalg.norm(b), np.linalg.norm(c), angle(b, c), angle(a, c), angle(a, b))


def read_dials(path):
    """Read DIALS stills: an experiment list (``.expt``) and reflections (``.refl``).

    The cell (average over crystals), per-image cells and the space group come
    from the ``.expt`` JSON; each experiment is one image.

    Parameters
    ----------
    path : str
        Either file of the pair; the other must sit beside it with the same stem.

    Returns
    -------
    RawReflections
    """
    expt, refl = dials_pair(path)
    for name in (expt, refl):
        _check_readable(name)
    try:
        with open(expt) as handle:
            experiments = json.load(handle)
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise InputError(f"not a DIALS experiment list ({err.__class__.__name__})", expt) from None
    crystals = experiments.get("crystal") or []
    if not crystals:
        raise InputError("the experiment list holds no crystal model", expt)
    try:
        ds = rs.io.read_dials_stills(refl, numjobs=1)
    except Exception as err:
        raise InputError(f"not a readable DIALS reflection table ({type(err).__name__}: {err})", refl) from None
    required = ["intensity.sum.value", "intensity.sum.variance", "H", "K", "L", "BATCH"]
    missing = [c for c in required if c not in ds.columns]
    if missing:
        raise InputError(f"missing columns {', '.join(missing)}", refl)
    hall = crystals[0].get("space_group_hall_symbol", "").strip()
    try:
        spacegroup = gemmi.find_spacegroup_by_ops(gemmi.symops_from_hall(hall))
    except Exception:
        spacegroup = None
    if spacegroup is None:
        raise InputError(f"unknown space group Hall symbol '{hall}'", expt)
    cells = [_cell_from_real_space(c) for c in crystals]
    mean_cell = gemmi.UnitCell(*np.mean(np.asarray(cells), axis=0))
    experiment_crystal = [e.get("crystal", i) for i, e in enumerate(experiments.get("experiment", []))]
    ds = ds.reset_index(drop=True)
    variance = ds["intensity.sum.variance"].to_numpy(np.float64)
    frame = pd.DataFrame({
        "H": ds["H"], "K": ds["K"], "L": ds["L"],
        "I": ds["intensity.sum.value"],
        "SigI": np.sqrt(np.where(variance >= 0, variance, np.nan)),
        "BATCH": ds["BATCH"],
    })
    renames = {"xyzcal.px.0": "XDET", "xyzcal.px.1": "YDET", "s1.0": "s1x", "s1.1": "s1y",
               "s1.2": "s1z", "delpsical.rad": "delpsi"}
    for old, new in renames.items():
        if old in ds:
            frame[new] = ds[old].to_numpy(np.float32)
    data = _finish(frame, refl)
    image_cells = {}
    batches = np.unique(ds["BATCH"].to_numpy())
    for image, batch in enumerate(batches):
        crystal = experiment_crystal[batch] if batch < len(experiment_crystal) else 0
        image_cells[image] = cells[crystal if crystal < len(cells) else 0]
    return RawReflections(data, mean_cell, spacegroup, image_cells, str(refl))


def read_file(path, intensity_key=None, uncertainty_key=None, image_key=None):
    """Read any supported file whole.

    Parameters
    ----------
    path : str
        ``.mtz``, ``.stream``, ``.expt`` or ``.refl``.
    intensity_key, uncertainty_key, image_key : str, optional
        Column overrides for MTZ files.

    Returns
    -------
    RawReflections
    """
    kind = file_format(path)
    if kind == "mtz":
        return read_mtz(path, intensity_key, uncertainty_key, image_key)
    if kind == "stream":
        return read_stream(path)
    return read_dials(path)
