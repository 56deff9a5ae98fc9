"""CCanom of ``poly`` and the harmonic-blind ``mono`` merge, over all pairs and over the pairs seen on single spots.

Simulates the wide-band set of ``benchmarks/laue.py`` (24 images, 0.6-1.3 A,
3 A), merges it with ``poly`` and ``mono`` (both ``dHKL,Wavelength``, 300
steps of 8 images) for each training seed, and prints CCanom over each
merge's acentric pairs and over the reflections recorded at least once on
a spot of one harmonic (:func:`~careless_online.simulate.laue_oracle.reflection_spots`).

Usage::

    python benchmarks/laue_ccanom.py --out /tmp/laue_ccanom --seeds 1 2
"""

import argparse
import os

import reciprocalspaceship as rs

from careless_online.cli.main import main as careless_online
from careless_online.simulate.laue import simulate_laue, write_laue
from careless_online.simulate.laue_oracle import reflection_spots
from careless_online.simulate.laue_scores import cc_anom


def merge(command, spots, out, seed):
    """One merge with the benchmark's flags; the merged table."""
    careless_online([command, "--iterations", "300", "--batch-size", "8", "--anomalous", "--output-columns", "ccp4",
                     "--no-predictions", "--disable-progress-bar", "--seed", str(seed), "dHKL,Wavelength", spots, out])
    return rs.read_mtz(f"{out}_0.mtz")


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", required=True)
    p.add_argument("--seeds", type=int, nargs="+", default=[1, 2])
    args = p.parse_args(argv)
    data = simulate_laue(n_images=24, band=(0.6, 1.3), dmin=3.0, seed=1)
    spots, _, _ = write_laue(data, os.path.join(args.out, "laue"))
    table = reflection_spots(data)
    alone = table.index[table["single"] > 0]
    for seed in args.seeds:
        for command in ("poly", "mono"):
            merged = merge(command, spots, os.path.join(args.out, f"{command}{seed}", "m"), seed)
            everything, on_single = cc_anom(merged, data.truth), cc_anom(merged.loc[merged.index.intersection(alone)],
                                                                         data.truth)
            print(f"seed {seed} {command}: all pairs {everything[0]:.3f} ({everything[1]}), "
                  f"pairs seen on single spots {on_single[0]:.3f} ({on_single[1]})", flush=True)


if __name__ == "__main__":
    main()
