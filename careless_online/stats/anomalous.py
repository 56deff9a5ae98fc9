"""Friedel mates: stacking them as separate reflections, and their differences."""

import numpy as np

from careless_online.stats.inputs import friedel_columns


def stack_friedel(ds, names, keep=()):
    """Put the Friedel mates of two-column anomalous data on separate rows.

    Wraps :meth:`reciprocalspaceship.DataSet.stack_anomalous`: the Friedel-minus
    member of each acentric reflection gets the index ``-h, -k, -l``; centric
    reflections appear once.  Missing mates (NaN) are dropped.

    Parameters
    ----------
    ds : reciprocalspaceship.DataSet
        Merged reflections with columns ``name(+)`` and ``name(-)`` for each
        of ``names``.
    names : sequence of str
        Column names without suffix, e.g. ``["F", "SIGF"]``.
    keep : sequence of str, optional
        Other columns to carry to both members (e.g. ``repeat``, ``half``).

    Returns
    -------
    reciprocalspaceship.DataSet
        Columns ``keep`` and ``names``, rows for the observed Friedel mates.
    """
    plus = [friedel_columns(n)[0] for n in names]
    minus = [friedel_columns(n)[1] for n in names]
    subset = ds[list(keep) + plus + minus]
    stacked = subset.stack_anomalous(plus_labels=plus, minus_labels=minus)
    return stacked.dropna(subset=list(names))


def anomalous_differences(ds, name="F", keep=()):
    """Anomalous differences ``name(+) - name(-)`` of acentric reflections.

    Parameters
    ----------
    ds : reciprocalspaceship.DataSet
        Merged reflections with columns ``name(+)`` and ``name(-)``.
    name : str, optional
        Column name without suffix (``"F"`` or ``"I"``).
    keep : sequence of str, optional
        Other columns to carry along.

    Returns
    -------
    reciprocalspaceship.DataSet
        Acentric reflections with both mates measured; column ``D<name>``
        (e.g. ``DF``) holding the difference, plus ``keep``.
    """
    plus, minus = friedel_columns(name)
    acentric = ds.loc[~ds.label_centrics()["CENTRIC"].to_numpy()]
    out = acentric[list(keep)].copy()
    out["D" + name] = (acentric[plus].to_numpy(dtype=float) - acentric[minus].to_numpy(dtype=float))
    out["D" + name] = out["D" + name].astype("AnomalousDifference")
    return out[np.isfinite(out["D" + name].to_numpy(dtype=float))]
