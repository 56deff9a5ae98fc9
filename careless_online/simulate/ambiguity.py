"""Simulated indexing ambiguity: some images indexed in another setting.

An image indexed in the setting of operator ``M`` reports every reflection
``h`` as ``h_obs = M h`` and its orientation matrix as ``A M^{-1}`` (so that
``q = A h`` is unchanged).  The operator each image got is a column of the
image table (``setting``: its position in the operator list, 0 = as
simulated), written to ``<base>_images.csv`` with the other truths; the
reflection files carry no trace of it.
"""

from dataclasses import replace

import numpy as np

from careless_online.ambiguity.operators import parse_operator
from careless_online.io.layout import to_internal


def reindex_images(sim, operators, fraction, seed=0):
    """Reindex a random ``fraction`` of the images of a simulation.

    Parameters
    ----------
    sim : careless_online.simulate.SimulatedData
    operators : sequence of str
        hkl triplets of the alternative settings (``"k,h,-l"``); each
        reindexed image gets one of them at random.
    fraction : float
        Expected fraction of images reindexed, in [0, 1].
    seed : int

    Returns
    -------
    SimulatedData
        A copy with reindexed observations and orientation matrices, and the
        ``setting`` column (0 = not reindexed, ``j`` = ``operators[j - 1]``)
        in its image table.
    """
    if not 0.0 <= float(fraction) <= 1.0:
        raise ValueError(f"fraction must be in [0, 1], got {fraction}")
    matrices = [parse_operator(t) for t in operators]
    if not matrices:
        raise ValueError("give at least one reindexing operator")
    rng = np.random.default_rng([int(seed), 0xA3B1])
    n_images = len(sim.images)
    flipped = rng.random(n_images) < float(fraction)
    setting = np.where(flipped, 1 + rng.integers(0, len(matrices), n_images), 0)
    images = sim.images.copy()
    images["setting"] = setting
    _reindex_orientations(images, matrices)
    observations = _reindex_observations(sim.observations, images, matrices)
    return replace(sim, observations=observations, images=images)


def _reindex_observations(observations, images, matrices):
    """Observed indices ``M h`` for the observations of reindexed images."""
    table = observations.reset_index()
    setting_of_batch = dict(zip(images["BATCH"].to_numpy(), images["setting"].to_numpy()))
    setting = table["BATCH"].map(setting_of_batch).to_numpy()
    hkl = table[["H", "K", "L"]].to_numpy(np.int64)
    for j, matrix in enumerate(matrices, start=1):
        rows = setting == j
        hkl[rows] = hkl[rows] @ matrix.T
    table[["H", "K", "L"]] = hkl.astype(np.int32)
    return table.set_index(["H", "K", "L"])


def _reindex_orientations(images, matrices):
    """Orientation matrices ``A M^{-1}`` of the reindexed images (in place)."""
    names = [[f"A{r}{c}" for c in range(3)] for r in range(3)]
    if not all(name in images for row in names for name in row):
        return
    flat = [name for row in names for name in row]
    for j, matrix in enumerate(matrices, start=1):
        rows = images["setting"].to_numpy() == j
        a = images.loc[rows, flat].to_numpy(float).reshape(-1, 3, 3)
        images.loc[rows, flat] = (a @ np.linalg.inv(matrix)).reshape(-1, 9)


def oracle_in_reference_setting(sim, image_setting, operators, dmin):
    """Oracle merge (true corrections) after moving every image to its chosen setting.

    Parameters
    ----------
    sim : SimulatedData
        With reindexed images (:func:`reindex_images`).
    image_setting : numpy.ndarray of int
        Chosen setting of every image, in the order of ``sim.images``.
    operators : careless_online.ambiguity.operators.ReindexingOperators
    dmin : float

    Returns
    -------
    rs.DataSet
        See :func:`careless_online.simulate.oracle.oracle_merge`.
    """
    from careless_online.ambiguity.resolve import to_reference_setting
    from careless_online.simulate.oracle import oracle_merge

    table = sim.observations.reset_index()
    setting_of_batch = dict(zip(sim.images["BATCH"].to_numpy(), np.asarray(image_setting)))
    setting = table["BATCH"].map(setting_of_batch).to_numpy()
    table[["H", "K", "L"]] = to_reference_setting(table[["H", "K", "L"]].to_numpy(), setting, operators)
    return oracle_merge(table.set_index(["H", "K", "L"]), dmin=dmin)


def correlations_to_truth(sim, image_setting, operators, dmin):
    """CC(F) and CC(anomalous) to the truth of the oracle merge in the chosen settings.

    A consistent set of choices may still be in a setting other than the
    simulated one (the reference is the first image's): every operator is
    composed with all choices in turn and the best CC(F) is kept.

    Returns
    -------
    dict
        ``cc_f``, ``cc_anom`` and ``setting`` (the global operator's position).
    """
    best = None
    for j, matrix in enumerate(operators.matrices):
        moved = [operators.coset(matrix @ operators.matrices[c]) for c in np.asarray(image_setting)]
        merged = oracle_in_reference_setting(sim, moved, operators, dmin)
        joined = merged.join(sim.truth[["F", "DANO"]].rename(columns={"F": "FT", "DANO": "DT"}), how="inner")
        figures = {"cc_f": _cc(joined["F"], joined["FT"]),
                   "cc_anom": _cc(joined["F(+)"] - joined["F(-)"], joined["DT"], skip_zero=True), "setting": j}
        if best is None or figures["cc_f"] > best["cc_f"]:
            best = figures
    return best


def _cc(x, y, skip_zero=False):
    """Pearson correlation of the finite pairs (and, with ``skip_zero``, those with ``y != 0``)."""
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    ok = np.isfinite(x) & np.isfinite(y) & ((y != 0) if skip_zero else True)
    return float(np.corrcoef(x[ok], y[ok])[0, 1])


def merged_in_setting(merged, matrix):
    """Amplitudes of a merged anomalous table with every Friedel member relabelled ``h -> M h``.

    Parameters
    ----------
    merged : rs.DataSet
        A merged table with ``F(+)`` and ``F(-)`` (e.g. ``<base>_0.mtz``).
    matrix : numpy.ndarray of int, shape (3, 3)

    Returns
    -------
    pandas.DataFrame
        Indexed by the ASU ``H, K, L`` of the new labels: ``F(+)``, ``F(-)``
        and ``F`` (the mean of the mates present).
    """
    import pandas as pd
    import reciprocalspaceship as rs

    table = merged.reset_index()
    hkl = table[["H", "K", "L"]].to_numpy(np.int64)
    parts = []
    for sign, column in ((1, "F(+)"), (-1, "F(-)")):
        asu, isym = rs.utils.hkl_to_asu((sign * hkl) @ np.asarray(matrix, dtype=np.int64).T, merged.spacegroup)
        parts.append(pd.DataFrame({"H": asu[:, 0], "K": asu[:, 1], "L": asu[:, 2], "plus": isym % 2 == 1,
                                   "F": table[column].to_numpy(float)}))
    stacked = pd.concat(parts).dropna(subset=["F"]).drop_duplicates(["H", "K", "L", "plus"])
    keys = ["H", "K", "L"]
    out = pd.concat([stacked[stacked["plus"]].set_index(keys)["F"].rename("F(+)"),
                     stacked[~stacked["plus"]].set_index(keys)["F"].rename("F(-)")], axis=1)
    out["F"] = out[["F(+)", "F(-)"]].mean(axis=1)
    return out


def merged_correlations_to_truth(merged, truth, operators):
    """CC(F) and CC(anomalous) of a merge to the truth, in the global setting that fits best.

    A merge is written in its reference setting (the first image's), which
    may be any of the settings relative to the simulated truth: the merge is
    relabelled by every operator in turn (:func:`merged_in_setting`) and the
    best CC(F) kept.  Identical for every merge, so merges with and without
    a setting choice compare alike.

    Parameters
    ----------
    merged : rs.DataSet
        Merged anomalous table (internal names, or as written in either
        layout of :mod:`careless_online.io.layout`).
    truth : pandas.DataFrame
        The simulator's truth (``F``, ``DANO``), indexed by ASU ``H, K, L``.
    operators : careless_online.ambiguity.operators.ReindexingOperators

    Returns
    -------
    dict
        ``cc_f``, ``cc_anom``, ``setting`` (the operator's position) and ``n``.
    """
    best = None
    merged = to_internal(merged)  # a written file of either column layout
    reference = truth[["F", "DANO"]].rename(columns={"F": "FT", "DANO": "DT"})
    for j, matrix in enumerate(operators.matrices):
        joined = merged_in_setting(merged, matrix).join(reference, how="inner")
        figures = {"cc_f": _cc(joined["F"], joined["FT"]),
                   "cc_anom": _cc(joined["F(+)"] - joined["F(-)"], joined["DT"], skip_zero=True),
                   "setting": j, "n": len(joined)}
        if best is None or figures["cc_f"] > best["cc_f"]:
            best = figures
    return best
