"""Indexing ambiguity: how well the online per-image choice of setting resolves it.

Simulates a P 6₁ data set (the benchmark's simulation options, a hexagonal
cell), reindexes a fraction of the images by the lattice's twin law, chooses
every image's setting online (:func:`careless_online.ambiguity.resolve.resolve_settings`)
and merges with the true corrections (the oracle), so the figures measure the
choice alone:

- ``no flips``: the data before reindexing (the ceiling);
- ``none``: the flipped data merged as indexed (``--reindexing-ops none``);
- ``resolved``: the flipped data in the chosen settings.

Prints a Markdown table and writes ``benchmarks/results/ambiguity_<images>_<date>.json``::

    python benchmarks/ambiguity.py --images 2000
"""

import argparse
import json
import os
import platform
import sys
import time
from datetime import datetime, timezone

import numpy as np

from careless_online.ambiguity.operators import candidate_operators
from careless_online.ambiguity.resolve import consistent_fraction, resolve_settings, setting_summary
from careless_online.io.reflections import ReflectionIndex, map_to_asu
from careless_online.simulate import simulate
from careless_online.simulate.ambiguity import correlations_to_truth, reindex_images

HERE = os.path.dirname(os.path.abspath(__file__))


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=2000)
    parser.add_argument("--spacegroup", default="P 61")
    parser.add_argument("--cell", default="80,80,100,90,90,120")
    parser.add_argument("--dmin", type=float, default=2.0)
    parser.add_argument("--fraction", type=float, default=0.5, help="fraction of images reindexed")
    parser.add_argument("--passes", type=int, default=2)
    parser.add_argument("--batch-images", type=int, default=8)
    parser.add_argument("--seed", type=int, default=2024)
    return parser.parse_args(argv)


def observation_ids(sim, index, operators):
    """Image, intensity and reflection-table rows of the observations in the index."""
    obs = sim.observations.reset_index()
    ids = index.lookup(*map_to_asu(obs[["H", "K", "L"]].to_numpy(), sim.spacegroup))
    keep = ids >= 0
    return obs["BATCH"].to_numpy()[keep], obs["I"].to_numpy()[keep], operators.reflection_table(index)[ids[keep]]


def main(argv=None):
    args = parse_args(argv)
    cell = tuple(float(x) for x in args.cell.split(","))
    start = time.perf_counter()
    sim = simulate(n_images=args.images, seed=args.seed, dmin=args.dmin, spacegroup=args.spacegroup, cell=cell,
                   mosaicity=0.27, energy_jitter=0.002)
    operators = candidate_operators("auto", sim.cell, sim.spacegroup)
    print(operators.reason)
    flipped = reindex_images(sim, operators.triplets[1:], args.fraction, seed=args.seed)
    simulated_s = time.perf_counter() - start
    index = ReflectionIndex.from_cell(sim.cell, sim.spacegroup, args.dmin, anomalous=True)
    image, intensity, table = observation_ids(flipped, index, operators)
    start = time.perf_counter()
    result = resolve_settings(image, intensity, table, len(index), passes=args.passes,
                              batch_images=args.batch_images, seed=args.seed)
    resolve_s = time.perf_counter() - start
    true_setting = flipped.images["setting"].to_numpy()
    n = len(sim.images)
    rows = {
        "no flips": correlations_to_truth(sim, np.zeros(n, int), operators, args.dmin),
        "none": correlations_to_truth(flipped, np.zeros(n, int), operators, args.dmin),
        "resolved": correlations_to_truth(flipped, result["setting"], operators, args.dmin),
    }
    summary = {
        "consistent_fraction": consistent_fraction(result["setting"], true_setting, operators, operators.matrices[1:]),
        "ambiguous_fraction": float(np.mean(result["ambiguous"])),
        "settings": setting_summary(result, operators),
        "median_confidence": float(np.median(result["confidence"])),
        "resolve_s": resolve_s, "simulate_s": simulated_s, "observations": int(len(image)),
    }
    print(f"\n{args.images} images, {args.spacegroup}, {args.dmin} Å, {100 * args.fraction:.0f} % reindexed; "
          f"choice {args.passes} passes in {resolve_s:.1f} s; {100 * summary['consistent_fraction']:.2f} % of "
          f"images in one setting; {100 * summary['ambiguous_fraction']:.2f} % flagged ambiguous\n")
    print("| setting | images | fraction | median confidence | flagged ambiguous |")
    print("| --- | --- | --- | --- | --- |")
    for row in summary["settings"]:
        print(f"| {row['operator']} | {row['images']} | {row['fraction']:.3f} | {row['median_confidence']:.4f} | "
              f"{row['ambiguous']} |")
    print()
    print("| merge (oracle corrections) | CC(F) | CC(anom) | % of no-flip CC(F) | % of no-flip CC(anom) |")
    print("| --- | --- | --- | --- | --- |")
    for name, figures in rows.items():
        print(f"| {name} | {figures['cc_f']:.4f} | {figures['cc_anom']:.4f} | "
              f"{100 * figures['cc_f'] / rows['no flips']['cc_f']:.1f} | "
              f"{100 * figures['cc_anom'] / rows['no flips']['cc_anom']:.1f} |")
    out = os.path.join(HERE, "results", f"ambiguity_{args.images}_{datetime.now(timezone.utc):%Y-%m-%d_%H%M}.json")
    os.makedirs(os.path.dirname(out), exist_ok=True)
    with open(out, "w") as handle:
        json.dump({"command": " ".join([sys.executable] + sys.argv), "machine": platform.platform(),
                   "options": vars(args), "operators": operators.to_config(), "merges": rows,
                   "summary": summary}, handle, indent=1)
    print(f"\nwritten {out}")


if __name__ == "__main__":
    main()
