"""Column layouts of the merged and half-dataset MTZ files.

careless_online computes a merge as one table with *internal* names:
``F, SIGF, I, SIGI, N`` and, with Friedel mates kept apart, also
``F(+), SIGF(+), F(-), SIGF(-), I(+), SIGI(+), I(-), SIGI(-), N(+), N(-)``
(:func:`careless_online.io.writers.merged_table`).  It is written in one of
two layouts (``mono --output-columns``):

``careless`` (default)
    careless 0.5.4's: ``SigF``/``SigI`` for the uncertainties, ``N`` as a
    real column (MTZ type R) and, for an anomalous merge, only the Friedel
    pairs ``F(+), SigF(+), F(-), SigF(-), I(+), SigI(+), I(-), SigI(-),
    N(+), N(-)`` (no mean columns, so that ``rs.DataSet.stack_anomalous``
    gives ``F, SigF, I, SigI, N``).  A centric reflection has one member:
    its (-) columns repeat its (+) ones, as ``rs.DataSet.unstack_anomalous``
    (which careless calls) writes them; the (-) columns of an acentric
    reflection observed only as (+) are NaN, its ``N(-)`` too.  A merge
    without Friedel pairs puts ``I, SigI`` before ``F, SigF``, so a program
    that takes the first intensity and the first sigma column (careless.isigi)
    pairs I with SigI.
``ccp4``
    The internal names (``SIGF``, ``SIGI``, ``N`` an integer column), with
    the Friedel-mean columns ``F, SIGF, I, SIGI, N`` beside the pairs.

Readers take either layout: :func:`to_internal` turns a file of any of them
back into the internal names and columns.
"""

import numpy as np

#: Names of the layouts, the default first.
LAYOUTS = ("careless", "ccp4")

#: The layout written unless another is asked for.
DEFAULT_LAYOUT = LAYOUTS[0]

#: Internal value columns of a merge, in the order ``ccp4`` writes them.
MEAN_COLUMNS = ("F", "SIGF", "I", "SIGI", "N")

#: Internal Friedel-pair columns, in the order both layouts write them.
PAIR_COLUMNS = ("F(+)", "SIGF(+)", "F(-)", "SIGF(-)", "I(+)", "SIGI(+)", "I(-)", "SIGI(-)", "N(+)", "N(-)")

#: Internal uncertainty names and careless's.
_CARELESS_SIGMAS = {"SIGF": "SigF", "SIGI": "SigI"}

#: MTZ types of the value columns, by internal name without the Friedel suffix.
_TYPES = {"ccp4": {"F": "F", "SIGF": "Q", "I": "J", "SIGI": "Q", "N": "I"},
          "careless": {"F": "F", "SIGF": "Q", "I": "J", "SIGI": "Q", "N": "R"}}

#: The Friedel (anomalous) MTZ types of the same columns.
_FRIEDEL_TYPES = {"F": "G", "SIGF": "L", "I": "K", "SIGI": "M"}

#: Columns that tell half-dataset merges apart, with their MTZ type.
HALF_TYPES = {"repeat": "I", "half": "I"}


def _split(name):
    """``("SIGF", "(+)")`` for ``"SIGF(+)"``, ``("F", "")`` for ``"F"``."""
    for suffix in ("(+)", "(-)"):
        if name.endswith(suffix):
            return name[: -len(suffix)], suffix
    return name, ""


def careless_name(name):
    """careless's name of an internal column (``SIGF(+)`` -> ``SigF(+)``); others unchanged."""
    base, suffix = _split(name)
    return _CARELESS_SIGMAS.get(base, base) + suffix


def internal_name(name):
    """The internal name of a column of either layout (``SigF(+)`` -> ``SIGF(+)``); others unchanged.

    Parameters
    ----------
    name : str

    Returns
    -------
    str
    """
    base, suffix = _split(name)
    inverse = {v: k for k, v in _CARELESS_SIGMAS.items()}
    return inverse.get(base, base) + suffix


def mtz_type(name, layout):
    """MTZ type of an internal value column in a layout (``F(+)`` -> ``G``)."""
    base, suffix = _split(name)
    if suffix and base in _FRIEDEL_TYPES:
        return _FRIEDEL_TYPES[base]
    return _TYPES[layout][base]


def check_layout(layout):
    """Refuse a layout name that is not one of :data:`LAYOUTS`."""
    if layout not in LAYOUTS:
        raise ValueError(f"unknown output column layout {layout!r}; choose one of {', '.join(LAYOUTS)}")
    return layout


def to_layout(ds, layout=DEFAULT_LAYOUT):
    """A merged table with internal names, as written in ``layout``.

    Parameters
    ----------
    ds : rs.DataSet
        Internal columns (:data:`MEAN_COLUMNS`, with an anomalous merge also
        :data:`PAIR_COLUMNS`) and, for half-dataset merges, ``repeat`` and
        ``half``; other columns are dropped.
    layout : {"careless", "ccp4"}

    Returns
    -------
    rs.DataSet
        A new table with the layout's names, columns, order and MTZ types.
    """
    check_layout(layout)
    anomalous = all(c in ds.columns for c in PAIR_COLUMNS)
    if layout == "ccp4":
        values = list(MEAN_COLUMNS) + (list(PAIR_COLUMNS) if anomalous else [])
    elif anomalous:
        values = list(PAIR_COLUMNS)
    else:
        values = ["I", "SIGI", "F", "SIGF", "N"]
    extra = [c for c in HALF_TYPES if c in ds.columns]
    out = ds[values + extra].copy()
    types = {c: mtz_type(c, layout) for c in values}
    types.update({c: HALF_TYPES[c] for c in extra})
    if layout == "careless" and anomalous:
        out = _careless_pairs(out)
    out = out.astype(types)
    if layout == "careless":
        out = out.rename(columns=careless_name)
    return out


def _careless_pairs(pairs):
    """Friedel pairs as careless's layout has them: a mate that was not measured is NaN, counts too.

    A centric reflection is one measurement, so its (-) columns are empty:
    careless.ccanom then pairs only acentric reflections (its ``N(-) > 0``).
    """
    out = pairs.astype({"N(+)": "R", "N(-)": "R"})
    for name in ("N(+)", "N(-)"):
        out[name] = out[name].where(out[name] > 0, np.nan)
    if len(out):
        centric = out.label_centrics()["CENTRIC"].to_numpy(dtype=bool)
        minus = [c for c in PAIR_COLUMNS if c.endswith("(-)")]
        out.loc[centric, minus] = np.nan
    return out


def to_internal(ds):
    """A merged table of either layout with the internal names and columns.

    careless-layout files get their uncertainties renamed; an anomalous one
    gets the Friedel-mean columns ``F, SIGF, I, SIGI, N`` (inverse-variance
    weighted means of the mates; a centric reflection counts once), centric
    (-) columns filled from the (+) ones where they are empty, and missing
    counts set to 0.  A ccp4-layout table is returned with its columns as
    they are.

    Parameters
    ----------
    ds : rs.DataSet

    Returns
    -------
    rs.DataSet
    """
    out = ds.rename(columns=internal_name)
    anomalous = all(c in out.columns for c in PAIR_COLUMNS)
    if not anomalous or all(c in out.columns for c in MEAN_COLUMNS):
        return out
    centric = out.label_centrics()["CENTRIC"].to_numpy(dtype=bool) if len(out) else np.zeros(0, bool)
    for name in PAIR_COLUMNS[::2] + PAIR_COLUMNS[1::2]:
        base, suffix = _split(name)
        if suffix == "(-)":
            plus = out[base + "(+)"].to_numpy(dtype=float)
            minus = out[name].to_numpy(dtype=float)
            out[name] = np.where(centric & ~np.isfinite(minus), plus, minus)
    out = out.astype({"N(+)": "R", "N(-)": "R"})
    out[["N(+)", "N(-)"]] = out[["N(+)", "N(-)"]].fillna(0)
    means = friedel_means(out, centric)
    for name in MEAN_COLUMNS:
        out[name] = means[name]
    return out.astype({name: mtz_type(name, "ccp4") for name in PAIR_COLUMNS + MEAN_COLUMNS})


def friedel_means(pairs, centric):
    """Friedel-mean ``F, SIGF, I, SIGI, N`` of a table with internal pair columns.

    ``F`` and ``I`` are inverse-variance weighted means of the mates with
    their standard errors; a centric reflection is one measurement (its (-)
    columns, copies of the (+) ones, are ignored) and counts ``N(+)``.

    Parameters
    ----------
    pairs : pandas.DataFrame
        With :data:`PAIR_COLUMNS` (counts without NaN).
    centric : array of bool, shape (len(pairs),)

    Returns
    -------
    dict of numpy.ndarray
    """
    centric = np.asarray(centric, dtype=bool)
    out = {}
    for value, sigma in (("F", "SIGF"), ("I", "SIGI")):
        minus_sigma = np.where(centric, np.nan, pairs[f"{sigma}(-)"].to_numpy(dtype=float))
        out[value], out[sigma] = _inverse_variance_mean(
            [pairs[f"{value}(+)"].to_numpy(dtype=float), pairs[f"{value}(-)"].to_numpy(dtype=float)],
            [pairs[f"{sigma}(+)"].to_numpy(dtype=float), minus_sigma])
    plus, minus = (pairs[c].to_numpy(dtype=float) for c in ("N(+)", "N(-)"))
    out["N"] = (plus + np.where(centric, 0, minus)).astype(np.int64)
    return out


def _inverse_variance_mean(values, sigmas):
    """Inverse-variance weighted mean and its standard error over the pairs of columns given."""
    weights = [np.where(np.isfinite(s) & np.isfinite(v), 1.0 / np.square(s), 0.0) for v, s in zip(values, sigmas)]
    total = sum(weights)
    with np.errstate(divide="ignore", invalid="ignore"):
        mean = sum(np.nan_to_num(v) * w for v, w in zip(values, weights)) / total
        return mean, 1.0 / np.sqrt(total)
