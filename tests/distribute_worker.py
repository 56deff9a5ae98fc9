"""Runs one distributed check in a fresh process (devices must be set before TensorFlow starts).

``python tests/distribute_worker.py gradients CACHE_DIR`` splits the CPU into
two logical devices, trains one step with a two-replica ``MirroredStrategy``
and compares it with a single-process model of the same weights on the same
images; prints a JSON line of the differences.  ``python tests/distribute_worker.py
cli ARGS...`` runs ``careless_online ARGS...`` on two logical CPU devices.
"""

import json
import sys

import tensorflow as tf


def two_cpus():
    """Split the physical CPU into two logical devices (before TensorFlow initializes them)."""
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)


def _setup(cache_dir):
    from careless_online.io.manifest import load_manifest
    from careless_online.io.pipeline import ImageBatches, Standardizer
    from careless_online.training.loop import TrainConfig

    manifest = load_manifest(cache_dir)
    standardizer = Standardizer.fit(manifest, ["dHKL"])
    train = ImageBatches(manifest, standardizer, batch_images=8, test_fraction=0.0, seed=3)
    config = TrainConfig(steps=1, lr_decay=0.0, eval_every=1000, eval_images=8, progress=False)
    return manifest, standardizer, train, config


def _model(manifest, standardizer, train):
    from careless_online.model.build import new_model

    model = new_model(manifest, standardizer, d_model=8, encoder_layers=1, scale_layers=1)
    model.set_reflection_counts(train.reflection_counts())
    return model


def gradients(cache_dir):
    """Summed two-replica gradient and Adam step vs the single-process ones on the same images."""
    import keras
    import numpy as np

    from careless_online.training.distribute import DistributedTrainer, replica_slices, resolve_strategy
    from careless_online.training.loop import Trainer

    two_cpus()
    manifest, standardizer, train, config = _setup(cache_dir)
    keras.utils.set_random_seed(0)
    reference = _model(manifest, standardizer, train)
    strategy = resolve_strategy("mirrored")
    with strategy.scope():
        model = _model(manifest, standardizer, train)
    model.set_weights(reference.get_weights())
    trainer = DistributedTrainer(strategy, model, train, None, config, seed=11)
    single = Trainer(reference, train, None, config, seed=11)

    seed = trainer.step_seed(0)
    batch = next(train.batches(0))
    expected = [None] * len(reference.trainable_variables)
    loss = 0.0
    for r, part in enumerate(replica_slices(batch, 2)):
        with tf.GradientTape() as tape:
            terms = reference.loss_terms(part, tf.random.experimental.stateless_fold_in(seed, r))
        loss += float(terms["loss"])
        for i, g in enumerate(tape.gradient(terms["loss"], reference.trainable_variables)):
            g = tf.convert_to_tensor(g).numpy()
            expected[i] = g if expected[i] is None else expected[i] + g
    dist_batch = next(iter(trainer.training_dataset(0)))
    dist_terms, got = tf.function(trainer.summed_gradients)(dist_batch, seed)
    scale = max(float(np.max(np.abs(e))) for e in expected)
    gradient_error = max(float(np.max(np.abs(g.numpy() - e))) for g, e in zip(got, expected)) / scale
    single._guarded_update({"loss": tf.constant(loss)}, [tf.constant(e) for e in expected])
    trainer.run()
    step_error = max(float(np.max(np.abs(a - b))) for a, b in zip(model.get_weights(), reference.get_weights()))
    moved = max(float(np.max(np.abs(a - b))) for a, b in
                zip(reference.get_weights(), _fresh_weights(manifest, standardizer, train)))
    print(json.dumps({"replicas": strategy.num_replicas_in_sync, "loss": loss, "dist_loss": float(dist_terms["loss"]),
                      "gradient_error": gradient_error, "step_error": step_error, "step_size": moved,
                      "gradient_scale": scale}))


def cli(*argv):
    """``careless_online`` with ``argv`` on two logical CPU devices (``--strategy mirrored``: two replicas)."""
    from careless_online.cli.main import main

    two_cpus()
    sys.argv = ["careless_online", *argv]
    raise SystemExit(main())


def _fresh_weights(manifest, standardizer, train):
    import keras

    keras.utils.set_random_seed(0)
    return _model(manifest, standardizer, train).get_weights()


if __name__ == "__main__":
    {"gradients": gradients, "cli": cli}[sys.argv[1]](*sys.argv[2:])
