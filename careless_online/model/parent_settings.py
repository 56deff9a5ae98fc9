"""Reindexing inside the double-Wilson prior (careless's ``--double-wilson-reindexing-ops``).

A child dataset indexed in another setting than its parent (an indexing
ambiguity resolved differently, another cell choice) relates its reflection
``h`` to the parent's reflection ``M h``.  One operator per dataset, ``;``-separated,
written as a triplet in h,k,l or (as careless writes them) x,y,z letters, e.g.
``"h,k,l;k,h,-l"`` or ``"x,y,z;y,x,-z"``; a translation part (careless's examples
carry them) does not act on Miller indices and is ignored.  Roots take the identity.
"""

import gemmi
import numpy as np

from careless_online.errors import InputError

#: The identity, for roots and datasets in their parent's setting.
IDENTITY = "h,k,l"


def parse_rotation(triplet):
    """The integer matrix ``M`` (``h' = M h``) of an operator in h,k,l or x,y,z letters.

    Raises
    ------
    InputError
        If the triplet cannot be read or is not an integer matrix of determinant +-1.
    """
    text = str(triplet).strip().lower().replace("h", "x").replace("k", "y").replace("l", "z")
    try:
        op = gemmi.Op(text)
    except (RuntimeError, ValueError) as error:
        raise InputError(f"--double-wilson-reindexing-ops: cannot read {triplet!r} ({error})") from None
    matrix = np.array(op.rot, dtype=np.int64)
    if np.any(matrix % op.DEN) or round(abs(np.linalg.det(matrix // op.DEN))) != 1:
        raise InputError(f"--double-wilson-reindexing-ops: {triplet!r} is not an integer operator of determinant +-1")
    return matrix // op.DEN


def parse_operators(text, n_datasets):
    """One normalized operator (``h,k,l`` letters, no translation) per dataset from a ``;``-separated list.

    Raises
    ------
    InputError
        For a count other than ``n_datasets`` or an unreadable operator.
    """
    ops = [t for t in str(text).split(";") if t.strip()]
    if len(ops) != n_datasets:
        raise InputError(f"--double-wilson-reindexing-ops gives {len(ops)} operator(s) for {n_datasets} datasets "
                         "(one per dataset, ';'-separated; the identity x,y,z for roots)")
    return [_triplet(parse_rotation(t)) for t in ops]


def _triplet(matrix):
    letters = "hkl"
    rows = []
    for row in matrix:
        terms = "".join(f"{'+' if c > 0 else '-'}{abs(c) if abs(c) != 1 else ''}{letters[j]}"
                        for j, c in enumerate(row) if c)
        rows.append(terms.lstrip("+"))
    return ",".join(rows)


def parent_table(index, operators):
    """``[n_datasets, len(index)]``: id of the parent's reflection ``M_d h`` of every reflection of dataset ``d``.

    A reflection whose image falls outside the index (only near ``dmin``
    for an operator that is not a symmetry of the lattice) keeps its own id.

    Parameters
    ----------
    index : careless_online.io.reflections.ReflectionIndex
    operators : list of str
        One per dataset (:func:`parse_operators`).

    Returns
    -------
    (numpy.ndarray of int32, int)
        The table and the number of reflections that kept their own id.
    """
    from careless_online.io.reflections import map_to_asu

    signed = np.where(index.plus[:, None], index.hkl, -index.hkl).astype(np.int64)
    own = np.arange(len(index), dtype=np.int64)
    rows, outside = [], 0
    for triplet in operators:
        asu, plus = map_to_asu(signed @ parse_rotation(triplet).T, index.spacegroup)
        ids = np.asarray(index.lookup(asu, plus), dtype=np.int64)
        outside += int(np.sum(ids < 0))
        rows.append(np.where(ids >= 0, ids, own))
    return np.stack(rows).astype(np.int32), outside
