"""Indexing ambiguity: candidate operators, simulated reindexing, per-image choice.

The end-to-end tests simulate small data sets (3 Å, a 60 x 60 x 90 Å cell),
reindex about half of the images, choose every image's setting online with
:func:`careless_online.ambiguity.resolve.resolve_settings` and merge with the
true corrections (the oracle), so that the figures measure the choice alone.
"""

import gemmi
import numpy as np
import pytest

from careless_online.ambiguity.choice import AMBIGUOUS_MARGIN, choose
from careless_online.ambiguity.operators import candidate_operators, parse_operator
from careless_online.errors import InputError

HEXAGONAL = (60.0, 60.0, 90.0, 90.0, 90.0, 120.0)


def _operators(spec, symbol, cell=HEXAGONAL):
    return candidate_operators(spec, gemmi.UnitCell(*cell), gemmi.SpaceGroup(symbol))


def test_auto_finds_the_twin_law_of_p61():
    ops = _operators("auto", "P 61")
    assert len(ops) == 2
    assert ops.coset(parse_operator("k,h,-l")) == 1
    assert "P 61" in ops.reason and "twin law" in ops.reason


def test_auto_finds_four_settings_in_p3():
    ops = _operators("auto", "P 3")
    assert len(ops) == 4
    assert sorted(ops.coset(parse_operator(t)) for t in ("h,k,l", "k,h,-l", "-h,-k,l", "-k,-h,-l")) == [0, 1, 2, 3]


def test_auto_without_ambiguity_and_none_keep_the_identity_only():
    assert _operators("auto", "P 43 21 2", (79.1, 79.1, 38.0, 90.0, 90.0, 90.0)).triplets == ["h,k,l"]
    assert _operators("none", "P 61").triplets == ["h,k,l"]


def test_explicit_operator_list():
    ops = _operators("k,h,-l", "P 61")
    assert ops.triplets == ["h,k,l", "k,h,-l"]
    assert len(_operators("k,h,-l; -h,-k,l; -k,-h,-l", "P 3")) == 4


@pytest.mark.parametrize("spec, words", [
    ("x,y,z", "not an h,k,l triplet"),
    ("h,k,-l", "determinant"),
    ("k,h,-l; -h-k,k,-l", "equivalent"),
    ("h,k,l", "equivalent"),
    ("l,h,k", "symmetry-equivalent"),
    ("h,k", "cannot be read"),
    (" ; ", "give auto, none"),
])
def test_bad_operators_are_refused(spec, words):
    with pytest.raises(InputError, match=words):
        _operators(spec, "P 61")


def test_reflection_table_permutes_the_index():
    from careless_online.io.reflections import ReflectionIndex

    ops = _operators("auto", "P 61")
    index = ReflectionIndex.from_cell(gemmi.UnitCell(*HEXAGONAL), gemmi.SpaceGroup("P 61"), 4.0, anomalous=True)
    table = ops.reflection_table(index)
    assert np.array_equal(table[:, 0], np.arange(len(index)))
    assert np.array_equal(np.sort(table[:, 1]), np.arange(len(index)))
    assert np.array_equal(table[table[:, 1], 1], np.arange(len(index)))  # a 2-fold: twice is the identity
    assert np.mean(table[:, 1] != table[:, 0]) > 0.9


def test_setting_summary_counts_images_and_confidence():
    from careless_online.ambiguity.resolve import setting_summary

    result = {"setting": np.array([0, 1, 1, 1]), "confidence": np.array([0.9, 0.5, 1.0, 0.99]),
              "ambiguous": np.array([False, True, False, False])}
    rows = setting_summary(result, _operators("auto", "P 61"))
    assert [r["images"] for r in rows] == [1, 3] and rows[1]["fraction"] == 0.75
    assert rows[1]["median_confidence"] == 0.99 and [r["ambiguous"] for r in rows] == [0, 1]


def test_choose_margin_confidence_and_flag():
    scores = np.array([[0.5, 0.1], [0.30, 0.31], [0.0, 0.0]], np.float32)
    counts = np.full((3, 2), 103.0, np.float32)
    result = {k: v.numpy() for k, v in choose(scores, counts).items()}
    assert result["setting"].tolist() == [0, 1, 0]
    assert result["margin"][0] == pytest.approx(10 * (np.arctanh(0.5) - np.arctanh(0.1)), rel=1e-4)
    assert result["confidence"][0] > 0.99 and result["confidence"][1] < 0.6
    assert result["ambiguous"].tolist() == [result["margin"][0] < AMBIGUOUS_MARGIN, True, True]


# ---------------------------------------------------------------- simulated data
def _simulate(symbol, n_images, seed=3):
    from careless_online.simulate import simulate
    from careless_online.simulate.ambiguity import reindex_images

    sim = simulate(n_images=n_images, seed=seed, dmin=3.0, spacegroup=symbol, cell=HEXAGONAL)
    ops = candidate_operators("auto", sim.cell, sim.spacegroup)
    return sim, reindex_images(sim, ops.triplets[1:], 0.5, seed=1), ops


def _resolve(sim, ops, passes):
    from careless_online.ambiguity.resolve import resolve_settings
    from careless_online.io.reflections import ReflectionIndex, map_to_asu

    index = ReflectionIndex.from_cell(sim.cell, sim.spacegroup, 3.0, anomalous=True)
    obs = sim.observations.reset_index()
    ids = index.lookup(*map_to_asu(obs[["H", "K", "L"]].to_numpy(), sim.spacegroup))
    keep = ids >= 0
    result = resolve_settings(obs["BATCH"].to_numpy()[keep], obs["I"].to_numpy()[keep],
                              ops.reflection_table(index)[ids[keep]], len(index), passes=passes)
    assert np.array_equal(result["image"], sim.images["BATCH"].to_numpy())
    return result


@pytest.fixture(scope="module")
def p61():
    return _simulate("P 61", 200)


def test_simulated_reindexing_keeps_the_truth_in_the_image_table(p61):
    sim, flipped, ops = p61
    setting = flipped.images["setting"].to_numpy()
    assert 0.35 < setting.mean() < 0.65 and set(setting) == {0, 1}
    batch = flipped.images["BATCH"].to_numpy()[setting == 1][0]
    before = sim.observations[sim.observations["BATCH"] == batch].get_hkls()
    after = flipped.observations[flipped.observations["BATCH"] == batch].get_hkls()
    assert np.array_equal(after, before @ ops.matrices[1].T)


def test_written_reindexed_data_hide_the_setting_in_the_images_csv(p61, tmp_path):
    import pandas as pd
    import reciprocalspaceship as rs

    from careless_online.simulate import write

    _, flipped, _ = p61
    paths = write(flipped, str(tmp_path / "p61"), formats=("mtz",))
    assert pd.read_csv(paths["images"])["setting"].tolist() == flipped.images["setting"].tolist()
    unmerged = rs.read_mtz(paths["mtz"])
    assert "setting" not in unmerged.columns
    assert np.array_equal(unmerged.get_hkls(), flipped.observations.get_hkls())


def test_half_flipped_p61_is_resolved_to_one_setting(p61):
    from careless_online.ambiguity.resolve import consistent_fraction
    from careless_online.simulate.ambiguity import correlations_to_truth

    sim, flipped, ops = p61
    result = _resolve(flipped, ops, passes=2)
    true_setting = flipped.images["setting"].to_numpy()
    assert consistent_fraction(result["setting"], true_setting, ops, ops.matrices[1:]) >= 0.98
    reference = correlations_to_truth(sim, np.zeros(len(sim.images), int), ops, 3.0)
    resolved = correlations_to_truth(flipped, result["setting"], ops, 3.0)
    assert resolved["cc_f"] >= 0.95 * reference["cc_f"]
    assert resolved["cc_anom"] >= 0.95 * reference["cc_anom"]


def test_reindexing_ops_none_merges_the_flipped_data_worse(p61):
    from careless_online.simulate.ambiguity import correlations_to_truth

    _, flipped, ops = p61
    result = _resolve(flipped, candidate_operators("none", flipped.cell, flipped.spacegroup), passes=1)
    assert not result["setting"].any()
    resolved = correlations_to_truth(flipped, _resolve(flipped, ops, passes=2)["setting"], ops, 3.0)
    unresolved = correlations_to_truth(flipped, result["setting"], ops, 3.0)
    assert unresolved["cc_f"] < resolved["cc_f"] - 0.1
    assert unresolved["cc_anom"] < 0.5 * resolved["cc_anom"]


def test_p3_with_four_settings_is_resolved_to_one_setting():
    from careless_online.ambiguity.resolve import consistent_fraction

    _, flipped, ops = _simulate("P 3", 300)
    result = _resolve(flipped, ops, passes=3)
    assert set(flipped.images["setting"]) == {0, 1, 2, 3}
    assert consistent_fraction(result["setting"], flipped.images["setting"].to_numpy(), ops, ops.matrices[1:]) >= 0.98


def test_merges_warn_when_the_lattice_allows_other_indexing_settings():
    from careless_online.io.reflections import ReflectionIndex
    from careless_online.training.merge import warn_if_ambiguous

    lines = []
    hexagonal = ReflectionIndex.from_cell(gemmi.UnitCell(*HEXAGONAL), gemmi.SpaceGroup("P 61"), 4.0, anomalous=True)
    assert warn_if_ambiguous(hexagonal, lines.append)
    assert len(lines) == 1 and "2 settings" in lines[0] and "twin law" in lines[0]
    tetragonal = ReflectionIndex.from_cell(gemmi.UnitCell(79, 79, 38, 90, 90, 90), gemmi.SpaceGroup("P 43 21 2"),
                                           4.0, anomalous=True)
    assert not warn_if_ambiguous(tetragonal, lines.append)
    assert len(lines) == 1
