"""How much a reference merge (``--structure-factor-file``) speeds up the next merge of the same crystal form.

One simulated crystal; its images are split in two runs of the "beamline": run A
is merged first (the reference), run B is merged with ``--iterations N`` for several
N, once from the prior (as usual) and once starting ``q(F)`` from A's merge.  The
figure of merit is the correlation of B's merged F with the true F (every
reflection B measured), so the table shows how many steps each start needs
to reach a given quality.

Usage::

    python benchmarks/structure_factor_start.py [--images 240] [--steps 25,50,100,200,400] [--root DIR]

Writes benchmarks/results/structure_factor_start.json and prints a table.
"""

import argparse
import os
import subprocess
import sys

import numpy as np
import reciprocalspaceship as rs

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_util import format_table, parse_list, quiet_env, write_results  # noqa: E402

from careless_online.simulate import simulate_to_files  # noqa: E402


def merge(inputs, base, steps, extra=()):
    """Run ``careless_online mono`` (dHKL metadata) and return the merged file."""
    cmd = [sys.executable, "-m", "careless_online.cli.main", "mono", "--disable-progress-bar", "--no-predictions",
           "--iterations", str(steps), *extra, "dHKL,XDET,YDET", inputs, base]
    subprocess.run(cmd, check=True, env=quiet_env(), stdout=subprocess.DEVNULL)
    return f"{base}_0.mtz"


def cc_to_truth(merged, truth):
    """Pearson CC of merged F with the true F over the reflections both have."""
    joined = rs.read_mtz(merged)[["F"]].join(truth[["F"]].rename(columns={"F": "FTRUE"}), how="inner")
    return float(np.corrcoef(joined["F"].to_numpy(float), joined["FTRUE"].to_numpy(float))[0, 1]), len(joined)


def split_runs(mtz, folder):
    """Write the first and second half of the images (by BATCH) as two unmerged files."""
    ds = rs.read_mtz(mtz)
    middle = np.median(np.unique(ds["BATCH"].to_numpy()))
    paths = {}
    for name, keep in (("A", ds["BATCH"].to_numpy() <= middle), ("B", ds["BATCH"].to_numpy() > middle)):
        paths[name] = os.path.join(folder, f"run_{name}.mtz")
        ds[keep].write_mtz(paths[name])
    return paths


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=240)
    parser.add_argument("--steps", default="25,50,100,200,400")
    parser.add_argument("--reference-steps", type=int, default=600)
    parser.add_argument("--root", default="/tmp/careless_online_sf_start")
    parser.add_argument("--reuse-reference", action="store_true",
                        help="keep run A's merge from an earlier call with the same --root")
    args = parser.parse_args(argv)
    os.makedirs(args.root, exist_ok=True)
    sim = simulate_to_files(os.path.join(args.root, "crystal"), n_images=args.images, seed=21, dmin=3.0,
                            formats=("mtz",))
    truth = rs.read_mtz(sim["truth"])
    runs = split_runs(sim["mtz"], args.root)
    reference = os.path.join(args.root, "out", "A_0.mtz")
    if not (args.reuse_reference and os.path.exists(reference)):
        reference = merge(runs["A"], os.path.join(args.root, "out", "A"), args.reference_steps)
    cc_ref, n_ref = cc_to_truth(reference, truth)
    rows = []
    for steps in parse_list(args.steps, int):
        row = {"steps": steps}
        for label, extra in (("prior", ()), ("file", ("--structure-factor-file", reference))):
            merged = merge(runs["B"], os.path.join(args.root, "out", f"B_{label}_{steps}"), steps, extra)
            row[f"cc_{label}"], row["n"] = cc_to_truth(merged, truth)
        rows.append(row)
        print(row, flush=True)
    print(f"reference (run A, {args.reference_steps} steps): CC to truth {cc_ref:.4f} over {n_ref} reflections")
    print(format_table(rows, [("steps", "steps"), ("cc_prior", "CC to truth, prior start"),
                              ("cc_file", "CC to truth, reference start"), ("n", "reflections")], digits=4))
    write_results("structure_factor_start", {"reference": {"steps": args.reference_steps, "cc": cc_ref, "n": n_ref},
                                             "rows": rows, "images": args.images})


if __name__ == "__main__":
    main()
