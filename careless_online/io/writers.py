"""Writers of merged, half-dataset and prediction MTZ files.

Merged files hold, per ASU reflection observed at least once, the posterior
mean and standard deviation of the amplitude (``F``, ``SIGF``), the implied
intensity moments (``I = F^2 + SIGF^2``), and the observation count ``N``;
with Friedel mates kept apart, also ``F(+)``, ``SIGF(+)``, ``F(-)``,
``SIGF(-)``, ``I(+)``, ``SIGI(+)``, ``I(-)``, ``SIGI(-)``, ``N(+)``, ``N(-)``
(missing mates are NaN) and ``F``/``SIGF`` combine both mates.
"""

import gemmi
import numpy as np
import pandas as pd
import reciprocalspaceship as rs

from careless_online.errors import InputError

#: MTZ column types of the merged outputs.
MERGED_TYPES = {
    "F": "F", "SIGF": "Q", "I": "J", "SIGI": "Q", "N": "I",
    "F(+)": "G", "SIGF(+)": "L", "F(-)": "G", "SIGF(-)": "L",
    "I(+)": "K", "SIGI(+)": "M", "I(-)": "K", "SIGI(-)": "M", "N(+)": "I", "N(-)": "I",
    "repeat": "I", "half": "I",
}


def _intensity_moments(f, sigf):
    i = f * f + sigf * sigf
    sigi = np.sqrt(4.0 * f * f * sigf * sigf + 2.0 * sigf**4)
    return i, sigi


def merged_table(index, f_mean, f_std, counts):
    """Merged amplitudes per ASU reflection as an :class:`rs.DataSet`.

    Parameters
    ----------
    index : ReflectionIndex
    f_mean, f_std : array of float, shape (len(index),)
        Posterior mean and standard deviation of each unique reflection.
    counts : array of int, shape (len(index),)
        Observations of each unique reflection; unobserved ones are dropped.

    Returns
    -------
    rs.DataSet
        Indexed by H, K, L, with the columns described in the module docstring.
    """
    f_mean = np.asarray(f_mean, dtype=np.float64)
    f_std = np.asarray(f_std, dtype=np.float64)
    counts = np.asarray(counts, dtype=np.int64)
    frame = pd.DataFrame({"H": index.hkl[:, 0], "K": index.hkl[:, 1], "L": index.hkl[:, 2],
                          "F": f_mean, "SIGF": f_std, "N": counts})
    frame = frame[(counts > 0) & np.isfinite(f_mean) & np.isfinite(f_std)]
    if not index.anomalous:
        out = frame.set_index(["H", "K", "L"])
    else:
        plus = pd.Series(index.plus, name="plus")[frame.index]
        keys = ["H", "K", "L"]
        p = frame[plus.to_numpy()].set_index(keys)[["F", "SIGF", "N"]]
        m = frame[~plus.to_numpy()].set_index(keys)[["F", "SIGF", "N"]]
        out = p.add_suffix("(+)").join(m.add_suffix("(-)"), how="outer")
        centric = rs.utils.is_centric(np.array(list(out.index)), index.spacegroup) if len(out) else []
        centric = np.asarray(centric, dtype=bool)
        for name in ("F", "SIGF", "N"):
            out.loc[centric, f"{name}(-)"] = out.loc[centric, f"{name}(+)"]
        fp, fm = out["F(+)"].to_numpy(), out["F(-)"].to_numpy()
        sp, sm = out["SIGF(+)"].to_numpy(), out["SIGF(-)"].to_numpy()
        wp = np.where(np.isfinite(sp), 1.0 / np.square(sp), 0.0)
        wm = np.where(np.isfinite(sm) & ~centric, 1.0 / np.square(sm), 0.0)
        out["F"] = (np.nan_to_num(fp) * wp + np.nan_to_num(fm) * wm) / (wp + wm)
        out["SIGF"] = 1.0 / np.sqrt(wp + wm)
        n_minus = np.where(centric, 0, out["N(-)"].fillna(0))
        out["N"] = out["N(+)"].fillna(0) + n_minus
        for sign in ("(+)", "(-)"):
            out["I" + sign], out["SIGI" + sign] = _intensity_moments(out["F" + sign], out["SIGF" + sign])
    out["I"], out["SIGI"] = _intensity_moments(out["F"].to_numpy(), out["SIGF"].to_numpy())
    order = ["F", "SIGF", "I", "SIGI", "N"]
    if index.anomalous:
        order += ["F(+)", "SIGF(+)", "F(-)", "SIGF(-)", "I(+)", "SIGI(+)", "I(-)", "SIGI(-)", "N(+)", "N(-)"]
        out[["N(+)", "N(-)"]] = out[["N(+)", "N(-)"]].fillna(0)
    ds = rs.DataSet(out[order].reset_index(), cell=index.cell, spacegroup=index.spacegroup, merged=True)
    types = {k: MERGED_TYPES[k] for k in order}
    types.update(H="H", K="H", L="H")
    return ds.astype(types).set_index(["H", "K", "L"])


def write_mtz(ds, path):
    """Write a DataSet, turning I/O failures into one-line errors."""
    try:
        ds.write_mtz(str(path))
    except (OSError, RuntimeError) as err:
        raise InputError(f"cannot write ({err})", path) from None
    return str(path)


#: Columns of the predictions file after H, K, L, with their MTZ types.
PREDICTION_TYPES = {"image_id": "I", "file_id": "I", "test": "I", "Iobs": "J", "SigIobs": "Q",
                    "Ipred": "J", "SigIpred": "Q", "dHKL": "R"}


def write_predictions(index, n_rows, parts, path):
    """Write per-observation predictions to an unmerged MTZ, part by part.

    The rows are written straight into the MTZ's own float32 table (gemmi),
    so memory is one copy of the file's data whatever the number of
    observations.

    Parameters
    ----------
    index : ReflectionIndex
    n_rows : int
        Total number of observations the parts hold.
    parts : iterable of dict of arrays
        ``refl_id, image_id, file_id, test, Iobs, SigIobs, Ipred, SigIpred``.
    path : str

    Returns
    -------
    str
        ``path``.  Columns: ``H, K, L`` (ASU), ``M/ISYM`` (1: an unmerged
        file whose indices are already in the ASU), :data:`PREDICTION_TYPES`
        and, for an anomalous index, ``plus`` (1 for the Friedel-plus member).
    """
    types = {"M/ISYM": "Y", **PREDICTION_TYPES}  # M/ISYM = 1: the indices are those of the ASU
    if index.anomalous:
        types["plus"] = "I"
    mtz = gemmi.Mtz(with_base=True)
    mtz.spacegroup = index.spacegroup
    mtz.add_dataset("careless_online").wavelength = 0.0
    for name, kind in types.items():
        mtz.add_column(name, kind)
    mtz.set_cell_for_all(index.cell)
    mtz.set_data(np.zeros((int(n_rows), 3 + len(types)), dtype=np.float32))
    table = mtz.array  # a writable view of the MTZ's data
    names = list(types)
    dhkl = index.dHKL
    row = 0
    for part in parts:
        ids = np.asarray(part["refl_id"])
        block = table[row:row + len(ids)]
        block[:, :3] = index.hkl[ids]
        values = dict(part, dHKL=dhkl[ids])
        values["M/ISYM"] = 1
        if index.anomalous:
            values["plus"] = index.plus[ids]
        for j, name in enumerate(names, start=3):
            block[:, j] = values[name]
        row += len(ids)
    if row != n_rows:
        raise ValueError(f"predictions hold {row} rows, expected {n_rows}")
    mtz.update_reso()
    try:
        mtz.write_to_file(str(path))
    except (OSError, RuntimeError) as err:
        raise InputError(f"cannot write ({err})", path) from None
    return str(path)


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
