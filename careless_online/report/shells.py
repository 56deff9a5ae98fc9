"""Per-shell statistics of a live merge.

Everything here costs time proportional to the number of unique reflections
(the half-dataset means it correlates are made elsewhere).  Shells are fixed by the reflection
index (equal numbers of unique reflections, lowest resolution first), so the
same shell means the same reflections in every round and trends are
comparable.

Completeness and multiplicity
    A unique reflection ``hkl`` (Friedel mates together) is measured when it
    has at least one observation; multiplicity is observations per measured
    reflection.

CC1/2 and CCanom
    Pearson correlations, per shell, between the two half-dataset means of
    :mod:`careless_online.report.halves` (model-scaled observations of even
    and odd images), over the index entries measured in both halves (Friedel
    mates as separate reflections with ``--anomalous``); CCanom between the
    halves' differences ``I(+) - I(-)`` of acentric reflections.
"""

from dataclasses import dataclass

import numpy as np

from careless_online.distributions.double_wilson import resolution_shells

#: Fewest reflections from which a shell's CC is estimated (NaN below).
MIN_REFLECTIONS = 10

#: Keys of each shell record, in order.
SHELL_KEYS = ("d_max", "d_min", "completeness", "multiplicity", "cchalf", "ccanom", "n_measured")


def pearson(x, y):
    """Pearson correlation over the pairs where both are finite.

    Returns
    -------
    float
        NaN for fewer than :data:`MIN_REFLECTIONS` pairs or no spread.
    """
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    finite = np.isfinite(x) & np.isfinite(y)
    if finite.sum() < MIN_REFLECTIONS:
        return float("nan")
    x, y = x[finite], y[finite]
    if np.ptp(x) == 0 or np.ptp(y) == 0:  # no spread: np.corrcoef would warn and divide by zero
        return float("nan")
    return float(np.corrcoef(x, y)[0, 1])


@dataclass
class ShellLayout:
    """Equal-count resolution shells of a reflection index, and its Friedel pairs.

    Attributes
    ----------
    shell : numpy.ndarray of int, shape (n_reflections,)
        Shell of each index entry (0: lowest resolution).
    unique : numpy.ndarray of int
        Index entries of the unique reflections (the plus members).
    partner : numpy.ndarray of int, shape (len(unique),)
        The minus member of each unique reflection, -1 where there is none
        (centric reflections, or an index without Friedel mates).
    d_max, d_min : numpy.ndarray of float, shape (n_shells,)
        Resolution range of each shell (Å).
    """

    shell: np.ndarray
    unique: np.ndarray
    partner: np.ndarray
    d_max: np.ndarray
    d_min: np.ndarray

    @classmethod
    def from_index(cls, index, n_shells=10):
        """Shells holding equal numbers of unique reflections of ``index``.

        Parameters
        ----------
        index : careless_online.io.reflections.ReflectionIndex
        n_shells : int

        Returns
        -------
        ShellLayout
        """
        n_shells = int(n_shells)
        if n_shells < 1:
            raise ValueError(f"n_shells must be at least 1, got {n_shells}")
        d = np.asarray(index.dHKL, dtype=float)
        unique = np.flatnonzero(index.plus)
        if len(unique) < n_shells:
            raise ValueError(f"{len(unique)} unique reflections cannot fill {n_shells} shells")
        partner = np.full(len(index), -1, dtype=np.int64)
        minus = np.flatnonzero(~index.plus)
        if len(minus):
            partner[index.lookup(index.hkl[minus], np.ones(len(minus), dtype=bool))] = minus
        shell = np.empty(len(index), dtype=np.int64)
        shell[unique] = resolution_shells(1.0 / np.square(d[unique]), n_shells)
        shell[minus] = shell[index.lookup(index.hkl[minus], np.ones(len(minus), dtype=bool))]
        d_max = np.array([d[unique][shell[unique] == s].max() for s in range(n_shells)])
        d_min = np.array([d[unique][shell[unique] == s].min() for s in range(n_shells)])
        return cls(shell, unique, partner[unique], d_max, d_min)

    @property
    def n_shells(self):
        """Number of shells."""
        return len(self.d_max)


def shell_statistics(layout, counts, halves=None):
    """Completeness, multiplicity, CC1/2 and CCanom per shell and overall.

    Parameters
    ----------
    layout : ShellLayout
    counts : array of int, shape (n_reflections,)
        Observations of each index entry.
    halves : array of float, shape (2, n_reflections), optional
        Half-dataset means (see :func:`careless_online.report.halves.merge_halves`);
        without them CC1/2 and CCanom are NaN.

    Returns
    -------
    shells : list of dict
        One record per shell (keys :data:`SHELL_KEYS`; completeness as a
        fraction), lowest resolution first.
    overall : dict
        The same over all shells.
    """
    counts = np.asarray(counts, dtype=np.int64)
    if halves is None:
        halves = np.full((2, len(counts)), np.nan)
    unique, partner = layout.unique, layout.partner
    has_partner = partner >= 0
    per_unique = counts[unique] + np.where(has_partner, counts[np.maximum(partner, 0)], 0)
    plus_ids, minus_ids = unique[has_partner], partner[has_partner]
    delta = halves[:, plus_ids] - halves[:, minus_ids]
    delta_shell = layout.shell[plus_ids]

    def record(in_shell_unique, in_shell_entry, in_shell_pair, d_max, d_min):
        n_measured = int((per_unique[in_shell_unique] > 0).sum())
        return {
            "d_max": float(d_max), "d_min": float(d_min),
            "completeness": n_measured / max(int(in_shell_unique.sum()), 1),
            "multiplicity": float(per_unique[in_shell_unique].sum() / n_measured) if n_measured else float("nan"),
            "cchalf": pearson(halves[0, in_shell_entry], halves[1, in_shell_entry]),
            "ccanom": pearson(delta[0, in_shell_pair], delta[1, in_shell_pair]),
            "n_measured": n_measured,
        }

    unique_shell = layout.shell[unique]
    shells = [record(unique_shell == s, layout.shell == s, delta_shell == s, layout.d_max[s], layout.d_min[s])
              for s in range(layout.n_shells)]
    overall = record(np.ones(len(unique), dtype=bool), np.ones(len(counts), dtype=bool),
                     np.ones(len(plus_ids), dtype=bool), layout.d_max[0], layout.d_min[-1])
    return shells, overall
