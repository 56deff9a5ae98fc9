"""careless's model flags: positional encoding, image scales, structure-factor and scale files, freezing,
the start width of q(F) and reindexing inside the double-Wilson prior."""

import gemmi
import numpy as np
import pytest
import reciprocalspaceship as rs
import tensorflow as tf
import tensorflow_probability as tfp

from careless_online.cli.main import main
from careless_online.distributions import StructureFactorPosterior
from careless_online.distributions.double_wilson import DoubleWilsonCoupling
from careless_online.errors import InputError
from careless_online.io.pipeline import ImageBatches, Standardizer
from careless_online.io.reflections import ReflectionIndex
from careless_online.layers import PositionalEncoding
from careless_online.model.build import new_model
from careless_online.model.parent_settings import parent_table, parse_operators
from careless_online.model.reference import StartingPoint, prepare, truncated_normal_parameters
from careless_online.training.loop import TrainConfig, Trainer

KEYS = ["dHKL", "XDET", "YDET"]


@pytest.fixture(scope="module")
def standardizer(sim_manifest):
    return Standardizer.fit(sim_manifest, KEYS)


def _batch(manifest, standardizer):
    return next(ImageBatches(manifest, standardizer, batch_images=4, test_fraction=0.0).epoch(0))


def _randomize(*layers, seed=0):
    rng = np.random.default_rng(seed)
    for layer in layers:
        for weight in layer.weights:
            weight.assign(rng.normal(scale=0.3, size=weight.shape).astype(np.float32))


def _train(model, manifest, standardizer, steps=3):
    train = ImageBatches(manifest, standardizer, batch_images=4, test_fraction=0.0)
    model.set_reflection_counts(train.reflection_counts())
    Trainer(model, train, None, TrainConfig(steps=steps, eval_every=steps, eval_images=4, progress=False),
            monitor=train).run()


def test_positional_encoding_gives_cos_and_sin_of_the_scaled_columns():
    layer = PositionalEncoding(n_meta=3, encoded=[1, 2], kept=[0], low=[0.0, -1.0], high=[2.0, 1.0], frequencies=3)
    meta = np.array([[5.0, 0.5, 0.25], [6.0, 2.0, -1.0]], np.float32)
    out = layer(tf.constant(meta)).numpy()
    assert out.shape == (2, layer.n_features) == (2, 1 + 2 * 3 * 2)
    p = np.array([[-0.5, 0.25], [1.0, -1.0]])
    angles = (p[:, :, None] * np.pi * 2.0 ** np.arange(3)).reshape(2, -1)
    np.testing.assert_allclose(out, np.concatenate([meta[:, :1], np.cos(angles), np.sin(angles)], 1), atol=1e-5)


def test_positional_encoding_widens_the_network_input_and_survives_saving(sim_manifest, standardizer, tmp_path):
    plain = new_model(sim_manifest, standardizer, d_model=8)
    encoded = new_model(sim_manifest, standardizer, d_model=8, positional_encoding_keys=["XDET", "YDET"],
                        positional_encoding_frequencies=3, plain_metadata_keys=["dHKL"])
    assert plain.encoder.resnet.d_in == 3 + 3 + 1  # intensity features, metadata, s^2
    assert encoded.encoder.resnet.d_in == 3 + 1 + 2 * 2 * 3 + 1  # XDET, YDET only encoded
    assert encoded.scale_head.n_meta == 1 + 12 + 1
    batch = _batch(sim_manifest, standardizer)
    _randomize(encoded.encoder, encoded.scale_head)
    features = encoded.positional(batch["meta"]).numpy()
    assert np.all(np.abs(features[:, 1:]) <= 1.0 + 1e-6)  # the data's range maps into [-1, 1]
    encoded.save(tmp_path / "m.keras")
    from careless_online.model.build import load_model

    loaded = load_model(str(tmp_path / "m.keras"))
    np.testing.assert_allclose(loaded.scale_parameters(batch)[0].numpy(), encoded.scale_parameters(batch)[0].numpy(),
                               rtol=1e-5)


def test_without_image_scales_an_image_scale_ignores_its_intensities(sim_manifest, standardizer):
    batch = _batch(sim_manifest, standardizer)
    brighter = dict(batch, I=batch["I"] * 10.0)
    shifts = {}
    for image_scales in (True, False):
        model = new_model(sim_manifest, standardizer, d_model=8, image_scales=image_scales)
        _randomize(model.encoder, model.scale_head)
        loc = [model.scale_parameters(b)[0].numpy() for b in (batch, brighter)]
        shifts[image_scales] = np.abs(loc[1] - loc[0]).max()
    assert shifts[True] > 1e-3 and shifts[False] == 0.0


@pytest.mark.parametrize("loc, scale", [(3.0, 0.5), (0.2, 1.0), (-2.0, 1.5), (40.0, 2.0)])
def test_truncated_normal_parameters_invert_the_moments(loc, scale):
    q = tfp.distributions.TruncatedNormal(np.float64(loc), np.float64(scale), 0.0, 1e6)
    got = truncated_normal_parameters(q.mean().numpy(), q.stddev().numpy())
    np.testing.assert_allclose(got, (loc, scale), rtol=1e-4, atol=1e-6)


def _reference_file(index, path, seed=0):
    """A merged MTZ with F and SigF for 80 % of the index's reflections."""
    rng = np.random.default_rng(seed)
    keep = rng.uniform(size=len(index)) < 0.8
    hkl = index.hkl[keep]
    f = rng.gamma(4.0, 0.3, size=len(hkl))
    ds = rs.DataSet({"H": hkl[:, 0], "K": hkl[:, 1], "L": hkl[:, 2], "F": f, "SigF": f * rng.uniform(0.05, 0.6, len(f))},
                    cell=index.cell, spacegroup=index.spacegroup, merged=True)
    ds = ds.astype({"H": "H", "K": "H", "L": "H", "F": "F", "SigF": "Q"}).set_index(["H", "K", "L"])
    ds.write_mtz(str(path))
    return keep, ds


def test_frozen_structure_factors_keep_the_files_values_through_training(sim_manifest, standardizer, tmp_path):
    keep, ds = _reference_file(sim_manifest.index, tmp_path / "ref.mtz")
    model = new_model(sim_manifest, standardizer, d_model=8)
    prepare(model, sim_manifest.index, StartingPoint(str(tmp_path / "ref.mtz"), freeze_structure_factors=True),
            log=lambda *_: None)
    q = model.structure_factors
    assert not any(v is w for v in model.trainable_variables for w in q.weights)
    start = q.loc_raw.numpy().copy()
    _train(model, sim_manifest, standardizer)
    np.testing.assert_array_equal(q.loc_raw.numpy(), start)
    np.testing.assert_allclose(q.mean().numpy()[keep], ds["F"].to_numpy(), rtol=2e-4)
    np.testing.assert_allclose(q.stddev().numpy()[keep], ds["SigF"].to_numpy(), rtol=2e-3)


def test_a_structure_factor_file_of_another_space_group_is_refused(sim_manifest, standardizer, tmp_path):
    index = sim_manifest.index
    other = ReflectionIndex.from_cell(index.cell, gemmi.SpaceGroup("P 4"), 4.0)
    _reference_file(other, tmp_path / "p4.mtz")
    model = new_model(sim_manifest, standardizer, d_model=8)
    with pytest.raises(InputError, match="space group"):
        prepare(model, index, StartingPoint(str(tmp_path / "p4.mtz")))


def test_structure_factor_init_scale_sets_the_start_width(sim_manifest, standardizer):
    wide = new_model(sim_manifest, standardizer, d_model=8, f_start="prior")  # the prior's width
    narrow = new_model(sim_manifest, standardizer, d_model=8, structure_factor_init_scale=0.1)
    ratio = narrow.structure_factors.distribution().scale.numpy() / wide.structure_factors.distribution().scale.numpy()
    np.testing.assert_allclose(ratio, 0.1, rtol=1e-3)  # the width of q(F) in prior standard deviations


def test_a_scale_file_starts_the_scale_networks_and_frozen_scales_stay(sim_manifest, standardizer, tmp_path):
    source = new_model(sim_manifest, standardizer, d_model=8)
    _randomize(source.encoder, source.scale_head, seed=4)
    source.save(tmp_path / "scales.keras")
    model = new_model(sim_manifest, standardizer, d_model=8)
    prepare(model, sim_manifest.index, StartingPoint(scale_file=str(tmp_path / "scales.keras"), freeze_scales=True))
    saved = [w.numpy() for w in source.encoder.weights + source.scale_head.weights]
    _train(model, sim_manifest, standardizer)
    for got, want in zip([w.numpy() for w in model.encoder.weights + model.scale_head.weights], saved):
        np.testing.assert_array_equal(got, want)
    other = new_model(sim_manifest, standardizer, d_model=16)
    with pytest.raises(InputError, match="does not fit"):
        prepare(other, sim_manifest.index, StartingPoint(scale_file=str(tmp_path / "scales.keras")))


def test_double_wilson_reindexing_ops_couple_a_child_to_its_parents_reindexed_reflection():
    index = ReflectionIndex.from_cell(gemmi.UnitCell(50, 50, 70, 90, 90, 90), gemmi.SpaceGroup("P 4"), 6.0)
    ops = parse_operators("x,y,z;y,x,-z", 2)
    assert ops == ["h,k,l", "k,h,-l"]
    table, outside = parent_table(index, ops)
    n = len(index)
    assert outside == 0 and np.array_equal(table[0], np.arange(n))
    assert np.array_equal(np.sort(table[1]), np.arange(n)) and not np.array_equal(table[1], np.arange(n))
    q = StructureFactorPosterior(2 * n)
    parent_f = np.random.default_rng(0).gamma(3.0, 0.4, n)
    q.set_initial(np.concatenate([parent_f, parent_f[table[1]]]), np.full(2 * n, 1e-3))
    ids = tf.range(n, 2 * n)
    F = q.sample(ids, 1, seed=(1, 2))
    kl = {}
    for reindexed in (False, True):
        coupling = DoubleWilsonCoupling(n, [None, 0], [0.0, 0.99], reindexed=reindexed)
        if reindexed:
            coupling.set_parent_table(table)
        kl[reindexed] = float(tf.reduce_mean(coupling.kl(q, ids, F, tf.ones([n]), seed=(3, 4))))
    assert kl[True] < kl[False] - 1.0


@pytest.mark.parametrize("argv, message", [
    (["--freeze-scales"], "--scale-file"),
    (["--freeze-structure-factors"], "--structure-factor-file"),
    (["--double-wilson-reindexing-ops", "x,y,z"], "needs --double-wilson-parents"),
    (["--separate-files", "--double-wilson-parents", "None,0", "--double-wilson-r", "0,0.9",
      "--double-wilson-reindexing-ops", "x,y,z"], "1 operator(s) for 2 datasets"),
    (["--positional-encoding-keys", "XDET,XDET"], "distinct"),
    (["--scale-file", "missing.keras"], "no such file"),
])
def test_model_flags_are_checked_before_any_data_is_read(sim_files, tmp_path, capsys, argv, message):
    with pytest.raises(SystemExit) as stop:
        main(["mono", *argv, "--spacegroups", "P 43 21 2", "dHKL", sim_files["mtz"], sim_files["stream"],
              str(tmp_path / "o")])
    assert stop.value.code == 2 and message in capsys.readouterr().err
    assert not (tmp_path / "o_0.mtz").exists()


def test_mono_with_a_frozen_structure_factor_file_writes_the_files_amplitudes(sim_files, sim_manifest, tmp_path):
    keep, ds = _reference_file(sim_manifest.index, tmp_path / "ref.mtz", seed=2)
    assert main(["mono", "--disable-progress-bar", "--iterations", "4", "--no-predictions", "--spacegroups",
                 "P 43 21 2", "--structure-factor-file", str(tmp_path / "ref.mtz"), "--freeze-structure-factors",
                 "--positional-encoding-keys", "XDET,YDET", "-L", "2", "--disable-image-scales", "dHKL",
                 sim_files["stream"], str(tmp_path / "out" / "frozen")]) == 0
    merged = rs.read_mtz(str(tmp_path / "out" / "frozen_0.mtz"))
    joined = merged[["F"]].join(ds[["F"]], rsuffix="_file", how="inner")
    assert len(joined) > 0.5 * len(merged)
    np.testing.assert_allclose(joined["F"].to_numpy(), joined["F_file"].to_numpy(), rtol=2e-4)
