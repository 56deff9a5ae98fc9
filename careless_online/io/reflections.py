"""Stable identifiers for the unique reflections a merge can estimate.

An online merger must know, before it has seen all the data, how many
structure factors it estimates.  The set is fixed by the unit cell, the space
group, the resolution limit and whether Friedel mates are kept apart: every
reflection of the reciprocal asymmetric unit (ASU) to ``dmin`` gets an integer
id, in a fixed order, so that data read later (more images, a live stream, a
resumed run) map onto the same ids.
"""

from dataclasses import dataclass
from functools import cached_property

import gemmi
import numpy as np
import reciprocalspaceship as rs
from reciprocalspaceship.utils import asu as rs_asu

#: Offset and radix used to pack Miller indices into one integer key.
_OFFSET = 512
_RADIX = 1024


def pack_hkl(hkl, plus):
    """Pack Miller indices and a Friedel flag into sortable int64 keys.

    Parameters
    ----------
    hkl : array of int, shape (n, 3)
        Miller indices, each within (-512, 512).
    plus : array of bool, shape (n,)
        True for the Friedel-plus member (or when Friedel mates are merged).

    Returns
    -------
    numpy.ndarray of int64, shape (n,)
    """
    hkl = np.asarray(hkl, dtype=np.int64) + _OFFSET
    key = (hkl[:, 0] * _RADIX + hkl[:, 1]) * _RADIX + hkl[:, 2]
    return key * 2 + np.asarray(plus, dtype=np.int64)


def map_to_asu(hkl, spacegroup):
    """Map observed Miller indices to the reciprocal ASU.

    Parameters
    ----------
    hkl : array of int, shape (n, 3)
        Observed indices.
    spacegroup : gemmi.SpaceGroup

    Returns
    -------
    asu : numpy.ndarray of int32, shape (n, 3)
        Indices in the reciprocal ASU (Friedel mates map to the same ASU index).
    plus : numpy.ndarray of bool, shape (n,)
        True where the observation is the Friedel-plus member (its ASU index is
        reached by a proper rotation), False for the Friedel-minus member.
    """
    hkl = np.asarray(hkl, dtype=np.int32).reshape(-1, 3)
    if len(hkl) == 0:
        return hkl.copy(), np.zeros(0, dtype=bool)
    _, first, inverse = np.unique(pack_hkl(hkl, np.zeros(len(hkl), dtype=bool)), return_index=True,
                                  return_inverse=True)
    asu, isym = hkl_to_asu(hkl[first], spacegroup)  # each distinct index once
    # MTZ ISYM convention: odd for Friedel plus, even for Friedel minus.
    return asu[inverse], isym[inverse] % 2 == 1


def hkl_to_asu(hkl, spacegroup):
    """``reciprocalspaceship.utils.hkl_to_asu`` of integer indices, trying each operator only where still needed.

    The candidates are taken in rs's order (each operator, then its Friedel mate) and every
    index takes the first candidate that rs's ASU test accepts, so the result is rs's; rs
    applies every candidate to every index, in float64, which made it most of a stream's
    conversion time.

    Parameters
    ----------
    hkl : numpy.ndarray of int32, shape (n, 3)
    spacegroup : gemmi.SpaceGroup

    Returns
    -------
    asu : numpy.ndarray of int32, shape (n, 3)
    isym : numpy.ndarray of int64, shape (n,)
        1-based number of the candidate (MTZ ISYM: odd for Friedel plus).
    """
    in_asu = rs_asu.asu_cases[rs_asu.ccp4_hkl_asu[spacegroup.number - 1]]
    basis = spacegroup.basisop
    asu, isym = np.zeros_like(hkl), np.zeros(len(hkl), dtype=np.int64)
    todo = np.arange(len(hkl))
    for number, op in enumerate(spacegroup.operations()):
        moved = rs.utils.apply_to_hkl(hkl[todo], op).astype(np.int32)
        for candidate, sign in ((2 * number + 1, 1), (2 * number + 2, -1)):
            image = sign * moved
            hit = np.asarray(in_asu(*rs.utils.apply_to_hkl(image, basis).T), dtype=bool)
            asu[todo[hit]], isym[todo[hit]] = image[hit], candidate
            todo, moved = todo[~hit], moved[~hit]
            if len(todo) == 0:
                return asu, isym
    return asu, isym


def _read_only(array):
    """``array``, marked read-only (it is cached and shared)."""
    array.setflags(write=False)
    return array


@dataclass
class ReflectionIndex:
    """The ordered set of unique reflections a model estimates.

    The derived arrays (``centric``, ``epsilon``, ``dHKL`` and the lookup
    keys) are computed once, on first use; treat the attributes as read-only.

    Attributes
    ----------
    hkl : numpy.ndarray of int32, shape (n, 3)
        ASU Miller indices.
    plus : numpy.ndarray of bool, shape (n,)
        Friedel-plus flag (all True unless ``anomalous``).  Centric
        reflections only ever have the plus member.
    cell : gemmi.UnitCell
    spacegroup : gemmi.SpaceGroup
    dmin : float
    anomalous : bool
    """

    hkl: np.ndarray
    plus: np.ndarray
    cell: gemmi.UnitCell
    spacegroup: gemmi.SpaceGroup
    dmin: float
    anomalous: bool

    @classmethod
    def from_cell(cls, cell, spacegroup, dmin, anomalous=False):
        """Enumerate the reciprocal ASU to ``dmin``.

        Parameters
        ----------
        cell : gemmi.UnitCell
        spacegroup : gemmi.SpaceGroup
        dmin : float
            High-resolution limit in Angstrom.
        anomalous : bool
            Keep Friedel mates of acentric reflections as separate entries.

        Returns
        -------
        ReflectionIndex
        """
        hkl = rs.utils.generate_reciprocal_asu(cell, spacegroup, dmin, anomalous=False)
        hkl = np.asarray(hkl, dtype=np.int32)
        d = cell.calculate_d_array(hkl)
        order = np.lexsort((hkl[:, 2], hkl[:, 1], hkl[:, 0], -d))
        hkl = hkl[order]
        plus = np.ones(len(hkl), dtype=bool)
        if anomalous:
            acentric = ~rs.utils.is_centric(hkl, spacegroup)
            hkl = np.concatenate([hkl, hkl[acentric]])
            plus = np.concatenate([plus, np.zeros(acentric.sum(), dtype=bool)])
        return cls(hkl, plus, cell, spacegroup, float(dmin), bool(anomalous))

    def __len__(self):
        return len(self.hkl)

    @cached_property
    def centric(self):
        """numpy.ndarray of bool: centric flag of each reflection."""
        return _read_only(np.asarray(rs.utils.is_centric(self.hkl, self.spacegroup), dtype=bool))

    @cached_property
    def epsilon(self):
        """numpy.ndarray of float32: the statistical weight (epsilon factor)."""
        return _read_only(np.asarray(
            rs.utils.compute_structurefactor_multiplicity(self.hkl, self.spacegroup), dtype=np.float32
        ))

    @cached_property
    def dHKL(self):
        """numpy.ndarray of float32: resolution of each reflection in Angstrom."""
        return _read_only(self.cell.calculate_d_array(self.hkl).astype(np.float32))

    def lookup(self, asu_hkl, plus):
        """Ids of ASU reflections; -1 where a reflection is not in the index.

        Parameters
        ----------
        asu_hkl : array of int, shape (n, 3)
            Indices already mapped to the ASU (see :func:`map_to_asu`).
        plus : array of bool, shape (n,)
            Friedel-plus flags.  Ignored unless the index is anomalous;
            centric reflections always map to their plus member.

        Returns
        -------
        numpy.ndarray of int32, shape (n,)
        """
        asu_hkl = np.asarray(asu_hkl).reshape(-1, 3)
        if len(self.hkl) == 0:
            return np.full(len(asu_hkl), -1, dtype=np.int32)
        order, sorted_keys = self._sorted_keys

        def find(hkl, plus_flags):
            query = pack_hkl(hkl, plus_flags)
            pos = np.clip(np.searchsorted(sorted_keys, query), 0, len(sorted_keys) - 1)
            return np.where(sorted_keys[pos] == query, order[pos], -1).astype(np.int32)

        if not self.anomalous:
            return find(asu_hkl, np.ones(len(asu_hkl), dtype=bool))
        ids = find(asu_hkl, plus)
        # A centric reflection has only its plus member in the index.
        retry = np.flatnonzero(ids < 0)
        if len(retry):
            again = find(asu_hkl[retry], np.ones(len(retry), dtype=bool))
            centric = self.centric
            ids[retry] = np.where((again >= 0) & centric[np.maximum(again, 0)], again, -1)
        return ids

    @cached_property
    def _sorted_keys(self):
        """(order, sorted packed keys) of the index, for :meth:`lookup`."""
        keys = pack_hkl(self.hkl, self.plus)
        order = np.argsort(keys)
        return order, keys[order]

    def to_config(self):
        """A JSON-serializable description from which the index is rebuilt."""
        return {
            "cell": list(self.cell.parameters),
            "spacegroup": self.spacegroup.xhm(),
            "dmin": self.dmin,
            "anomalous": self.anomalous,
            "n_reflections": len(self),
        }

    @classmethod
    def from_config(cls, config):
        """Rebuild an index saved with :meth:`to_config` (same ids, same order)."""
        index = cls.from_cell(
            gemmi.UnitCell(*config["cell"]),
            gemmi.SpaceGroup(config["spacegroup"]),
            config["dmin"],
            config["anomalous"],
        )
        if len(index) != config.get("n_reflections", len(index)):
            raise ValueError("reflection index does not rebuild to the saved size")
        return index
