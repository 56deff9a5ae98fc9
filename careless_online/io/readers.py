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
from dataclasses import dataclass, field

import gemmi
import msgpack
import numpy as np
import pandas as pd
import reciprocalspaceship as rs

from careless_online.errors import InputError
from careless_online.io import stream_block, stream_format
from careless_online.io.columns import DIALS_RENAMES

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
    damaged : list of (int, str)
        Byte offset and reason of each damaged stream chunk left out of
        ``data`` (the caller decides whether to refuse the file).
    """

    data: pd.DataFrame
    cell: object = None
    spacegroup: object = None
    image_cells: dict = field(default_factory=dict)
    path: str = ""
    damaged: list = field(default_factory=list)


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


def check_readable(path):
    """InputError unless ``path`` is a non-empty regular file this process may read."""
    if not os.path.exists(path):
        raise InputError("no such file", path)
    if os.path.isdir(path):
        raise InputError("is a folder, not a file", path)
    if not os.path.isfile(path):
        raise InputError("is not a regular file", path)
    if not os.access(path, os.R_OK):
        raise InputError("permission denied", path)
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


#: Largest |h|, |k|, |l| a reflection index can hold.
MAX_MILLER = 511


def _check_integers(frame, names, path):
    """InputError for rows whose Miller indices or image number are not (small) integers."""
    values = np.column_stack([np.asarray(frame[name], dtype=np.float64) for name in names])
    whole = np.isfinite(values) & (values == np.round(values))
    limits = np.array([MAX_MILLER] * 3 + [2**31 - 1])
    whole &= np.abs(np.nan_to_num(values)) <= limits
    bad = ~whole.all(axis=1)
    if bad.any():
        raise InputError(f"{int(bad.sum())} damaged records: a Miller index (beyond +-{MAX_MILLER}) or "
                         f"{names[3]} (beyond int32) that is NaN, not an integer or out of range", path)


def _finish(frame, path, intensity_key=None, uncertainty_key=None, image_key=None):
    """Rename to the common columns and cast; keep numeric metadata."""
    columns = list(frame.columns)
    ikey = _pick(columns, INTENSITY_KEYS, "intensity", path, intensity_key)
    skey = _pick(columns, UNCERTAINTY_KEYS, "intensity uncertainty", path, uncertainty_key)
    bkey = _pick(columns, IMAGE_KEYS, "image (BATCH)", path, image_key)
    _check_integers(frame, ["H", "K", "L", bkey], path)
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
            with np.errstate(invalid="ignore"):  # a missing integer becomes NaN (checked by the table)
                out[name] = values.to_numpy(np.float32)
    return out


def _check_index_columns(mtz, labels, path):
    """Refuse damaged Miller indices, image numbers or symmetry operators before rs casts them to integers."""
    values = np.asarray(mtz.array)
    names = ["H", "K", "L"] + [k for k in IMAGE_KEYS if k in labels][:1]
    if len(names) == 4:
        _check_integers(pd.DataFrame({n: values[:, labels.index(n)] for n in names}), names, path)
    if "M/ISYM" in labels:
        isym = values[:, labels.index("M/ISYM")].astype(np.float64)
        ok = np.isfinite(isym) & (isym == np.round(isym)) & (isym >= 1) & (isym <= 512 + 2 * 192)
        if not ok.all():
            raise InputError(f"{int((~ok).sum())} damaged records: an M/ISYM value that is not a valid "
                             "symmetry operator number", path)


def _open_mtz(path):
    """The gemmi MTZ object and its rs.DataSet; InputError if gemmi cannot read it."""
    try:
        mtz = gemmi.read_mtz_file(str(path))
        labels = [column.label for column in mtz.columns]
        missing = [c for c in ("H", "K", "L") if c not in labels]
        if missing:
            raise InputError(f"no Miller index column {', '.join(missing)} (columns: {', '.join(labels)})", path)
        if len(set(labels)) != len(labels):
            raise InputError(f"repeated column labels ({', '.join(labels)})", path)
        _check_index_columns(mtz, labels, path)
        with np.errstate(invalid="ignore"):  # NaN in other integer columns: rs's cast would warn
            return mtz, rs.DataSet.from_gemmi(mtz)
    except (RuntimeError, ValueError, IndexError, OverflowError, MemoryError) as err:
        # gemmi raises RuntimeError for a damaged file, rs ValueError for impossible columns
        reason = str(err).splitlines()[0][:120] if str(err) else type(err).__name__
        raise InputError(f"not a readable MTZ file ({reason})", path) from None


def _batch_cells(mtz, batch_numbers):
    """Cells of the MTZ batch headers, by image (position in ``batch_numbers``); {} if none is usable."""
    headers = {int(b.number): tuple(b.cell.parameters) for b in mtz.batches}
    cells = {}
    for image, number in enumerate(batch_numbers):
        cell = headers.get(int(number))
        if cell is not None and all(math.isfinite(p) and p > 0 for p in cell):
            cells[image] = cell
    return cells if len(cells) == len(batch_numbers) else {}


def _as_unmerged(ds, image_key, path):
    """The observations of an MTZ that has an image column, with their observed Miller indices.

    reciprocalspaceship calls a file merged when no Miller index repeats,
    which an unmerged file of a few observations (one row, say) also does;
    a file with an image column (``BATCH``, or ``image_key``) holds
    observations whatever their number, and its ``M/ISYM`` column maps them
    back to the indices as observed.

    Raises
    ------
    InputError
        For a merged file: no image column (and each reflection once).
    """
    if not ds.merged:
        return ds
    if not any(key in ds.columns for key in ([image_key] if image_key else IMAGE_KEYS)):
        raise InputError("this MTZ is merged (each reflection once, no image column such as BATCH); "
                         "careless_online needs unmerged observations", path)
    ds.merged = False
    m_isym = ds.get_m_isym_keys()
    return ds.hkl_to_observed(m_isym[0]) if m_isym else ds


def read_mtz(path, intensity_key=None, uncertainty_key=None, image_key=None):
    """Read an unmerged MTZ file.

    Per-image cells come from the batch headers where every batch has one
    (so that ``--cell-tolerance`` can drop images); otherwise
    ``image_cells`` is empty.

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
    check_readable(path)
    mtz, ds = _open_mtz(path)
    ds = _as_unmerged(ds, image_key, path)
    if ds.spacegroup is None:
        raise InputError("the MTZ has no space group", path)
    if len(ds) == 0:
        raise InputError("the MTZ holds no reflections", path)
    ds = ds.reset_index()
    data = _finish(ds, path, intensity_key, uncertainty_key, image_key)
    cells = {}
    if "BATCH" in ds and image_key in (None, "BATCH"):
        cells = _batch_cells(mtz, np.unique(ds["BATCH"].to_numpy(np.int64)))
    return RawReflections(data, ds.cell, ds.spacegroup, cells, str(path))


# ---------------------------------------------------------------------------- streams

#: Bytes of a stream scanned at a time for chunk markers (bounds memory).
_SCAN_BYTES = 32 * 2**20
_STREAM_MAGIC = b"CrystFEL stream format"


def _stream_header(path):
    """The bytes before the first chunk (at most 1 MiB); InputError if not a stream."""
    check_readable(path)
    with open(path, "rb") as handle:
        head = handle.read(2**20)
    if _STREAM_MAGIC not in head[:4096]:
        raise InputError("not a CrystFEL stream (no 'CrystFEL stream format' header)", path)
    first = stream_format.CHUNK_BEGIN.search(head)
    return head if first is None else head[:first.start()]


def stream_begun(path):
    """Whether a stream that is being written has begun: its magic line is there.

    A stream is refused (:func:`_stream_header`) when its first 4,096 bytes
    lack the ``CrystFEL stream format`` line; a file still shorter than that
    without the line (empty, or its header half-written, as when indexamajig
    has just started) has not begun yet.

    Returns
    -------
    bool
        False for a missing file or one that has not begun; True otherwise
        (the reader then refuses a file that is not a stream).
    """
    try:
        with open(path, "rb") as handle:
            head = handle.read(4096)
    except FileNotFoundError:
        return False
    return len(head) == 4096 or (_STREAM_MAGIC in head and head.endswith(b"\n"))


def _stream_reference_cell(path):
    params = stream_format.target_cell(_stream_header(path))
    return None if params is None else gemmi.UnitCell(*params)


def _chunk_spans(path):
    """(start, end, complete) of each chunk of a stream, in file order (see stream_format.chunk_spans)."""
    _stream_header(path)
    with open(path, "rb") as handle:
        return stream_format.chunk_spans(handle, _SCAN_BYTES)


def stream_chunk_spans(path):
    """(start, end, complete) of each complete chunk of a stream, in file order (a chunk being written is left out)."""
    return _chunk_spans(str(path))


def count_stream_chunks(path):
    """Number of chunks in a stream (a last chunk still being written is not counted)."""
    return len(_chunk_spans(str(path)))


def _block_crystals(spans, wavelength, path):
    """Crystals (or the DamagedChunk) of each chunk of a block (:func:`stream_block.parse_chunks`).

    The block's bytes are read at once, from its first chunk's start to its last chunk's end; an
    incomplete chunk is not parsed (its crystals read as none).
    """
    if not spans:
        return []
    with open(path, "rb") as handle:
        handle.seek(spans[0][0])
        text = handle.read(spans[-1][1] - spans[0][0])
    first = spans[0][0]
    chunks = [text[begin - first:end - first] if complete else b"" for begin, end, complete in spans]
    return stream_block.parse_chunks(chunks, wavelength)


def _parse_block(spans, wavelength, first_image, path):
    """Parse chunks into one frame; every crystal with reflections is an image.

    Returns
    -------
    data : pandas.DataFrame
    cells : dict
        Cell of each image.
    next_image : int
    damaged : list of (int, str)
        Byte offset and reason of each damaged chunk (left out of ``data``).
    """
    arrays, images, cells, damaged = [], [], {}, []
    image = first_image
    for (begin, _, complete), crystals in zip(spans, _block_crystals(spans, wavelength, path)):
        if not complete:
            crystals = stream_format.DamagedChunk("no 'End chunk' marker before the next chunk")
        if isinstance(crystals, stream_format.DamagedChunk):
            damaged.append((begin, str(crystals)))
            continue
        for crystal in crystals:
            cells[image] = crystal.cell
            arrays.append(crystal.rows)
            images.append(np.full(len(crystal.rows), image, dtype=np.int64))
            image += 1
    columns = stream_format.COLUMNS
    values = np.concatenate(arrays) if arrays else np.zeros((0, len(columns)))
    image_of = np.concatenate(images) if images else np.zeros(0, dtype=np.int64)
    frame = {k: values[:, i].astype(np.int32) for i, k in enumerate(columns[:3])}
    frame.update({name: values[:, i].astype(np.float32) for i, name in enumerate(columns[3:], start=3)})
    frame.update(image=image_of, BATCH=image_of.astype(np.float32))
    return pd.DataFrame(frame), cells, image, damaged


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
    spans = _chunk_spans(path)[start_chunk:]
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
    data, cells, next_image, damaged = _parse_block(spans, wavelength, first_image, path)
    raw = RawReflections(data, _stream_reference_cell(path), None, cells, path, damaged)
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
    cells, damaged = {}, []
    for b in blocks:
        cells.update(b.image_cells)
        damaged += b.damaged
    if len(data) == 0 and not damaged:
        raise InputError("the stream holds no indexed reflections", path)
    return RawReflections(data, blocks[0].cell, None, cells, str(path), damaged)


# ---------------------------------------------------------------------------- DIALS

def dials_pair(path):
    """The (``.expt``, ``.refl``) pair that belongs to ``path`` (either member)."""
    stem, _ = os.path.splitext(str(path))
    return stem + ".expt", stem + ".refl"


def _cell_from_real_space(crystal):
    a, b, c = (np.asarray(crystal[k], dtype=float) for k in ("real_space_a", "real_space_b", "real_space_c"))
    if any(v.shape != (3,) for v in (a, b, c)):
        raise ValueError("real-space vectors need 3 components")

    def angle(u, v):
        cosine = np.dot(u, v) / max(np.linalg.norm(u) * np.linalg.norm(v), 1e-300)
        return math.degrees(math.acos(min(1.0, max(-1.0, cosine))))

    return (np.linalg.norm(a), np.linalg.norm(b), np.linalg.norm(c), angle(b, c), angle(a, c), angle(a, b))


def _read_experiments(expt):
    """Crystal models and the crystal of each experiment, from an ``.expt`` file."""
    try:
        with open(expt, encoding="utf-8") as handle:
            experiments = json.load(handle)
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise InputError(f"not a DIALS experiment list ({err.__class__.__name__})", expt) from None
    if not isinstance(experiments, dict):
        raise InputError("not a DIALS experiment list (no JSON object)", expt)
    crystals = experiments.get("crystal") or []
    if not crystals or not all(isinstance(c, dict) for c in crystals):
        raise InputError("the experiment list holds no crystal model", expt)
    try:
        cells = [_cell_from_real_space(c) for c in crystals]
    except (KeyError, TypeError, ValueError) as err:
        raise InputError(f"a crystal model has no valid real-space vectors ({err})", expt) from None
    if not all(all(math.isfinite(p) and p > 0 for p in cell) for cell in cells):
        raise InputError("a crystal model has a degenerate unit cell", expt)
    entries = experiments.get("experiment") or [{} for _ in crystals]
    experiment_crystal = [e.get("crystal", i) if isinstance(e, dict) else -1 for i, e in enumerate(entries)]
    if not all(isinstance(c, int) and 0 <= c < len(cells) for c in experiment_crystal):
        raise InputError("an experiment refers to a crystal model that is not in the list", expt)
    identifiers = [e.get("identifier", "") if isinstance(e, dict) else "" for e in entries]
    return crystals, cells, experiment_crystal, identifiers


def _row_experiments(refl, identifiers):
    """The experiment (position in the ``.expt``) of every row of a reflection table.

    A row's ``id`` names an entry of the table's ``identifiers`` map, whose
    string is the ``identifier`` of one experiment of the ``.expt``.  rs's
    reader replaces ``id`` by those strings and numbers them in the order of
    a Python set, which is not the experiments' order; so ``id`` and the map
    are read here (the table is read a second time).  Without identifiers
    (older files, or an ``.expt`` whose experiments have none) ``id`` is the
    experiment's position.
    """
    with open(refl, "rb") as handle:
        payload = msgpack.load(handle, strict_map_key=False)[2]
    ids = rs.io.dials.get_msgpack_data(payload["data"], "id")["id"].astype(np.int64)
    names = payload.get("identifiers") or {}
    if not names or not all(identifiers) or not len(ids) or ids.min() < 0:
        return ids  # a negative id (unindexed) is refused by the caller
    position = {name: number for number, name in enumerate(identifiers)}
    experiment_of_id = np.array([position.get(names.get(key), -1) for key in range(int(ids.max()) + 1)])
    rows = experiment_of_id[ids]
    if (rows < 0).any():
        raise InputError("reflections of an experiment identifier that the .expt does not list "
                         "(the .expt does not belong to this .refl)", refl)
    return rows


def _dials_spacegroup(crystal, expt):
    hall = str(crystal.get("space_group_hall_symbol", "")).strip()
    try:
        spacegroup = gemmi.find_spacegroup_by_ops(gemmi.symops_from_hall(hall))
    except (RuntimeError, ValueError):  # gemmi's complaint about a bad Hall symbol
        spacegroup = None
    if spacegroup is None:
        raise InputError(f"unknown space group Hall symbol '{hall}'", expt)
    return spacegroup


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
        check_readable(name)
    crystals, cells, experiment_crystal, identifiers = _read_experiments(expt)
    try:
        ds = rs.io.read_dials_stills(refl, numjobs=1)
        if "BATCH" in ds:
            ds["BATCH"] = _row_experiments(refl, identifiers)
    except (ValueError, KeyError, TypeError, IndexError, AttributeError) as err:
        # msgpack and rs raise these for a damaged or foreign table
        raise InputError(f"not a readable DIALS reflection table ({type(err).__name__}: {err})", refl) from None
    required = ["intensity.sum.value", "intensity.sum.variance", "H", "K", "L", "BATCH"]
    missing = [c for c in required if c not in ds.columns]
    if missing:
        raise InputError(f"missing columns {', '.join(missing)}", refl)
    spacegroup = _dials_spacegroup(crystals[0], expt)
    mean_cell = gemmi.UnitCell(*np.mean(np.asarray(cells), axis=0))
    ds = ds.reset_index(drop=True)
    batches = np.unique(ds["BATCH"].to_numpy())
    if len(batches) and (batches.min() < 0 or batches.max() >= len(experiment_crystal)):
        raise InputError(f"reflections of experiment {int(batches.max())} but {expt} lists "
                         f"{len(experiment_crystal)} experiments (the .expt does not belong to this .refl)", refl)
    variance = ds["intensity.sum.variance"].to_numpy(np.float64)
    frame = pd.DataFrame({
        "H": ds["H"], "K": ds["K"], "L": ds["L"],
        "I": ds["intensity.sum.value"],
        "SigI": np.sqrt(np.where(variance >= 0, variance, np.nan)),
        "BATCH": ds["BATCH"],
    })
    for old, new in DIALS_RENAMES.items():
        if old in ds:
            frame[new] = ds[old].to_numpy(np.float32)
    data = _finish(frame, refl)
    image_cells = {image: cells[experiment_crystal[int(batch)]] for image, batch in enumerate(batches)}
    return RawReflections(data, mean_cell, spacegroup, image_cells, str(refl))


#: Options that choose MTZ columns, by command-line flag.
KEY_OPTIONS = ("--intensity-key", "--uncertainty-key", "--image-key")


def check_key_overrides(path, intensity_key=None, uncertainty_key=None, image_key=None):
    """Refuse column overrides for a file whose format has fixed columns (streams, DIALS).

    Raises
    ------
    InputError
        Naming the file and the flags that cannot apply to it.
    """
    given = [flag for flag, key in zip(KEY_OPTIONS, (intensity_key, uncertainty_key, image_key)) if key is not None]
    kind = file_format(path)
    if given and kind != "mtz":
        raise InputError(f"{'/'.join(given)} choose MTZ columns; a {kind} file has fixed columns "
                         "(leave the flag out)", path)


def read_file(path, intensity_key=None, uncertainty_key=None, image_key=None):
    """Read any supported file whole.

    Parameters
    ----------
    path : str
        ``.mtz``, ``.stream``, ``.expt`` or ``.refl``.
    intensity_key, uncertainty_key, image_key : str, optional
        Column overrides for MTZ files (InputError for other formats).

    Returns
    -------
    RawReflections
    """
    check_key_overrides(path, intensity_key, uncertainty_key, image_key)
    kind = file_format(path)
    if kind == "mtz":
        return read_mtz(path, intensity_key, uncertainty_key, image_key)
    if kind == "stream":
        return read_stream(path)
    return read_dials(path)
