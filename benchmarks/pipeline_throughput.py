"""Input-pipeline throughput: building the cache from a stream, and serving batches.

Three phases, each run in its own subprocess under ``/usr/bin/time -v`` so its
peak RSS is its own:

``build``
    ``careless_online.io.cache.build_cache`` of the dataset's stream into a
    fresh cache folder (parsing, ASU mapping, shard writing).
``epoch``
    One pass of ``ImageBatches.epoch(0)`` (numpy batches) over that cache.
``dataset``
    One epoch's worth of batches of ``ImageBatches.dataset(start_step=0)``
    (the ``tf.data`` pipeline the trainer consumes).

Images/s counts the images processed inside the phase (imports excluded);
wall and peak RSS are of the whole subprocess.

Usage::

    python benchmarks/pipeline_throughput.py 2k 20k --batch-images 32
"""

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

from bench_util import (bench_root, format_table, machine_info, machine_line, parse_list,
                        run_measured, tail, write_results)
from datasets import DMIN, SPACEGROUP, ensure_dataset

METADATA = ["dHKL", "XDET", "YDET", "ewald_offset"]
PHASES = ("build", "epoch", "dataset")


# --------------------------------------------------------------------------- child side

def _options():
    from careless_online.io.table import TableOptions
    return TableOptions(spacegroup=SPACEGROUP, anomalous=True, dmin=DMIN)


def _batches(cache_dir, stream, batch_images):
    from careless_online.io.cache import build_cache
    from careless_online.io.pipeline import ImageBatches, Standardizer
    manifest = build_cache([stream], _options(), cache_dir)
    standardizer = Standardizer.fit(manifest, METADATA)
    return ImageBatches(manifest, standardizer, batch_images=batch_images)


def phase_build(stream, cache_dir, batch_images):
    """Build the cache; returns counts and the seconds spent."""
    from careless_online.io.cache import build_cache
    t0 = time.perf_counter()
    manifest = build_cache([stream], _options(), cache_dir)
    seconds = time.perf_counter() - t0
    return {"seconds": seconds, "images": manifest.n_images, "observations": manifest.n_obs,
            "shards": len(manifest.shards)}


def phase_epoch(stream, cache_dir, batch_images):
    """Iterate one numpy epoch; returns counts and the seconds spent."""
    t0 = time.perf_counter()
    batches = _batches(cache_dir, stream, batch_images)
    setup = time.perf_counter() - t0
    images = observations = steps = 0
    t0 = time.perf_counter()
    for batch in batches.epoch(0):
        images += int(batch["n_images"])
        observations += len(batch["I"])
        steps += 1
    return {"seconds": time.perf_counter() - t0, "setup_s": setup, "images": images,
            "observations": observations, "steps": steps}


def phase_dataset(stream, cache_dir, batch_images):
    """Pull one epoch's worth of batches from the tf.data pipeline."""
    t0 = time.perf_counter()
    batches = _batches(cache_dir, stream, batch_images)
    steps_wanted = batches.steps_per_epoch
    data = batches.dataset(start_step=0)
    setup = time.perf_counter() - t0
    images = observations = steps = 0
    first = None
    t0 = time.perf_counter()
    for batch in data.take(steps_wanted):
        if first is None:
            first = time.perf_counter() - t0
        images += int(batch["n_images"])
        observations += int(batch["I"].shape[0])
        steps += 1
    return {"seconds": time.perf_counter() - t0, "setup_s": setup, "first_batch_s": first,
            "images": images, "observations": observations, "steps": steps}


CHILD_PHASES = {"build": phase_build, "epoch": phase_epoch, "dataset": phase_dataset}


def child_main(args):
    """Run one phase in this process and print its JSON on the last line."""
    result = CHILD_PHASES[args.child](args.stream, args.cache_dir, args.batch_images)
    print("RESULT " + json.dumps(result))


# --------------------------------------------------------------------------- parent side

def _result_line(log):
    for line in reversed(Path(log).read_text(errors="replace").splitlines()):
        if line.startswith("RESULT "):
            return json.loads(line[len("RESULT "):])
    return None


def measure(dataset, root, batch_images, phases, timeout_s):
    """Run the phases of one dataset; returns one row per phase."""
    info = ensure_dataset(dataset, root)
    stream = info["paths"]["stream"]
    work = bench_root(root) / "pipeline" / dataset
    cache_dir = work / "cache"
    if "build" in phases:
        shutil.rmtree(cache_dir, ignore_errors=True)  # measure a cold build
    rows = []
    for phase in phases:
        cmd = [sys.executable, str(Path(__file__).resolve()), "--child", phase, "--stream", stream,
               "--cache-dir", str(cache_dir), "--batch-images", str(batch_images)]
        run = run_measured(cmd, work / f"{phase}_b{batch_images}.log", timeout_s=timeout_s)
        row = {"dataset": dataset, "phase": phase, "batch_images": batch_images, **run}
        result = _result_line(run["log"]) if run["rc"] == 0 else None
        if result is None:
            row["error"] = "timed out" if run["timed_out"] else tail(run["log"], 8)
        else:
            row.update(result)
            row["images_per_s"] = result["images"] / result["seconds"] if result["seconds"] else None
            row["obs_per_s"] = result["observations"] / result["seconds"] if result["seconds"] else None
        rows.append(row)
        print(f"[pipeline] {dataset} {phase}: wall {run['wall_s']:.1f} s, "
              f"rss {row.get('peak_rss_mb') or float('nan'):.0f} MiB, "
              f"{row.get('images_per_s') or float('nan'):.0f} images/s", flush=True)
    return rows


TABLE = [("dataset", "dataset"), ("phase", "phase"), ("batch_images", "batch"),
         ("images", "images"), ("observations", "observations"), ("seconds", "phase s", 1),
         ("images_per_s", "images/s", 0), ("obs_per_s", "obs/s", 0),
         ("wall_s", "process wall s", 1), ("peak_rss_mb", "peak RSS MiB", 0)]


def main(argv=None):
    """Measure the input pipeline on the given datasets."""
    p = argparse.ArgumentParser(description="Throughput and memory of careless_online's input pipeline.",
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("datasets", nargs="*", default=["2k"], help="dataset names (see datasets.py)")
    p.add_argument("--batch-images", default="32", help="comma-separated images per batch")
    p.add_argument("--phases", default=",".join(PHASES), help="comma-separated phases to run")
    p.add_argument("--root", default=None, help="benchmark folder (default $CARELESS_ONLINE_BENCH "
                                                "or /tmp/careless_online_bench)")
    p.add_argument("--timeout", type=float, default=3600.0, help="seconds allowed per phase")
    p.add_argument("--no-json", action="store_true", help="do not write a results file")
    p.add_argument("--child", choices=PHASES, help=argparse.SUPPRESS)
    p.add_argument("--stream", help=argparse.SUPPRESS)
    p.add_argument("--cache-dir", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        args.batch_images = int(args.batch_images)
        return child_main(args)
    phases = parse_list(args.phases)
    rows = []
    for dataset in args.datasets:
        for i, b in enumerate(parse_list(args.batch_images, int)):
            # the cache is rebuilt (cold) once per dataset; later batch sizes reuse it
            todo = phases if i == 0 else [ph for ph in phases if ph != "build"]
            rows.extend(measure(dataset, args.root, b, todo, args.timeout))
    machine = machine_info()
    table = format_table(rows, TABLE)
    print(f"\nMachine: {machine_line(machine)}\n")
    print(table)
    if not args.no_json:
        path = write_results("pipeline_" + "_".join(args.datasets),
                             {"machine": machine, "rows": rows, "table": table})
        print(f"\nwrote {path}")


if __name__ == "__main__":
    main()
