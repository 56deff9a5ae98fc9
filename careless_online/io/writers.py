"""Writers of merged, half-dataset and prediction MTZ files.

Merged tables are made with internal column names and written in a column
layout (careless's by default, :mod:`careless_online.io.layout`).  They
hold, per ASU reflection observed at least once, the posterior mean and
standard deviation of the amplitude (``F``, ``SIGF``), the intensity
moments ``I = E[F^2]`` and ``SIGI = sd(F^2)`` (exact for the truncated-normal
posterior, see :func:`intensity_moments`), and the observation count ``N``;
with Friedel mates kept apart, also ``F(+)``, ``SIGF(+)``, ``F(-)``,
``SIGF(-)``, ``I(+)``, ``SIGI(+)``, ``I(-)``, ``SIGI(-)``, ``N(+)``, ``N(-)``
(missing mates are NaN) and ``F``/``SIGF``, ``I``/``SIGI`` combine both mates
by inverse-variance weighting.

Every file is written atomically (:mod:`careless_online.io.atomic`) and
carries the wavelength of the data when it is known.
"""

import errno
import struct

import gemmi
import numpy as np
import pandas as pd
import reciprocalspaceship as rs
from scipy.special import erfcx

from careless_online.io import layout
from careless_online.io.atomic import atomic_path

#: Name of the MTZ dataset holding the data columns.
DATASET_NAME = "careless_online"


def intensity_moments(loc, scale):
    r"""Exact mean and standard deviation of ``F**2`` for ``F ~ N(loc, scale**2)`` truncated to ``(0, inf)``.

    With :math:`a = -\mu/s` and the inverse Mills ratio
    :math:`\lambda = \phi(a) / (1 - \Phi(a)) = \sqrt{2/\pi} / \mathrm{erfcx}(a/\sqrt 2)`,
    the raw moments follow :math:`m_0 = 1`, :math:`m_1 = \mu + s\lambda` and
    :math:`m_j = \mu m_{j-1} + (j - 1) s^2 m_{j-2}`, so

    .. math:: I = m_2, \qquad \sigma_I = \sqrt{m_4 - m_2^2}.

    Computed in float64 (``erfcx`` keeps :math:`\lambda` accurate far in the
    tails, where :math:`m_4 - m_2^2` is a small difference of large numbers).

    Parameters
    ----------
    loc, scale : array of float
        Location and scale (> 0) of the untruncated normal.

    Returns
    -------
    (numpy.ndarray, numpy.ndarray)
        ``I`` and ``SIGI``.
    """
    mu = np.asarray(loc, dtype=np.float64)
    s = np.asarray(scale, dtype=np.float64)
    var = s * s
    m1 = mu + s * np.sqrt(2.0 / np.pi) / erfcx(-mu / (s * np.sqrt(2.0)))
    m2 = mu * m1 + var
    m3 = mu * m2 + 2.0 * var * m1
    m4 = mu * m3 + 3.0 * var * m2
    return m2, np.sqrt(np.maximum(m4 - m2 * m2, 0.0))


def posterior_moments(distribution):
    """``F``, ``SIGF``, ``I``, ``SIGI`` of each reflection from a truncated-normal posterior.

    Parameters
    ----------
    distribution : tfd.TruncatedNormal
        ``q(F)`` of all reflections (``StructureFactorPosterior.distribution()``).

    Returns
    -------
    dict of numpy.ndarray
    """
    i, sigi = intensity_moments(distribution.loc.numpy(), distribution.scale.numpy())
    return {"F": distribution.mean().numpy(), "SIGF": distribution.stddev().numpy(), "I": i, "SIGI": sigi}


def _approximate_intensity(f, sigf):
    # a Gaussian F: exact mean, approximate spread; used only when no moments are given
    return f * f + sigf * sigf, np.sqrt(4.0 * f * f * sigf * sigf + 2.0 * sigf**4)


def merged_table(index, f_mean, f_std, counts, i_mean=None, i_std=None):
    """Merged amplitudes and intensities per ASU reflection as an :class:`rs.DataSet`.

    Parameters
    ----------
    index : ReflectionIndex
    f_mean, f_std : array of float, shape (len(index),)
        Posterior mean and standard deviation of each unique reflection.
    counts : array of int, shape (len(index),)
        Observations of each unique reflection; unobserved ones are dropped.
    i_mean, i_std : array of float, shape (len(index),), optional
        Mean and standard deviation of the intensity (:func:`intensity_moments`
        for a learned merge, the merged intensities for the naive one).
        Without them ``I = F^2 + SIGF^2`` and ``SIGI`` is the Gaussian
        approximation ``sqrt(4 F^2 SIGF^2 + 2 SIGF^4)``.

    Returns
    -------
    rs.DataSet
        Indexed by H, K, L, with the columns described in the module docstring.
    """
    f_mean = np.asarray(f_mean, dtype=np.float64)
    f_std = np.asarray(f_std, dtype=np.float64)
    if i_mean is None:
        i_mean, i_std = _approximate_intensity(f_mean, f_std)
    counts = np.asarray(counts, dtype=np.int64)
    frame = pd.DataFrame({"H": index.hkl[:, 0], "K": index.hkl[:, 1], "L": index.hkl[:, 2],
                          "F": f_mean, "SIGF": f_std, "I": np.asarray(i_mean, dtype=np.float64),
                          "SIGI": np.asarray(i_std, dtype=np.float64), "N": counts})
    frame = frame[(counts > 0) & np.isfinite(f_mean) & np.isfinite(f_std)]
    order = list(layout.MEAN_COLUMNS)
    out = frame.set_index(["H", "K", "L"]) if not index.anomalous else _friedel_pairs(frame, index)
    if index.anomalous:
        order += list(layout.PAIR_COLUMNS)
    ds = rs.DataSet(out[order].reset_index(), cell=index.cell, spacegroup=index.spacegroup, merged=True)
    types = {k: layout.mtz_type(k, "ccp4") for k in order}
    types.update(H="H", K="H", L="H")
    return ds.astype(types).set_index(["H", "K", "L"])


def _friedel_pairs(frame, index):
    """One row per ASU reflection with (+)/(-) columns and the combined F, I, N.

    The reflection index keeps both Friedel mates under the ASU ``hkl`` with a
    ``plus`` flag, so the pairing is one join on ``hkl``;
    ``rs.DataSet.unstack_anomalous`` expects the minus mates at ``-hkl`` and
    would need them written there and mapped back first.
    """
    keys = ["H", "K", "L"]
    columns = ["F", "SIGF", "I", "SIGI", "N"]
    plus = index.plus[frame.index.to_numpy()]
    p = frame[plus].set_index(keys)[columns]
    m = frame[~plus].set_index(keys)[columns]
    out = p.add_suffix("(+)").join(m.add_suffix("(-)"), how="outer")
    centric = rs.utils.is_centric(np.array(list(out.index)), index.spacegroup) if len(out) else []
    centric = np.asarray(centric, dtype=bool)
    for name in columns:
        out.loc[centric, f"{name}(-)"] = out.loc[centric, f"{name}(+)"]
    out[["N(+)", "N(-)"]] = out[["N(+)", "N(-)"]].fillna(0)
    for name, values in layout.friedel_means(out, centric).items():
        out[name] = values
    return out


def _to_gemmi(ds, wavelength):
    mtz = ds.to_gemmi()
    if wavelength:
        for dataset in mtz.datasets:
            dataset.wavelength = float(wavelength)
    return mtz


def write_merged(ds, path, wavelength=None, columns=layout.DEFAULT_LAYOUT):
    """Write a merged or half-dataset table (internal names) in a column layout.

    Parameters
    ----------
    ds : rs.DataSet
        From :func:`merged_table` or :func:`xval_table`.
    path : str
    wavelength : float, optional
    columns : {"careless", "ccp4"}, optional
        The layout (:mod:`careless_online.io.layout`).

    Returns
    -------
    str
        ``path``.
    """
    return write_mtz(layout.to_layout(ds, columns), path, wavelength)


def write_mtz(ds, path, wavelength=None):
    """Write a DataSet atomically, turning I/O failures into one-line errors.

    Parameters
    ----------
    ds : rs.DataSet
    path : str
    wavelength : float, optional
        Angstrom; written into every dataset of the file (0 when unknown).

    Returns
    -------
    str
        ``path``.
    """
    mtz = _to_gemmi(ds, wavelength)
    with atomic_path(path) as tmp:
        try:
            mtz.write_to_file(tmp)
        except RuntimeError as err:  # gemmi reports a failed write as RuntimeError
            raise OSError(errno.EIO, str(err)) from None
    return str(path)


#: Columns of the predictions file after H, K, L, with their MTZ types (careless's, then ``dHKL``).
PREDICTION_TYPES = {"asu_id": "I", "image_id": "I", "file_id": "I", "test": "I", "Iobs": "J", "SigIobs": "Q",
                    "Ipred": "J", "SigIpred": "Q", "dHKL": "R"}

#: Words (4 bytes) before the first record of an MTZ file.
_MTZ_RECORDS_START = 20


def write_predictions(index, n_rows, parts, path, wavelength=None, extra_types=None, history=(), asu_id=0):
    """Write per-observation predictions to an unmerged MTZ, streaming part by part.

    An MTZ file keeps its records before its header, so each part is written
    to disk as it comes and the header (with the row count and column ranges)
    is appended last: memory holds one part, whatever the number of
    observations.  The file is written under a temporary name and renamed.

    Parameters
    ----------
    index : ReflectionIndex
    n_rows : int or None
        Total number of observations the parts hold (checked if given).
    parts : iterable of dict of arrays
        ``refl_id, image_id, file_id, test, Iobs, SigIobs, Ipred, SigIpred``
        and, optionally, the observed indices ``Hobs, Kobs, Lobs``.
    path : str
    wavelength : float, optional
        Angstrom.
    extra_types : dict, optional
        Further columns every part holds, with their MTZ types (e.g. the
        chosen indexing setting, :data:`careless_online.model.settings.SETTING_COLUMNS`).
    history : sequence of str, optional
        Lines of the file's history.
    asu_id : int, optional
        The value of the ``asu_id`` column: careless numbers its outputs'
        reciprocal ASUs (one per file ``<out>_predictions_<i>.mtz``) and its
        scripts group images by it; here the dataset number.

    Returns
    -------
    str
        ``path``.  Columns: ``H, K, L`` (ASU), ``M/ISYM`` (as in any unmerged
        MTZ: the symmetry operator that maps the ASU index to the observed
        one, odd for a Friedel-plus and even for a Friedel-minus observation;
        without observed indices in the parts, 1 or 2: the ASU index or its
        Friedel mate ``-H``), then
        :data:`PREDICTION_TYPES` and, for an anomalous index, ``plus`` (1 for
        the Friedel-plus member).
    """
    types = {"H": "H", "K": "H", "L": "H", "M/ISYM": "Y", **PREDICTION_TYPES}
    if index.anomalous:
        types["plus"] = "I"
    types.update(extra_types or {})
    names = list(types)
    low = np.full(len(names), np.inf)
    high = np.full(len(names), -np.inf)
    rows = 0
    dhkl = index.dHKL
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as handle:
            handle.write(bytes(4 * _MTZ_RECORDS_START))  # the file head, rewritten at the end
            for part in parts:
                block = _prediction_block(index, dhkl, part, names, asu_id)
                handle.write(block.astype("<f4", copy=False).tobytes())
                if len(block):
                    with np.errstate(invalid="ignore"):
                        low = np.fmin(low, np.nanmin(block, axis=0))
                        high = np.fmax(high, np.nanmax(block, axis=0))
                rows += len(block)
            if n_rows is not None and rows != n_rows:
                raise ValueError(f"predictions hold {rows} rows, expected {n_rows}")
            head, header = _mtz_header(index, types, low, high, rows, wavelength, history)
            handle.write(header)
            handle.seek(0)
            handle.write(head)
    return str(path)


def _prediction_block(index, dhkl, part, names, asu_id=0):
    """The float32 records of one part of the predictions."""
    ids = np.asarray(part["refl_id"])
    block = np.empty((len(ids), len(names)), dtype=np.float32)
    block[:, :3] = index.hkl[ids]
    values = dict(part, dHKL=dhkl[ids], asu_id=np.full(len(ids), asu_id))
    plus = index.plus[ids]
    if "Hobs" in part:
        observed = np.stack([part["Hobs"], part["Kobs"], part["Lobs"]], axis=1)
        values["M/ISYM"] = rs.utils.hkl_to_asu(observed, index.spacegroup)[1]
    else:
        values["M/ISYM"] = np.where(plus, 1, 2)
    if index.anomalous:
        values["plus"] = plus
    for j, name in enumerate(names[3:], start=3):
        block[:, j] = values[name]
    return block


def _mtz_header(index, types, low, high, n_rows, wavelength, history=()):
    """The 80-byte head and the trailing header of an MTZ holding ``n_rows`` records.

    gemmi writes the header of a two-record file whose records are the column
    minima and maxima (so the column ranges are right); its row count and
    resolution range are then set to those of the streamed records.
    """
    names = list(types)
    mtz = gemmi.Mtz(with_base=True)
    mtz.spacegroup = index.spacegroup
    mtz.add_dataset(DATASET_NAME)
    for dataset in mtz.datasets:
        dataset.wavelength = float(wavelength or 0.0)
    for name in names[3:]:
        mtz.add_column(name, types[name])
    mtz.set_cell_for_all(index.cell)
    mtz.history = list(history)
    empty = ~np.isfinite(low)
    ranges = np.stack([np.where(empty, 0.0, low), np.where(empty, 0.0, high)]).astype(np.float32)
    mtz.set_data(ranges)
    data = mtz.write_to_bytes()
    (pointer,) = struct.unpack("<i", data[4:8])
    header = bytearray(data[4 * (pointer - 1):])
    n_cols = len(names)
    header = _replace_record(header, b"NCOL", b"NCOL %8d %12d %8d" % (n_cols, n_rows, 0))
    d = names.index("dHKL")
    inv_d2 = (1.0 / float(high[d]) ** 2, 1.0 / float(low[d]) ** 2) if n_rows else (0.0, 0.0)
    header = _replace_record(header, b"RESO", b"RESO %-20.12f %-20.12f" % inv_d2)
    head = bytearray(data[: 4 * _MTZ_RECORDS_START])
    position = _MTZ_RECORDS_START + n_rows * n_cols + 1  # 1-based word of the header
    if position < 2**31:
        head[4:8] = struct.pack("<i", position)
    else:  # the 64-bit header position of large MTZ files
        head[4:8] = struct.pack("<i", -1)
        head[12:20] = struct.pack("<q", position)
    return bytes(head), bytes(header)


def _replace_record(header, key, record):
    """Replace the 80-character header record starting with ``key``."""
    for start in range(0, len(header), 80):
        if header[start:start + len(key)] == key:
            header[start:start + 80] = record.ljust(80)
            return header
    raise ValueError(f"MTZ header has no {key.decode()} record")


def xval_table(tables):
    """Stack half-dataset merges into one DataSet with ``repeat`` and ``half`` columns.

    Parameters
    ----------
    tables : list of (repeat, half, rs.DataSet)

    Returns
    -------
    rs.DataSet
    """
    parts = []
    for repeat, half, ds in tables:
        ds = ds.copy()
        ds["repeat"] = repeat
        ds["half"] = half
        parts.append(ds)
    out = rs.concat(parts, check_isomorphous=False)
    return out.astype({"repeat": "I", "half": "I"})
