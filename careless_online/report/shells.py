r"""Per-shell statistics of a live merge, from the counts and the posterior alone.

Everything here costs time proportional to the number of unique reflections:
the observations are never read again.  Shells are fixed by the reflection
index (equal numbers of unique reflections, lowest resolution first), so the
same shell means the same reflections in every round and trends are
comparable.

Completeness and multiplicity
    A unique reflection ``hkl`` (Friedel mates together) is measured when it
    has at least one observation; multiplicity is observations per measured
    reflection.

CC1/2 and CCanom (an estimate from the posterior, not from two half merges)
    Training two half models side by side would double the cost of the live
    merge; instead the half-dataset correlation is estimated from the
    posterior of the one model.  In a shell, let :math:`\mu_i` and
    :math:`s_i` be the posterior mean and standard deviation of the measured
    amplitudes.  If the true amplitudes vary with variance :math:`S` in the
    shell and the full data determine each with error variance :math:`N`
    (each half with :math:`2N`), the posterior under a Gaussian prior has
    :math:`\operatorname{Var}(\mu) = S^2/(S+N)` and :math:`s^2 = SN/(S+N)`,
    and the correlation of two independent half-data estimates is

    .. math::

        CC_{1/2} = \frac{S}{S + 2N}
                 = \frac{\operatorname{Var}(\mu)}{\operatorname{Var}(\mu) + 2\langle s^2\rangle}.

    The same formula on the anomalous differences
    :math:`\Delta = \mu_+ - \mu_-` with :math:`s_\Delta^2 = s_+^2 + s_-^2`
    (acentric reflections with both mates measured) estimates CCanom.  The
    estimate is as good as the posterior's calibration: an overconfident
    posterior overstates it.  With ``--anomalous`` the Friedel mates count as
    separate reflections for CC1/2.
"""

from dataclasses import dataclass

import numpy as np

#: Fewest reflections from which a shell's CC is estimated (NaN below).
MIN_REFLECTIONS = 10

#: Keys of each shell record, in order.
SHELL_KEYS = ("d_max", "d_min", "completeness", "multiplicity", "cchalf", "ccanom", "n_measured")


def posterior_cc(mean, std):
    r"""Half-dataset correlation estimated from posterior means and standard deviations.

    :math:`\operatorname{Var}(\mu) / (\operatorname{Var}(\mu) + 2\langle s^2\rangle)`
    (see the module docstring).

    Parameters
    ----------
    mean, std : array-like of float, shape (n,)
        Posterior means and standard deviations of the reflections of a shell.

    Returns
    -------
    float
        NaN for fewer than :data:`MIN_REFLECTIONS` finite pairs.
    """
    mean, std = np.asarray(mean, dtype=float), np.asarray(std, dtype=float)
    finite = np.isfinite(mean) & np.isfinite(std)
    if finite.sum() < MIN_REFLECTIONS:
        return float("nan")
    signal = float(np.var(mean[finite]))
    noise = float(np.mean(np.square(std[finite])))
    if signal + noise <= 0:
        return float("nan")
    return signal / (signal + 2.0 * noise)


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
        rank = np.empty(len(unique), dtype=np.int64)
        rank[np.argsort(-d[unique], kind="stable")] = np.arange(len(unique))
        shell = np.empty(len(index), dtype=np.int64)
        shell[unique] = rank * n_shells // len(unique)
        shell[minus] = shell[index.lookup(index.hkl[minus], np.ones(len(minus), dtype=bool))]
        d_max = np.array([d[unique][shell[unique] == s].max() for s in range(n_shells)])
        d_min = np.array([d[unique][shell[unique] == s].min() for s in range(n_shells)])
        return cls(shell, unique, partner[unique], d_max, d_min)

    @property
    def n_shells(self):
        """Number of shells."""
        return len(self.d_max)


def shell_statistics(layout, counts, f_mean, f_std):
    """Completeness, multiplicity, CC1/2 and CCanom per shell and overall.

    Parameters
    ----------
    layout : ShellLayout
    counts : array of int, shape (n_reflections,)
        Observations of each index entry.
    f_mean, f_std : array of float, shape (n_reflections,)
        Posterior mean and standard deviation of each index entry.

    Returns
    -------
    shells : list of dict
        One record per shell (keys :data:`SHELL_KEYS`; completeness as a
        fraction), lowest resolution first.
    overall : dict
        The same over all shells.
    """
    counts = np.asarray(counts, dtype=np.int64)
    f_mean, f_std = np.asarray(f_mean, dtype=float), np.asarray(f_std, dtype=float)
    unique, partner = layout.unique, layout.partner
    has_partner = partner >= 0
    per_unique = counts[unique] + np.where(has_partner, counts[np.maximum(partner, 0)], 0)
    measured_entry = counts > 0
    pair = has_partner & measured_entry[unique] & measured_entry[np.maximum(partner, 0)]
    plus_ids, minus_ids = unique[pair], partner[pair]
    delta = f_mean[plus_ids] - f_mean[minus_ids]
    delta_std = np.hypot(f_std[plus_ids], f_std[minus_ids])
    delta_shell = layout.shell[plus_ids]

    def record(in_shell_unique, in_shell_entry, in_shell_pair, d_max, d_min):
        n_measured = int((per_unique[in_shell_unique] > 0).sum())
        entries = in_shell_entry & measured_entry
        return {
            "d_max": float(d_max), "d_min": float(d_min),
            "completeness": n_measured / max(int(in_shell_unique.sum()), 1),
            "multiplicity": float(per_unique[in_shell_unique].sum() / n_measured) if n_measured else float("nan"),
            "cchalf": posterior_cc(f_mean[entries], f_std[entries]),
            "ccanom": posterior_cc(delta[in_shell_pair], delta_std[in_shell_pair]),
            "n_measured": n_measured,
        }

    unique_shell = layout.shell[unique]
    shells = [record(unique_shell == s, layout.shell == s, delta_shell == s, layout.d_max[s], layout.d_min[s])
              for s in range(layout.n_shells)]
    everything = np.ones(len(counts), dtype=bool)
    overall = record(np.ones(len(unique), dtype=bool), everything, np.ones(len(delta), dtype=bool),
                     layout.d_max[0], layout.d_min[-1])
    return shells, overall
