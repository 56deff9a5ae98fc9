"""Laue merging quality: ``careless_online poly`` against wavelength- and harmonic-blind merges of simulated data.

Simulates a pink-beam set (:mod:`careless_online.simulate.laue`), merges it
with ``poly`` (the wavelength among the metadata; harmonics summed per spot)
and three blind variants, and prints CC(F) and CCanom to the truth, the
reflections only the harmonic bookkeeping recovers (recorded only as a
higher order on a spot written with another index) and images/s.

Variants: ``poly`` (``dHKL,Wavelength``), ``poly, no wavelength`` (``dHKL``),
``mono`` (harmonic-blind: each spot is its written index; ``dHKL,Wavelength``)
and ``mono, no wavelength`` (``dHKL``).

Usage::

    python benchmarks/laue.py --images 40 --band 0.6 1.3 --iterations 500
"""

import argparse
import os
import tempfile
import time

import numpy as np
import reciprocalspaceship as rs

from careless_online.cli.main import main as careless_online
from careless_online.simulate.laue import simulate_laue, write_laue
from careless_online.simulate.laue_scores import cc_anom, cc_f

VARIANTS = (("poly", "poly", "dHKL,Wavelength"), ("poly, no wavelength", "poly", "dHKL"),
            ("mono", "mono", "dHKL,Wavelength"), ("mono, no wavelength", "mono", "dHKL"))


def merge(command, keys, spots, out, args):
    """Run one merge; returns the merged table and the wall time (s)."""
    start = time.perf_counter()
    careless_online([command, "--iterations", str(args.iterations), "--batch-size", str(args.batch_size),
                     "--anomalous", "--output-columns", "ccp4", "--no-predictions", "--disable-progress-bar",
                     "--seed", str(args.seed), keys, spots, out])
    return rs.read_mtz(f"{out}_0.mtz"), time.perf_counter() - start


def harmonic_only(merged, blind, truth):
    """CC(F) and count of the reflections the merge estimates but the harmonic-blind one never saw."""
    seen = blind.index[blind["N"].to_numpy(float) > 0] if "N" in blind else blind.index
    only = merged.loc[merged.index.difference(seen)]
    only = only[only["N"].to_numpy(float) > 0]
    return cc_f(only, truth) if len(only) > 2 else (float("nan"), len(only))


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--images", type=int, default=24)
    p.add_argument("--band", type=float, nargs=2, default=(0.6, 1.3))
    p.add_argument("--dmin", type=float, default=3.0)
    p.add_argument("--iterations", type=int, default=300)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--out", default=None, help="folder of the files (default: a temporary one)")
    args = p.parse_args(argv)
    folder = args.out or tempfile.mkdtemp(prefix="laue_bench_")
    data = simulate_laue(n_images=args.images, band=tuple(args.band), dmin=args.dmin, seed=args.seed)
    spots, _, _ = write_laue(data, os.path.join(folder, "laue"))
    n_multiple = float(np.mean(data.spots["n_harmonics"].to_numpy() > 1))
    print(f"{args.images} images, {len(data.spots)} spots ({len(data.spots) / args.images:.0f} per image), "
          f"{100 * n_multiple:.1f} % with several harmonics; band {args.band[0]}-{args.band[1]} A, "
          f"dmin {args.dmin} A; {args.iterations} steps of {args.batch_size} images")
    results = {}
    for name, command, keys in VARIANTS:
        results[name] = merge(command, keys, spots, os.path.join(folder, name.replace(", ", "_").replace(" ", "_"),
                                                                 "m"), args)
    print("| merge | metadata | CC(F) | CCanom | images/s (wall) |\n| --- | --- | --- | --- | --- |")
    for name, _, keys in VARIANTS:
        merged, wall = results[name]
        print(f"| {name} | {keys} | {cc_f(merged, data.truth)[0]:.4f} | {cc_anom(merged, data.truth)[0]:.4f} | "
              f"{args.iterations * args.batch_size / wall:.1f} |")
    cc, n = harmonic_only(results["poly"][0], results["mono"][0], data.truth)
    print(f"reflections only recorded as higher harmonics: {n}, their CC(F) in the poly merge {cc:.3f}")


if __name__ == "__main__":
    main()
