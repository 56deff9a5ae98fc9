"""Indexing ambiguity: candidate operators, simulated reindexing, the per-image choice of setting.

- unit level: operators, the reflection table, margins, the model's choice layer (P 3 with four settings
  through ``MergingModel.in_reference_setting``), KL counts;
- the offline choice (:func:`careless_online.ambiguity.resolve.resolve_settings`, used by the benchmark's
  ``--oracle`` rows) on 200 P 6_1 images merged with the true corrections;
- end to end from the command line (``careless_online mono``) on 64 P 6_1 images (4.5 Å, 150 steps), half
  reindexed: default flags, ``--reindexing-ops none``, an explicit list, ``--model-in``, the stats command.
"""

import gemmi
import numpy as np
import pytest

from careless_online.ambiguity.choice import AMBIGUOUS_MARGIN, choose
from careless_online.ambiguity.operators import candidate_operators, parse_operator
from careless_online.errors import InputError
from careless_online.io.layout import to_internal

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


def test_merges_name_the_settings_or_warn_when_they_take_images_as_indexed():
    from careless_online.io.reflections import ReflectionIndex
    from careless_online.training.merge import log_reindexing_operators

    lines = []
    hexagonal = ReflectionIndex.from_cell(gemmi.UnitCell(*HEXAGONAL), gemmi.SpaceGroup("P 61"), 4.0, anomalous=True)
    assert len(log_reindexing_operators(hexagonal, "auto", lines.append)) == 2
    assert len(lines) == 1 and "the model chooses" in lines[0] and "twin law" in lines[0]
    assert len(log_reindexing_operators(hexagonal, "none", lines.append)) == 1
    assert len(lines) == 2 and lines[1].startswith("WARNING the lattice allows 2 indexing settings")
    tetragonal = ReflectionIndex.from_cell(gemmi.UnitCell(79, 79, 38, 90, 90, 90), gemmi.SpaceGroup("P 43 21 2"),
                                           4.0, anomalous=True)
    assert len(log_reindexing_operators(tetragonal, "auto", lines.append)) == 1
    assert len(lines) == 2


# ---------------------------------------------------------------- the choice inside the model
def _model_with_choice(index, ops):
    from careless_online.model.merging import MergingModel

    model = MergingModel(len(index), 0, reindexing_ops=ops.triplets)
    model.setting_choice.set_table(ops.reflection_table(index))
    return model


def _image_batches(sim, index, batch_images, rng):
    """Batches of whole images (the pipeline's layout) of a simulation, in a random order."""
    from careless_online.io.reflections import map_to_asu

    obs = sim.observations.reset_index()
    ids = index.lookup(*map_to_asu(obs[["H", "K", "L"]].to_numpy(), sim.spacegroup))
    obs = obs[ids >= 0].assign(refl_id=ids[ids >= 0])
    images = sim.images["BATCH"].to_numpy()
    for chosen in np.array_split(rng.permutation(len(images)), len(images) // batch_images):
        part = obs[obs["BATCH"].isin(images[chosen])].sort_values("BATCH")
        image = np.unique(part["BATCH"].to_numpy(), return_inverse=True)[1].astype(np.int32)
        yield images[chosen][np.argsort(images[chosen])], {
            "refl_id": part["refl_id"].to_numpy(np.int32), "image": image, "n_images": np.int32(len(chosen)),
            "I": part["I"].to_numpy(np.float32), "SigI": part["SIGI"].to_numpy(np.float32)}


def test_p3_four_settings_are_resolved_by_the_models_choice():
    """The model's own code path (SettingChoice through MergingModel.in_reference_setting) on four settings."""
    import tensorflow as tf

    from careless_online.ambiguity.resolve import consistent_fraction
    from careless_online.io.reflections import ReflectionIndex

    _, flipped, ops = _simulate("P 3", 240)
    index = ReflectionIndex.from_cell(flipped.cell, flipped.spacegroup, 3.0, anomalous=True)
    model = _model_with_choice(index, ops)
    signature = [{"refl_id": tf.TensorSpec([None], tf.int32), "image": tf.TensorSpec([None], tf.int32),
                  "n_images": tf.TensorSpec([], tf.int32), "I": tf.TensorSpec([None], tf.float32),
                  "SigI": tf.TensorSpec([None], tf.float32)}]
    train = tf.function(lambda batch: model.in_reference_setting(batch, update=True)[1]["setting"],
                        input_signature=signature)
    look = tf.function(lambda batch: model.in_reference_setting(batch)[1]["setting"], input_signature=signature)
    rng = np.random.default_rng(0)
    for _ in range(3):
        for _, batch in _image_batches(flipped, index, 8, rng):
            train(batch)
    chosen = {}
    for batches, batch in _image_batches(flipped, index, 8, rng):
        chosen.update(zip(batches, look(batch).numpy()))
    setting = np.array([chosen[b] for b in flipped.images["BATCH"]])
    assert len(set(setting)) == 4
    assert consistent_fraction(setting, flipped.images["setting"].to_numpy(), ops, ops.matrices[1:]) >= 0.98


def test_the_choice_moves_refl_ids_and_leaves_a_model_without_operators_alone():
    from careless_online.io.reflections import ReflectionIndex
    from careless_online.model.merging import MergingModel

    ops = _operators("auto", "P 61")
    index = ReflectionIndex.from_cell(gemmi.UnitCell(*HEXAGONAL), gemmi.SpaceGroup("P 61"), 4.0, anomalous=True)
    model = _model_with_choice(index, ops)
    table = ops.reflection_table(index)
    batch = {"refl_id": np.arange(40, dtype=np.int32), "image": np.repeat(np.arange(2, dtype=np.int32), 20),
             "n_images": np.int32(2), "I": np.linspace(1, 40, 40).astype(np.float32)}
    moved, choice = model.in_reference_setting(batch)
    setting = choice["setting"].numpy()[batch["image"]]
    assert np.array_equal(moved["refl_id"].numpy(), table[batch["refl_id"], setting])
    plain = MergingModel(len(index), 0, reindexing_ops=["h,k,l"])
    assert plain.setting_choice is None and plain.in_reference_setting(batch) == (batch, None)


def test_the_first_training_image_defines_the_reference_and_copies_share_it():
    from careless_online.io.reflections import ReflectionIndex

    ops = _operators("auto", "P 61")
    index = ReflectionIndex.from_cell(gemmi.UnitCell(*HEXAGONAL), gemmi.SpaceGroup("P 61"), 4.0, anomalous=True)
    model, other = _model_with_choice(index, ops), _model_with_choice(index, ops)
    batch = {"refl_id": np.arange(60, dtype=np.int32), "image": np.repeat(np.arange(3, dtype=np.int32), 20),
             "n_images": np.int32(3), "I": np.linspace(1, 60, 60).astype(np.float32)}
    model.in_reference_setting(batch)  # evaluation: no update
    assert not model.setting_choice.reference_weights.numpy().any()
    model.in_reference_setting(batch, update=True)
    weights = model.setting_choice.reference_weights.numpy()
    assert np.array_equal(np.flatnonzero(weights), np.arange(20))  # image 0 only
    other.setting_choice.start_from(model.setting_choice)
    assert np.array_equal(other.setting_choice.reference_sums.numpy(), model.setting_choice.reference_sums.numpy())


def test_kl_counts_are_averaged_over_the_related_reflections():
    from careless_online.io.reflections import ReflectionIndex

    ops = _operators("auto", "P 61")
    index = ReflectionIndex.from_cell(gemmi.UnitCell(*HEXAGONAL), gemmi.SpaceGroup("P 61"), 4.0, anomalous=True)
    model = _model_with_choice(index, ops)
    table = ops.reflection_table(index)
    row = np.flatnonzero(table[:, 1] != table[:, 0])[0]
    counts = np.zeros(len(index))
    counts[table[row, 1]] = 4  # observed only in the other setting
    model.set_reflection_counts(counts)
    assert model.kl_inverse_counts.numpy()[row] == pytest.approx(0.5)


# ---------------------------------------------------------------- mono from the command line
SIM_E2E = dict(n_images=64, seed=3, dmin=4.5, spacegroup="P 61", cell=HEXAGONAL, mosaicity=0.27,
               energy_jitter=0.002, n_anomalous=10, mean_counts=300)
STEPS = ["--iterations", "150", "--validation-frequency", "150"]


def _mono(*args):
    import contextlib
    import io

    from careless_online.cli.main import main

    log = io.StringIO()
    with contextlib.redirect_stdout(log):
        try:
            status = main(["mono", "--disable-progress-bar", "--anomalous", "--dmin", str(SIM_E2E["dmin"]), *STEPS,
                           *args])
        except SystemExit as stop:  # a user error: one line on stderr
            status = stop.code
    return status, log.getvalue()


@pytest.fixture(scope="module")
def merges(tmp_path_factory):
    """A 64-image P 6_1 set merged as simulated ("k,h,-l" offered), half reindexed (default flags), and with none."""
    from careless_online.simulate import simulate, write
    from careless_online.simulate.ambiguity import reindex_images

    folder = tmp_path_factory.mktemp("ambiguity")
    sim = simulate(**SIM_E2E)
    flipped = reindex_images(sim, ["k,h,-l"], 0.5, seed=1)
    files = {"noflip": write(sim, str(folder / "noflip"), formats=("mtz",)),
             "flip": write(flipped, str(folder / "flip"), formats=("mtz",))}
    runs = {"noflip": ("noflip", "--reindexing-ops", "k,h,-l"), "auto": ("flip",),
            "none": ("flip", "--reindexing-ops", "none", "--no-predictions")}
    logs = {}
    for name, (data, *flags) in runs.items():
        status, logs[name] = _mono(*flags, "dHKL", files[data]["mtz"], str(folder / name))
        assert status == 0
    return {"folder": folder, "sim": sim, "flipped": flipped, "logs": logs, "files": files,
            "ops": candidate_operators("auto", sim.cell, sim.spacegroup)}


def _figures(merges, name):
    import reciprocalspaceship as rs

    from careless_online.simulate.ambiguity import merged_correlations_to_truth

    merged = rs.read_mtz(str(merges["folder"] / f"{name}_0.mtz"))
    return merged_correlations_to_truth(merged, merges["sim"].truth, merges["ops"])


def _chosen(merges, name):
    import reciprocalspaceship as rs

    predictions = rs.read_mtz(str(merges["folder"] / f"{name}_predictions_0.mtz"))
    return predictions.groupby("image_id")["setting"].first().sort_index().to_numpy()


def test_default_flags_put_the_half_flipped_images_in_one_setting(merges):
    from careless_online.ambiguity.resolve import consistent_fraction

    truth = merges["flipped"].images.sort_values("BATCH")["setting"].to_numpy()
    assert 0.35 < truth.mean() < 0.65
    ops = merges["ops"]
    assert consistent_fraction(_chosen(merges, "auto"), truth, ops, ops.matrices[1:]) >= 0.98
    assert "indexing settings h,k,l; -h-k,k,-l: the model chooses each image's" in merges["logs"]["auto"]


def test_half_flipped_merge_matches_the_no_flip_merge(merges):
    flipped, reference = _figures(merges, "auto"), _figures(merges, "noflip")
    assert flipped["cc_f"] >= 0.95 * reference["cc_f"]
    assert flipped["cc_anom"] >= 0.95 * reference["cc_anom"]
    assert reference["cc_anom"] > 0.1  # there is an anomalous signal to lose


def test_merged_counts_are_those_of_the_reference_setting(merges):
    """N of the half-flipped merge is the no-flip merge's, up to the global setting (as indexed it is not)."""
    import reciprocalspaceship as rs

    counts = {name: np.sort(to_internal(rs.read_mtz(str(merges["folder"] / f"{name}_0.mtz")))["N"].to_numpy(int))
              for name in ("noflip", "auto", "none")}
    assert np.array_equal(counts["auto"], counts["noflip"])
    assert not np.array_equal(counts["none"], counts["noflip"])


def test_reindexing_ops_none_merges_the_flipped_data_worse(merges):
    resolved, unresolved = _figures(merges, "auto"), _figures(merges, "none")
    assert unresolved["cc_f"] < resolved["cc_f"] - 0.1
    assert unresolved["cc_anom"] < 0.7 * resolved["cc_anom"]
    assert "WARNING the lattice allows 2 indexing settings" in merges["logs"]["none"]


def test_an_explicit_operator_list_is_what_the_model_chooses_among(merges):
    from careless_online.model.build import load_model

    model = load_model(str(merges["folder"] / "noflip_0.keras"))
    assert model.reindexing_ops == ["h,k,l", "k,h,-l"]
    assert model.setting_choice.reference_weights.numpy().any()  # the reference is saved with the model
    assert set(_chosen(merges, "noflip")) == {0}  # data indexed alike: one setting, written as indexed
    assert "indexing settings h,k,l; k,h,-l" in merges["logs"]["noflip"]
    assert _figures(merges, "noflip")["setting"] == 0  # the merge is in the simulated (indexer's) setting


def test_model_in_refuses_other_reindexing_operators(merges, capsys):
    folder = merges["folder"]
    status, _ = _mono("--reindexing-ops", "none", "--model-in", str(folder / "auto_0.keras"), "dHKL",
                      merges["files"]["flip"]["mtz"], str(folder / "again"))
    error = capsys.readouterr().err.strip()
    assert status == 2 and len(error.splitlines()) == 1
    assert "chooses among the indexing settings h,k,l;-h-k,k,-l" in error and "--reindexing-ops none" in error


def test_reindexing_stats_report_the_settings_and_their_confidence(merges, tmp_path, capsys):
    import pandas as pd

    from careless_online.cli.reindexing import main

    main([str(merges["folder"] / "auto_predictions_0.mtz"), "-o", str(tmp_path / "s.csv"), "-i",
          str(tmp_path / "s.png")])
    table = pd.read_csv(tmp_path / "s.csv", index_col="setting")
    assert table.loc["0", "operator"] == "h,k,l" and table.loc["1", "operator"] == "-h-k,k,-l"
    assert table.loc["overall", "images"] == SIM_E2E["n_images"]
    assert table.loc[["0", "1"], "fraction"].sum() == pytest.approx(1.0)
    assert 0.3 < table.loc["0", "fraction"] < 0.7
    assert table.loc["overall", "median_confidence"] > 0.99
    assert (tmp_path / "s.png").stat().st_size > 0
    with pytest.raises(SystemExit) as stop:
        main([str(merges["folder"] / "auto_0.mtz")])
    assert stop.value.code == 2 and "missing column(s) image_id" in capsys.readouterr().err


def test_predictions_are_in_the_reference_setting(merges):
    """Each written index (ASU and M/ISYM) is the observed one times its image's chosen operator; predictions alike."""
    import reciprocalspaceship as rs

    predictions = rs.read_mtz(str(merges["folder"] / "auto_predictions_0.mtz"))
    observed = rs.read_mtz(merges["files"]["flip"]["mtz"])
    assert len(predictions) == len(observed)
    matrices = np.stack(merges["ops"].matrices)[predictions["setting"].to_numpy(int)]
    moved = np.einsum("nij,nj->ni", matrices, observed.get_hkls().astype(np.int64))
    assert np.array_equal(moved, predictions.get_hkls())  # rs reads an unmerged file's observed indices
    cc = predictions.groupby("setting")[["Iobs", "Ipred"]].apply(lambda g: np.corrcoef(g["Iobs"], g["Ipred"])[0, 1])
    assert cc.min() > 0.5 and cc.max() - cc.min() < 0.1


@pytest.mark.parametrize("value, words", [("k,h", "cannot be read"), ("l,h,k", "symmetry-equivalent")])
def test_bad_reindexing_ops_are_one_line_errors(value, words, tmp_path, capsys):
    data = tmp_path / "x.mtz"
    data.write_bytes(b"not read: the flag is checked first")
    status, _ = _mono("--reindexing-ops", value, "--spacegroups", "P 61", "dHKL", str(data), str(tmp_path / "out"))
    error = capsys.readouterr().err.strip()
    assert status == 2 and len(error.splitlines()) == 1 and words in error
    assert not (tmp_path / "out_0.mtz").exists()
