"""Per-step time of data-parallel training: 1 vs N replicas, the all-reduce's share, bytes per step.

Each replica count runs in its own process whose CPU is split into that many
logical devices (``MirroredStrategy``; TensorFlow fixes devices at start-up).
For each it times, as the median over ``--steps`` steps after two warm-up
steps:

``step``        the whole distributed step (per-replica loss and gradient,
                one batched SUM all-reduce, one Adam update), global batch
                ``--batch-size`` images split over the replicas
``allreduce``   the batched SUM all-reduce alone, of tensors shaped like the
                gradients (so ``allreduce / step`` is its share of the step)

and reports the bytes one replica contributes to the all-reduce per step:
4 bytes per float32 gradient element, i.e. ``4 (2 n_reflections + n_network)``
plus the loss terms (the two parameters of each unique reflection's ``q(F)``
and every network weight; the gradients are dense).  With two logical CPU
devices of one shared-memory machine the all-reduce is a memory copy: the
figures give the arithmetic's scaling, not a network's.

Usage::

    python benchmarks/distribute_step.py --images 400 --dmin 2.5 --replicas 1,2 --steps 20
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

from bench_util import format_table, machine_info, machine_line, parse_list, quiet_env, write_results


def _time(function, steps):
    """Median seconds of ``function()`` over ``steps`` calls, after two warm-up calls."""
    function()
    function()
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def measure(cache, replicas, batch_images, steps, d_model):
    """In this process: split the CPU into ``replicas`` devices and time the step; returns a dict."""
    import numpy as np
    import tensorflow as tf

    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * replicas)
    from careless_online.io.manifest import load_manifest
    from careless_online.io.pipeline import ImageBatches, Standardizer
    from careless_online.model.build import new_model
    from careless_online.training.distribute import DistributedTrainer, resolve_strategy
    from careless_online.training.loop import TrainConfig

    manifest = load_manifest(cache)
    standardizer = Standardizer.fit(manifest, ["dHKL"])
    train = ImageBatches(manifest, standardizer, batch_images=batch_images, test_fraction=0.0)
    strategy = resolve_strategy("mirrored")
    with strategy.scope():
        model = new_model(manifest, standardizer, d_model=d_model)
    model.set_reflection_counts(train.reflection_counts())
    config = TrainConfig(steps=steps + 2, lr_decay=0.0, progress=False)
    trainer = DistributedTrainer(strategy, model, train, None, config)
    batches = iter(trainer.training_dataset(0))
    seed = trainer.step_seed(0)
    step_s = _time(lambda: float(trainer._step(next(batches), seed)["loss"]), steps)

    shapes = [v.shape for v in model.trainable_variables]

    @tf.function
    def all_reduce():
        def replica():
            local = [tf.ones(s) for s in shapes]
            return tf.distribute.get_replica_context().all_reduce(tf.distribute.ReduceOp.SUM, local)
        return strategy.experimental_local_results(strategy.run(replica))[0][0]

    allreduce_s = _time(lambda: all_reduce().numpy(), steps)
    n_reflections = int(model.structure_factors.loc_raw.shape[0])
    n_total = int(sum(np.prod(s) for s in shapes))
    return {"replicas": strategy.num_replicas_in_sync, "batch_images": batch_images, "step_s": step_s,
            "allreduce_s": allreduce_s, "allreduce_share": allreduce_s / step_s,
            "images_per_s": batch_images / step_s, "obs_per_image": manifest.n_obs / manifest.n_images,
            "n_reflections": n_reflections,
            "n_network": n_total - 2 * n_reflections, "bytes_per_step": 4 * n_total}


def _dataset(images, dmin, folder):
    """Simulate ``images`` stills and convert them to a cache; returns the cache folder."""
    from careless_online.io.cache import build_cache
    from careless_online.io.table import TableOptions
    from careless_online.simulate import simulate_to_files

    files = simulate_to_files(os.path.join(folder, "sim"), formats=("stream",), n_images=images, seed=1, dmin=dmin)
    return build_cache([files["stream"]], TableOptions(spacegroup="P 43 21 2"), os.path.join(folder, "cache")).path


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=400, help="simulated images")
    parser.add_argument("--dmin", type=float, default=2.5, help="resolution of the simulation (A)")
    parser.add_argument("--replicas", default="1,2", help="comma-separated replica counts")
    parser.add_argument("--batch-size", type=int, default=32, help="global images per step")
    parser.add_argument("--d-model", type=int, default=32, help="network width")
    parser.add_argument("--steps", type=int, default=20, help="timed steps")
    parser.add_argument("--measure", default=None, help=argparse.SUPPRESS)  # internal: CACHE,REPLICAS
    args = parser.parse_args(argv)
    if args.measure:
        cache, replicas = args.measure.rsplit(",", 1)
        print(json.dumps(measure(cache, int(replicas), args.batch_size, args.steps, args.d_model)))
        return
    info = machine_info()
    with tempfile.TemporaryDirectory() as folder:
        cache = _dataset(args.images, args.dmin, folder)
        rows = []
        for replicas in parse_list(args.replicas, int):
            command = [sys.executable, __file__, "--measure", f"{cache},{replicas}", "--batch-size",
                       str(args.batch_size), "--steps", str(args.steps), "--d-model", str(args.d_model)]
            done = subprocess.run(command, capture_output=True, text=True, env=quiet_env(), check=True)
            rows.append(json.loads(done.stdout.strip().splitlines()[-1]))
    print(machine_line(info))
    print(format_table(rows, [("replicas", "replicas"), ("batch_images", "images/step"), ("step_s", "step (s)", 4),
                              ("allreduce_s", "all-reduce (s)", 5), ("allreduce_share", "all-reduce share", 3),
                              ("images_per_s", "images/s", 1), ("obs_per_image", "obs/image", 0),
                              ("n_reflections", "unique reflections"),
                              ("n_network", "network weights"), ("bytes_per_step", "bytes/replica/step")]))
    path = write_results("distribute", {"machine": info, "args": vars(args), "rows": rows})
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
