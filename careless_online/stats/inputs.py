"""Read and check the files that the statistics commands analyse.

Every reader turns an unreadable file, a missing column or an unmerged file
where a merged one is needed into :class:`~careless_online.errors.InputError`
naming the file, so that the commands fail with one line.
"""

import os

import pandas as pd
import reciprocalspaceship as rs

from careless_online.errors import InputError
from careless_online.io.layout import careless_name, to_internal

#: Column names of the Friedel-plus and Friedel-minus members of a column.
PLUS, MINUS = "(+)", "(-)"


def read_mtz(path, required=(), merged=None, what="MTZ file"):
    """Read an MTZ file and check that it holds the columns a command needs.

    A merged file of either column layout (careless's or the CCP4-style one,
    :mod:`careless_online.io.layout`) is returned with the internal names
    (``SIGF``, ``SIGI``, and the Friedel means ``F, SIGF, I, SIGI, N`` of an
    anomalous merge), which ``required`` names.

    Parameters
    ----------
    path : str or os.PathLike
        The MTZ file.
    required : sequence of str, optional
        Column names that must be present.
    merged : bool, optional
        If given, the file must be merged (True) or unmerged (False).
    what : str, optional
        A description of the expected file, used in error messages.

    Returns
    -------
    reciprocalspaceship.DataSet
        The reflections, indexed by H, K, L.

    Raises
    ------
    FileNotFoundError
        If ``path`` does not exist.
    careless_online.errors.InputError
        If the file is not a readable MTZ file, lacks a required column, or
        its merged state is not ``merged``.
    """
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(2, "No such file", path)
    try:
        ds = rs.read_mtz(path)
    except (RuntimeError, ValueError, OSError) as err:
        raise InputError(f"not a readable MTZ file ({err})", path=path) from None
    found = list(map(str, ds.columns))
    if ds.merged:
        ds = to_internal(ds)
    missing = [c for c in required if c not in ds.columns]
    if missing:
        names = [c if careless_name(c) == c else f"{c} or {careless_name(c)}" for c in missing]
        raise InputError(
            f"not {_article(what)} {what}: missing column(s) {', '.join(names)}"
            f" (found {', '.join(found) or 'none'})",
            path=path,
        )
    if merged is not None and bool(ds.merged) != merged:
        have, need = ("merged", "unmerged") if ds.merged else ("unmerged", "merged")
        raise InputError(f"not {_article(what)} {what}: it holds {have} reflections, "
                         f"{need} ones are needed", path=path)
    return ds


def _article(noun):
    """The indefinite article for ``noun``."""
    return "an" if noun[:1].lower() in "aeiou" else "a"


def friedel_columns(name):
    """Return the Friedel-plus and Friedel-minus column names of ``name``.

    Parameters
    ----------
    name : str
        A column name such as ``"F"``.

    Returns
    -------
    tuple of str
        For example ``("F(+)", "F(-)")``.
    """
    return name + PLUS, name + MINUS


def has_friedel_columns(ds, name):
    """Whether ``ds`` has both Friedel columns of ``name`` (e.g. F(+) and F(-)).

    Parameters
    ----------
    ds : reciprocalspaceship.DataSet
    name : str

    Returns
    -------
    bool
    """
    return all(c in ds.columns for c in friedel_columns(name))


def read_history(path):
    """Read a training history CSV written by ``careless_online mono``.

    Parameters
    ----------
    path : str or os.PathLike
        CSV with at least a ``step`` column.

    Returns
    -------
    pandas.DataFrame
        The history sorted by step; non-numeric entries become NaN.

    Raises
    ------
    FileNotFoundError
        If ``path`` does not exist.
    careless_online.errors.InputError
        If the file is not a CSV table with a ``step`` column.
    """
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(2, "No such file", path)
    try:
        table = pd.read_csv(path)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as err:
        raise InputError(f"not a CSV training history ({err})", path=path) from None
    if "step" not in table.columns:
        raise InputError(
            "not a training history: missing column step"
            f" (found {', '.join(map(str, table.columns)) or 'none'})",
            path=path,
        )
    table = table.apply(pd.to_numeric, errors="coerce")
    return table.dropna(subset=["step"]).sort_values("step").reset_index(drop=True)
