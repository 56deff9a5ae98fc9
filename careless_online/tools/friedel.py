"""Split unmerged data into Friedel halves and join their merges (careless's friedelize / unfriedelize).

An anomalous merge can be made from two ordinary (Friedel-merged) merges: the
observations of Friedel-plus reflections (and all centric ones) are merged in one
run, those of Friedel-minus reflections in another; the minus run's reflection
``h`` (in the ASU of the Laue group) holds ``F(-h)``, which is the ``F(-)`` of
``h`` in an anomalous table.  Centric reflections have no ``F(-)`` (NaN), as in
careless's anomalous outputs.
"""

import numpy as np

from careless_online.errors import DataError

#: MTZ types of the Friedel columns, by the type of the merged column.
FRIEDEL_TYPES = {"F": "G", "Q": "L", "J": "K", "I": "I", "R": "R"}

#: Uncertainty columns of intensities are typed M, of amplitudes L.
INTENSITY_SIGMA = "M"


def friedel_halves(ds):
    """Boolean mask of the observations in the Friedel-plus half (centric ones included).

    Parameters
    ----------
    ds : reciprocalspaceship.DataSet
        Unmerged observations indexed by H, K, L (as indexed, any setting of the Laue group).

    Returns
    -------
    numpy.ndarray of bool
    """
    if ds.merged:
        raise DataError("friedelize splits unmerged observations; this file is merged")
    plus = ds.hkl_to_asu()["M/ISYM"].to_numpy() % 2 == 1
    return plus | ds.label_centrics()["CENTRIC"].to_numpy(bool)


def _friedel_type(ds, column):
    mtztype = ds[column].dtype.mtztype
    if mtztype == "Q" and column.upper().startswith("SIGI"):
        return INTENSITY_SIGMA
    return FRIEDEL_TYPES.get(mtztype)


def join_halves(plus, minus):
    """An anomalous table (``X(+)``, ``X(-)`` for each column ``X``) from the merges of the two halves.

    Parameters
    ----------
    plus, minus : reciprocalspaceship.DataSet
        Merged (Friedel-merged) tables of the plus and minus halves, with the same columns.

    Returns
    -------
    reciprocalspaceship.DataSet
        Indexed by the reflections of either half; the columns that have a
        Friedel type (amplitudes, intensities, their uncertainties, counts).
    """
    if not (plus.merged and minus.merged):
        raise DataError("unfriedelize joins two merged files")
    columns = [c for c in plus.columns if c in minus.columns and _friedel_type(plus, c)]
    if not columns:
        raise DataError("the two files share no amplitude, intensity or count column")
    table = plus[columns].add_suffix("(+)").join(minus[columns].add_suffix("(-)"), how="outer")
    table = table.reindex(columns=[f"{c}{s}" for c in columns for s in ("(+)", "(-)")])
    for column in columns:
        for suffix in ("(+)", "(-)"):
            values = table[column + suffix].to_numpy(float)
            table[column + suffix] = values.astype(np.float32)
            table[column + suffix] = table[column + suffix].astype(_friedel_type(plus, column))
    table.cell, table.spacegroup, table.merged = plus.cell, plus.spacegroup, True
    centric = table.label_centrics()["CENTRIC"].to_numpy(bool)
    for column in table.columns:
        if column.endswith("(-)"):
            table.loc[centric, column] = np.nan
    return table
