"""Where the time of one training step goes, by batch size.

Times each stage of careless_online's step separately, each compiled with
``tf.function`` and the training loop's fixed input signature, as the median
over the batches of a dataset (after one warm-up call per stage):

``batch``       building the batch dictionary from the cache (numpy)
``q_F``         reparameterized samples of F and their KL to the Wilson prior
``networks``    image encoder + scale head (loc and scale of q_Sigma)
``loss``        the whole minus-ELBO forward pass
``loss+grad``   forward and backward pass
``step``        the training step (forward, backward, clipping, Adam update)
``eval``        the evaluation pass (predicted intensities and NLL)

Usage::

    python benchmarks/profile_step.py quick --batch-sizes 1,8,32,128
"""

import argparse
import statistics
import sys
import tempfile
import time

from bench_util import format_table, machine_info, machine_line, parse_list, write_results
from datasets import ensure_dataset
from tools import METADATA


def _median_ms(function, batches):
    import tensorflow as tf

    function(batches[0])  # trace / warm up
    times = []
    for batch in batches:
        start = time.perf_counter()
        out = function(batch)
        _ = [tf.convert_to_tensor(v).numpy() for v in _flatten(out)]  # wait for every result
        times.append(1e3 * (time.perf_counter() - start))
    return statistics.median(times)


def _flatten(out):
    if isinstance(out, dict):
        return list(out.values())
    if isinstance(out, (tuple, list)):
        return [v for item in out for v in _flatten(item)]
    return [out]


def profile(manifest, standardizer, batch_size, n_batches):
    """Median milliseconds of each stage at one batch size.

    Returns
    -------
    dict
    """
    import tensorflow as tf

    from careless_online.io.pipeline import ImageBatches, batch_signature
    from careless_online.model.build import new_model
    from careless_online.training.loop import TrainConfig, Trainer

    view = ImageBatches(manifest, standardizer, batch_images=batch_size, test_fraction=0.0, split="all")
    start = time.perf_counter()
    raw = []
    for batch in view.batches(0):
        raw.append(batch)
        if len(raw) == n_batches:
            break
    batch_ms = 1e3 * (time.perf_counter() - start) / len(raw)
    batches = [{k: tf.constant(v) for k, v in b.items()} for b in raw]
    model = new_model(manifest, standardizer)
    trainer = Trainer(model, view, None, TrainConfig(steps=1, progress=False))
    seed = trainer.step_seed(0)
    signature = [batch_signature(model.n_meta)]

    def compiled(body):
        return tf.function(body, input_signature=signature)

    def q_f(batch):
        ids = batch["refl_id"]
        samples = model.structure_factors.sample(ids, model.mc_samples, seed=seed)
        return tf.reduce_sum(model.structure_factors.kl_to_prior(ids, samples))

    def loss_and_grad(batch):
        with tf.GradientTape() as tape:
            loss = model.loss_terms(batch, seed)["loss"]
        return loss, tape.gradient(loss, model.trainable_variables)

    stages = {
        "q_F": compiled(q_f),
        "networks": compiled(model.scale_parameters),
        "loss": compiled(lambda batch: model.loss_terms(batch, seed)["loss"]),
        "loss+grad": compiled(loss_and_grad),
        "step": lambda batch: trainer._step(batch, seed),
        "eval": lambda batch: trainer._predict(batch, seed),
    }
    row = {"batch_images": batch_size, "obs_per_batch": round(statistics.mean(len(b["I"]) for b in raw)),
           "batch": round(batch_ms, 2)}
    for name, function in stages.items():
        row[name] = round(_median_ms(function, batches), 2)
    row["images_per_s"] = round(1e3 * batch_size / (row["step"] + batch_ms), 1)
    return row


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("dataset", nargs="?", default="quick", help="dataset name (see datasets.py)")
    p.add_argument("--batch-sizes", default="1,8,32,128", help="images per batch, comma-separated")
    p.add_argument("--batches", type=int, default=20, help="batches timed per batch size")
    p.add_argument("--no-json", action="store_true", help="do not write a results file")
    args = p.parse_args(argv)

    from careless_online.io.cache import build_cache
    from careless_online.io.pipeline import Standardizer
    from careless_online.io.table import TableOptions

    info = ensure_dataset(args.dataset)
    options = TableOptions(spacegroup=info["spacegroup"], anomalous=True, dmin=info["dmin"])
    with tempfile.TemporaryDirectory() as folder:
        manifest = build_cache([info["paths"]["stream"]], options, folder)
        standardizer = Standardizer.fit(manifest, METADATA.split(","))
        rows = [profile(manifest, standardizer, int(b), args.batches) for b in parse_list(args.batch_sizes)]
    machine = machine_info()
    print(f"# {machine_line(machine)}; dataset {args.dataset}; median ms per batch")
    columns = [("batch_images", "images/batch"), ("obs_per_batch", "obs/batch")] + [
        (key, f"{key} ms", 1) for key in ("batch", "q_F", "networks", "loss", "loss+grad", "step", "eval")
    ] + [("images_per_s", "images/s", 0)]
    print(format_table(rows, columns))
    if not args.no_json:
        path = write_results(f"profile_{args.dataset}", {"command": " ".join(["python"] + sys.argv),
                                                        "machine": machine, "rows": rows})
        print(f"# wrote {path}")


if __name__ == "__main__":
    main()
