"""Candidate reindexing operators of an indexing ambiguity.

When the lattice has more symmetry than the crystal's point group
(merohedry), a still can be indexed in any of ``[L : G]`` settings, where
``L`` is the lattice point group and ``G`` the crystal's.  The settings are
related by the coset representatives of ``G`` in ``L``: the twin laws that
:func:`gemmi.find_twin_laws` lists.  An operator acts on Miller indices as

.. math::

    h' = M h ,

with ``M`` an integer matrix of determinant +1 written as a triplet in
careless's syntax: ``"k,h,-l"`` means ``h' = (k, h, -l)``.

For an operator to relabel unique reflections consistently, ``M`` must map
symmetry-equivalent indices to symmetry-equivalent ones, i.e. normalize the
point group: ``M g M^{-1} \\in G`` for every rotation ``g`` of ``G``.  All
merohedral twin laws do; an explicit operator that does not is refused.
"""

from dataclasses import dataclass

import gemmi
import numpy as np

from careless_online.errors import InputError

#: Largest obliquity (degrees) of a pseudo-merohedral twin law taken by ``auto``.
MAX_OBLIQUITY = 3.0

#: Names of the ``--reindexing-ops`` modes besides an explicit list.
MODES = ("auto", "none")


def parse_operator(triplet):
    """The integer matrix ``M`` of an hkl triplet such as ``"k,h,-l"``.

    Parameters
    ----------
    triplet : str

    Returns
    -------
    numpy.ndarray of int, shape (3, 3)
        Row ``r`` holds the coefficients of h, k, l in component ``r`` of ``h'``.

    Raises
    ------
    InputError
        If the triplet is not an integer rotation of determinant +1.
    """
    text = str(triplet).strip().lower()
    if not text or any(c in text for c in "xyz"):
        raise InputError(f"reindexing operator {triplet!r} is not an h,k,l triplet (e.g. 'k,h,-l')")
    try:
        op = gemmi.Op(text.replace("h", "x").replace("k", "y").replace("l", "z"))
    except (RuntimeError, ValueError) as error:
        raise InputError(f"reindexing operator {triplet!r} cannot be read ({error})") from None
    if any(t != 0 for t in op.tran):
        raise InputError(f"reindexing operator {triplet!r} has a translation part")
    matrix = np.array(op.rot, dtype=np.int64)
    if np.any(matrix % op.DEN):
        raise InputError(f"reindexing operator {triplet!r} has fractional coefficients")
    matrix //= op.DEN
    if round(np.linalg.det(matrix)) != 1:
        raise InputError(f"reindexing operator {triplet!r} must have determinant +1 (it would invert the hand)")
    return matrix


def format_operator(matrix):
    """The hkl triplet of an integer matrix (inverse of :func:`parse_operator`)."""
    parts = []
    for row in np.asarray(matrix, dtype=int):
        text = ""
        for coefficient, letter in zip(row, "hkl"):
            if coefficient == 0:
                continue
            sign = "-" if coefficient < 0 else ("+" if text else "")
            size = "" if abs(coefficient) == 1 else str(abs(coefficient))
            text += f"{sign}{size}{letter}"
        parts.append(text or "0")
    return ",".join(parts)


def point_group_rotations(spacegroup):
    """Rotations of the point group acting on Miller indices (integer matrices ``g``, ``h' = g h``)."""
    return [np.array(op.rot, dtype=np.int64).T // op.DEN for op in spacegroup.operations()]


def normalizes(matrix, spacegroup):
    """True if ``M g M^{-1}`` is a rotation of the point group for every ``g`` of it."""
    rotations = point_group_rotations(spacegroup)
    keys = {r.tobytes() for r in rotations}
    inverse = np.rint(np.linalg.inv(matrix)).astype(np.int64)
    return all((matrix @ g @ inverse).tobytes() in keys for g in rotations)


@dataclass
class ReindexingOperators:
    """The settings a still can be indexed in, identity first.

    Attributes
    ----------
    matrices : list of numpy.ndarray
        ``M_0 = 1`` then one matrix per alternative setting.
    reason : str
        Why these operators (for the log).
    spacegroup : gemmi.SpaceGroup
    """

    matrices: list
    reason: str
    spacegroup: gemmi.SpaceGroup

    def __len__(self):
        return len(self.matrices)

    @property
    def triplets(self):
        """hkl triplets of the operators, identity first."""
        return [format_operator(m) for m in self.matrices]

    def coset(self, matrix):
        """Position of the operator equivalent to ``matrix`` under the point group (-1 if none)."""
        rotations = point_group_rotations(self.spacegroup)
        for j, candidate in enumerate(self.matrices):
            relative = np.rint(np.linalg.inv(candidate)).astype(np.int64) @ np.asarray(matrix, dtype=np.int64)
            if any(np.array_equal(relative, g) for g in rotations):
                return j
        return -1

    def to_config(self):
        """JSON-serializable description (the triplets)."""
        return {"operators": self.triplets, "reason": self.reason}

    def same_settings(self, triplets):
        """True if ``triplets`` (identity first) name the same settings, in the same order, as these operators."""
        if len(triplets) != len(self):
            return False
        return all(self.coset(parse_operator(t)) == j for j, t in enumerate(triplets))

    def reflection_table(self, index):
        """Unique-reflection id of every index reflection under every operator.

        Row ``r`` column ``j`` is the id of ``M_j h_r`` (``h_r`` the
        observed-sign index of reflection ``r``: ``-h`` for a Friedel-minus
        entry), mapped to the ASU; -1 where it falls outside the index
        (possible only for pseudo-merohedral operators near ``dmin``).

        Parameters
        ----------
        index : careless_online.io.reflections.ReflectionIndex

        Returns
        -------
        numpy.ndarray of int32, shape (len(index), len(self))
        """
        from careless_online.io.reflections import map_to_asu  # reciprocalspaceship: not for the CLI checks

        signed = np.where(index.plus[:, None], index.hkl, -index.hkl).astype(np.int64)
        columns = []
        for matrix in self.matrices:
            asu, plus = map_to_asu(signed @ matrix.T, index.spacegroup)
            columns.append(index.lookup(asu, plus))
        return np.stack(columns, axis=1).astype(np.int32)


def _twin_laws(cell, spacegroup):
    """hkl matrices of gemmi's twin laws (merohedral and pseudo-merohedral)."""
    ops = gemmi.find_twin_laws(cell, spacegroup, MAX_OBLIQUITY, False)
    return [parse_operator(op.as_hkl().triplet("h")) for op in ops]


def candidate_operators(spec, cell, spacegroup):
    """Resolve a ``--reindexing-ops`` value into :class:`ReindexingOperators`.

    Parameters
    ----------
    spec : str
        ``"auto"`` (the twin laws of the lattice, if any), ``"none"``, or a
        ``;``-separated list of hkl triplets (``"k,h,-l"``; the identity is
        always the first setting and need not be given).
    cell : gemmi.UnitCell
    spacegroup : gemmi.SpaceGroup

    Returns
    -------
    ReindexingOperators

    Raises
    ------
    InputError
        For an unreadable operator, one that does not normalize the point
        group, or one equivalent to the identity or to another.
    """
    spec = str(spec).strip()
    identity = np.eye(3, dtype=np.int64)
    if spec.lower() == "none":
        return ReindexingOperators([identity], "--reindexing-ops none: every image is taken as indexed",
                                   spacegroup)
    if spec.lower() == "auto":
        laws = _twin_laws(cell, spacegroup)
        group = f"{spacegroup.xhm()} (point group {spacegroup.point_group_hm()})"
        if not laws:
            return ReindexingOperators([identity], f"auto: the lattice of {group} has no higher symmetry",
                                       spacegroup)
        found = ", ".join(format_operator(m) for m in laws)
        reason = (f"auto: the lattice of {group} has rotation group {_lattice_point_group(cell)}; "
                  f"{len(laws) + 1} settings, twin law(s) {found} (gemmi.find_twin_laws, obliquity <= "
                  f"{MAX_OBLIQUITY} deg)")
        return ReindexingOperators([identity] + laws, reason, spacegroup)
    matrices = [identity]
    for triplet in filter(None, (t.strip() for t in spec.split(";"))):
        matrix = parse_operator(triplet)
        if not normalizes(matrix, spacegroup):
            raise InputError(f"reindexing operator {triplet!r} does not map symmetry-equivalent reflections "
                             f"of {spacegroup.xhm()} onto equivalent ones")
        _check_distinct(matrix, matrices, spacegroup, triplet)
        matrices.append(matrix)
    if len(matrices) == 1:
        raise InputError(f"--reindexing-ops {spec!r}: give auto, none or operators such as 'k,h,-l'")
    return ReindexingOperators(matrices, f"--reindexing-ops {spec}", spacegroup)


def _check_distinct(matrix, previous, spacegroup, triplet):
    """Refuse an operator in the same coset of the point group as an earlier one."""
    j = ReindexingOperators(previous, "", spacegroup).coset(matrix)
    if j >= 0:
        raise InputError(f"reindexing operator {triplet!r} is equivalent to {format_operator(previous[j])} "
                         "under the space group's symmetry")


def _lattice_point_group(cell):
    """Hermann-Mauguin symbol of the lattice point group of ``cell``."""
    ops = gemmi.find_lattice_symmetry(cell, "P", MAX_OBLIQUITY)
    group = gemmi.find_spacegroup_by_ops(ops) if ops is not None else None
    return group.point_group_hm() if group is not None else "unknown"
