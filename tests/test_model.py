"""The merging model, its training step, saving, and what the scale network learns."""

import numpy as np
import pandas as pd
import pytest
import reciprocalspaceship as rs
import scipy.stats
import tensorflow as tf

from careless_online.cli.main import main
from careless_online.errors import InputError
from careless_online.io.cache import build_cache
from careless_online.io.layout import to_internal
from careless_online.io.pipeline import ImageBatches, Standardizer
from careless_online.io.reflections import map_to_asu
from careless_online.io.table import TableOptions
from careless_online.model.build import load_model, new_model
from careless_online.model.merging import MergingModel
from careless_online.model.naive import naive_merge
from careless_online.simulate import simulate_to_files
from careless_online.training.checkpoint import folder, latest
from careless_online.training.loop import Trainer, TrainConfig

KEYS = ["dHKL", "XDET", "YDET", "ewald_offset"]


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    folder = tmp_path_factory.mktemp("model")
    paths = simulate_to_files(str(folder / "s"), n_images=60, seed=21, formats=("mtz",), truth_columns=True)
    manifest = build_cache([paths["mtz"]], TableOptions(anomalous=True), str(folder / "cache"), shard_images=25)
    standardizer = Standardizer.fit(manifest, KEYS)
    return folder, paths, manifest, standardizer


def _trainer(manifest, standardizer, steps, path=None, batch_images=4):
    train = ImageBatches(manifest, standardizer, batch_images=batch_images, test_fraction=0.0)
    model = new_model(manifest, standardizer, d_model=16)
    model.set_reflection_counts(train.reflection_counts())
    config = TrainConfig(steps=steps, eval_every=steps, eval_images=16, progress=False)
    return Trainer(model, train, None, config, checkpoint_path=path, monitor=train), model, train


@pytest.fixture(scope="module")
def trained(data, tmp_path_factory):
    """One model trained 15 steps with checkpoints (``m.keras``), read by the save, --model-in and damage tests."""
    _, _, manifest, standardizer = data
    path = str(tmp_path_factory.mktemp("trained") / "m.keras")
    trainer, model, train = _trainer(manifest, standardizer, steps=15, path=path)
    trainer.run()
    return path, model, train


def test_step_is_traced_once_for_all_batch_shapes(data):
    _, _, manifest, standardizer = data
    trainer, _, train = _trainer(manifest, standardizer, steps=12)
    sizes = set()
    for step, batch in zip(range(12), train.batches(0)):
        sizes.add(len(batch["I"]))
        terms = trainer._step(batch, trainer.step_seed(step))
        assert np.isfinite(float(terms["loss"]))
    assert len(sizes) > 3
    assert trainer._step.experimental_get_tracing_count() == 1


def test_learning_rate_decay_schedule_and_loop(data):
    from dataclasses import replace

    from careless_online.training.loop import LR_FLOOR, learning_rate_at

    config = TrainConfig(steps=100, learning_rate=0.01, lr_decay=0.3)
    rates = [learning_rate_at(config, step) for step in range(100)]
    assert rates[:70] == [0.01] * 70
    assert all(a > b for a, b in zip(rates[70:], rates[71:]))
    assert rates[-1] == pytest.approx(0.01 * (LR_FLOOR + (1 - LR_FLOOR) / 30))
    assert learning_rate_at(replace(config, lr_decay=0.0), 99) == 0.01
    _, _, manifest, standardizer = data
    trainer, _, _ = _trainer(manifest, standardizer, steps=10)
    trainer.config = replace(trainer.config, lr_decay=0.5)
    trainer.run()
    assert float(trainer.optimizer.learning_rate) == pytest.approx(learning_rate_at(trainer.config, 9))
    assert trainer._step.experimental_get_tracing_count() == 1  # a new rate does not retrace


def test_loss_terms_and_kl_weights(data):
    _, _, manifest, standardizer = data
    _, model, train = _trainer(manifest, standardizer, steps=1)
    counts = train.reflection_counts()
    weights = model.kl_inverse_counts.numpy()
    np.testing.assert_allclose(weights[counts > 0] * counts[counts > 0], 1.0, rtol=1e-6)
    assert (weights[counts == 0] == 0).all()
    batch = next(train.epoch(0))
    terms = model.loss_terms(batch, seed=tf.constant([1, 2]))
    again = model.loss_terms(batch, seed=tf.constant([1, 2]))
    assert float(terms["loss"]) == float(again["loss"])  # stateless sampling
    expected = terms["NLL"] + model.kl_weight * terms["KL_F"] + model.scale_kl_weight * terms["KL_Sigma"]
    np.testing.assert_allclose(float(terms["loss"]), float(expected), rtol=1e-6)
    assert float(terms["KL_Sigma"]) > 0 and float(terms["n_obs"]) == len(batch["I"])


def test_save_and_load_round_trip(trained):
    path, model, train = trained
    loaded = load_model(latest(folder(path)).model_path, restore_optimizer=True)
    np.testing.assert_allclose(loaded.structure_factors.mean().numpy(), model.structure_factors.mean().numpy())
    assert int(loaded.optimizer.iterations.numpy()) == 15
    assert loaded.index_config == model.index_config
    assert Standardizer.from_config(loaded.standardizer_config).keys == KEYS
    batch = next(train.epoch(0))
    a = model.scale_parameters(batch)
    b = loaded.scale_parameters(batch)
    np.testing.assert_allclose(a[0].numpy(), b[0].numpy(), rtol=1e-5, atol=1e-6)


def _damage_config(path):
    """Rewrite a .keras archive with a garbled config.json (still a valid zip)."""
    import zipfile

    with zipfile.ZipFile(path) as archive:
        members = {name: archive.read(name) for name in archive.namelist()}
    members["config.json"] = b"{garbled"
    with zipfile.ZipFile(path, "w") as archive:
        for name, blob in members.items():
            archive.writestr(name, blob)


@pytest.mark.parametrize("damage", ["truncate", "garbage", "config"])
def test_corrupt_checkpoint_is_a_clear_error(trained, tmp_path, damage):
    path = str(tmp_path / "m.keras")
    blob = open(trained[0], "rb").read()  # a copy of a trained model's file, damaged below
    open(path, "wb").write(blob)
    assert load_model(path) is not None  # the undamaged copy loads
    if damage == "config":
        _damage_config(path)
    else:
        open(path, "wb").write(blob[: len(blob) // 2] if damage == "truncate" else b"not a model" * 10)
    with pytest.raises(InputError, match="m.keras"):
        load_model(path)


def test_model_in_gets_a_fresh_optimizer_from_the_flags(trained):
    """Issue 15: a model loaded for --model-in is trained with the new run's optimizer settings."""
    path, _, train = trained
    config = TrainConfig(steps=2, learning_rate=0.05, lr_decay=0.0, beta_2=0.5, global_clipnorm=3.0,
                         eval_every=2, eval_images=8, progress=False)
    again = Trainer(load_model(path), train, None, config, monitor=train)
    assert float(again.optimizer.learning_rate) == pytest.approx(0.05)
    assert float(again.optimizer.beta_2) == pytest.approx(0.5)
    assert again.optimizer.global_clipnorm == pytest.approx(3.0)
    assert int(again.optimizer.iterations.numpy()) == 0
    resumed = Trainer(load_model(latest(folder(path)).model_path, restore_optimizer=True), train, None, config)
    assert float(resumed.optimizer.beta_2) == pytest.approx(0.99)  # --resume keeps the run's own optimizer
    assert int(resumed.optimizer.iterations.numpy()) == 15  # the 15 steps of the run that saved it


@pytest.mark.parametrize("option, value", [
    ("n_reflections", 0), ("n_meta", -1), ("d_model", 0), ("d_ff", -4), ("encoder_layers", -3),
    ("scale_layers", -1), ("studentt_dof", 0.0), ("mc_samples", 0), ("kl_weight", -1.0),
    ("scale_kl_weight", float("nan")), ("intensity_scale", 0.0), ("d_model", 2.5),
])
def test_merging_model_validates_its_parameters(option, value):
    options = dict(n_reflections=5, n_meta=2)
    options[option] = value
    with pytest.raises(ValueError, match=option):
        MergingModel(**options)


def test_one_outlier_intensity_moves_its_image_scale_logarithmically(data):
    """Issue 14: one observation 10^6 times stronger than the rest of its image.

    With the scaled intensities fed linearly, the positively homogeneous
    ReLU networks carried such an outlier straight into the image's
    ``log Sigma`` (23 in the crash, a NLL of 1e24 and gradients of 1e28);
    through ``asinh`` it moves it by a logarithm.
    """
    _, _, manifest, standardizer = data
    _, model, train = _trainer(manifest, standardizer, steps=1)
    rng = np.random.default_rng(3)
    for weight in model.encoder.weights + model.scale_head.weights:  # a trained-looking, non-trivial network
        weight.assign(rng.normal(scale=0.3, size=weight.shape).astype(np.float32))
    batch = next(train.epoch(0))
    image = np.asarray(batch["image"])
    strongest = int(np.argmax(np.where(image == 0, batch["I"], -np.inf)))
    spread = []
    for factor in (1.0, 1e6):
        poisoned = dict(batch)
        intensity = np.array(batch["I"])
        intensity[strongest] *= factor
        poisoned["I"] = tf.constant(intensity)
        loc, _ = model.scale_parameters(poisoned)
        spread.append(loc.numpy()[image == 0])
    shift = np.abs(spread[1] - spread[0]).max()
    assert shift < 10 * np.log(1e6)  # logarithmic, not ~1e6
    assert np.isfinite(spread[1]).all()


def test_naive_scales_follow_the_true_image_scales(data):
    _, paths, manifest, standardizer = data
    batches = ImageBatches(manifest, standardizer, split="all", shuffle=False)
    _, _, scales = naive_merge(batches, len(manifest.index), manifest.n_images)
    truth = pd.read_csv(paths["images"])
    rho = scipy.stats.spearmanr(scales[truth["image"]], truth["scale"])[0]
    assert rho > 0.8


def test_scale_network_learns_scale_and_partiality(tmp_path):
    """The learned Sigma of each observation tracks the simulator's true scale x partiality x ...."""
    paths = simulate_to_files(str(tmp_path / "s"), n_images=120, seed=11, formats=("mtz",), truth_columns=True)
    assert main(["mono", "--disable-progress-bar", "--anomalous", "--iterations", "700", "--validation-frequency",
                 "350", "dHKL,XDET,YDET,ewald_offset", paths["mtz"], str(tmp_path / "out" / "m")]) == 0
    obs = rs.read_mtz(paths["mtz"]).reset_index()
    asu, plus = map_to_asu(obs[["H", "K", "L"]].to_numpy(), obs.spacegroup)
    truth = pd.DataFrame({"image_id": obs["BATCH"].to_numpy().astype(int) - 1, "H": asu[:, 0], "K": asu[:, 1],
                          "L": asu[:, 2], "plus": plus.astype(int),
                          "sigma_true": (obs["IEXPECTED"] / obs["FTRUE"] ** 2).to_numpy(),
                          "partiality": obs["PARTIALITY"].to_numpy()})
    # rs reads an unmerged MTZ at the observed indices (M/ISYM): back to the ASU to join
    pred = rs.read_mtz(str(tmp_path / "out" / "m_predictions_0.mtz")).hkl_to_asu().reset_index()
    merged = to_internal(rs.read_mtz(str(tmp_path / "out" / "m_0.mtz"))).reset_index()
    table = pred.merge(truth, on=["image_id", "H", "K", "L", "plus"]).merge(
        merged[["H", "K", "L", "F(+)", "SIGF(+)", "F(-)", "SIGF(-)"]], on=["H", "K", "L"])
    assert len(table) > 0.9 * len(pred)
    plus_mate = table["plus"] == 1
    f = np.where(plus_mate, table["F(+)"], table["F(-)"])
    sigf = np.where(plus_mate, table["SIGF(+)"], table["SIGF(-)"])
    sigma_learned = table["Ipred"] / (f * f + sigf * sigf)
    assert scipy.stats.spearmanr(sigma_learned, table["sigma_true"])[0] > 0.85
    assert scipy.stats.spearmanr(sigma_learned, table["partiality"])[0] > 0.6


def test_a_model_saved_with_linear_intensity_features_is_refused(tmp_path):
    """A model saved before issue 14's fix (no ``intensity_features`` key) would be silently wrong."""
    import json
    import zipfile

    path = str(tmp_path / "old.keras")
    model = MergingModel(5, 2, d_model=4)
    model.save(path)
    with zipfile.ZipFile(path) as archive:
        members = {name: archive.read(name) for name in archive.namelist()}
    config = json.loads(members["config.json"])
    del config["config"]["intensity_features"]
    members["config.json"] = json.dumps(config).encode()
    with zipfile.ZipFile(path, "w") as archive:
        for name, blob in members.items():
            archive.writestr(name, blob)
    with pytest.raises(InputError, match="retrain"):
        load_model(path)
    model.save(str(tmp_path / "new.keras"))
    assert load_model(str(tmp_path / "new.keras")).intensity_features == "asinh"
