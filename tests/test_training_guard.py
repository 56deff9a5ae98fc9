"""The non-finite guard of the training loop: poisoned steps are skipped, counted, and stop a run."""

import csv

import numpy as np
import pytest
import tensorflow as tf

from careless_online.io.pipeline import ImageBatches, Standardizer
from careless_online.model.build import new_model
from careless_online.training.loop import MAX_GRADIENT_NORM, NonFiniteError, Trainer, TrainConfig, global_norm

KEYS = ["dHKL", "XDET", "YDET"]


class Poisoned:
    """A training view whose batches number ``bad`` (0-based, per run) carry a NaN or huge intensity."""

    def __init__(self, view, bad, value):
        self.view, self.bad, self.value = view, set(bad), value
        self.n_images, self.batch_images, self.manifest = view.n_images, view.batch_images, view.manifest
        self.signature = view.signature

    def dataset(self, start_step=0):
        def poison(number, batch):
            batch = dict(batch)
            hit = tf.reduce_any(tf.equal(number, tf.constant(sorted(self.bad) or [-1], tf.int64)))
            first = tf.one_hot(0, tf.size(batch["I"]), on_value=True, off_value=False)
            batch["I"] = tf.where(hit & first, tf.constant(self.value, tf.float32), batch["I"])
            return batch

        return self.view.dataset(start_step=start_step).enumerate().map(poison)


@pytest.fixture(scope="module")
def setup(sim_manifest):
    standardizer = Standardizer.fit(sim_manifest, KEYS)
    train = ImageBatches(sim_manifest, standardizer, batch_images=4, test_fraction=0.0)
    return sim_manifest, standardizer, train


def _trainer(setup, tmp_path, steps, bad=(), value=float("nan"), max_nonfinite=20):
    manifest, standardizer, train = setup
    model = new_model(manifest, standardizer, d_model=8)
    model.set_reflection_counts(train.reflection_counts())
    config = TrainConfig(steps=steps, eval_every=steps, eval_images=4, progress=False, checkpoint_every=2,
                         max_nonfinite_steps=max_nonfinite)
    return Trainer(model, Poisoned(train, bad, value), None, config, history_path=str(tmp_path / "h.csv"),
                   checkpoint_path=str(tmp_path / "m.keras"))


@pytest.mark.parametrize("value", [float("nan"), float("inf"), 1e30])
def test_poisoned_batch_is_skipped_and_leaves_the_variables_unchanged(setup, tmp_path, value):
    trainer = _trainer(setup, tmp_path, steps=1, bad=[0], value=value)
    before = [v.numpy().copy() for v in trainer.model.trainable_variables]
    batch = next(iter(trainer.train.dataset(0)))
    terms = trainer._step(batch, trainer.step_seed(0))
    assert float(terms["skipped"]) == 1.0
    assert int(trainer.optimizer.iterations.numpy()) == 0
    for old, variable in zip(before, trainer.model.trainable_variables):
        np.testing.assert_array_equal(old, variable.numpy())


def test_clean_batch_is_applied(setup, tmp_path):
    trainer = _trainer(setup, tmp_path, steps=1)
    before = trainer.model.structure_factors.loc_raw.numpy().copy()
    terms = trainer._step(next(iter(trainer.train.dataset(0))), trainer.step_seed(0))
    assert float(terms["skipped"]) == 0.0
    assert int(trainer.optimizer.iterations.numpy()) == 1
    assert not np.array_equal(before, trainer.model.structure_factors.loc_raw.numpy())


def test_skipped_steps_are_counted_in_the_history(setup, tmp_path):
    trainer = _trainer(setup, tmp_path, steps=6, bad=[1, 4])
    row = trainer.run()
    assert row["skipped_steps"] == 2 and np.isfinite(row["loss"])
    assert int(trainer.optimizer.iterations.numpy()) == 4
    with open(tmp_path / "h.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert rows[-1]["skipped_steps"] == "2"
    assert all(np.isfinite(v.numpy()).all() for v in trainer.model.trainable_variables)


def test_too_many_nonfinite_steps_in_a_row_stop_the_run(setup, tmp_path):
    trainer = _trainer(setup, tmp_path, steps=12, bad=range(2, 12), max_nonfinite=3)
    with pytest.raises(NonFiniteError, match=r"step 5: 3 steps in a row.*m\.ckpt.*step 4\)"):
        trainer.run()
    assert trainer.skipped_steps == 3
    assert int(trainer.optimizer.iterations.numpy()) == 2  # skipped steps 3-4 updated nothing


def test_global_norm_does_not_overflow_float32():
    """Issue 14: finite gradients of 1e20 have an infinite float32 squared norm.

    keras's global-norm clipping then multiplies every gradient by NaN, which
    made every variable NaN and the next sample fail with 'Invalid parameters'.
    """
    gradients = [tf.fill([4], 1e20), tf.constant([3.0, 4.0])]
    assert not np.isfinite(float(tf.linalg.global_norm(gradients)))
    assert float(global_norm(gradients)) == pytest.approx(2e20, rel=1e-6)
    assert float(global_norm(gradients)) > MAX_GRADIENT_NORM  # such a step is skipped
    assert float(global_norm([tf.constant([3.0, 4.0])])) == pytest.approx(5.0)
    assert not np.isfinite(float(global_norm([tf.constant([np.nan, 1.0])])))
    assert float(global_norm([tf.zeros([3])])) == 0.0
