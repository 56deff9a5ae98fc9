"""Time-resolved pair: how well each way of merging a dark and a light dataset recovers ΔF.

Simulates a dark/light pair (:func:`careless_online.simulate.states.simulate_states`:
the light model moves ``--changed`` atoms by ``--shift`` Å at occupancy
``--occupancy``), writes both as CrystFEL streams and merges them with
``careless_online mono`` in these ways:

- ``naive``: the per-image-scale baseline, each dataset on its own
  (``--naive --separate-files``);
- ``separate``: two careless_online runs, one per stream (each its own scale
  network, each half of ``--iterations`` steps: the same steps in all and the
  same passes over each image as the joint runs);
- ``joint``: one run over both streams (``--separate-files``: one scale
  network, independent Wilson priors);
- ``joint r=R``: the same with the double-Wilson prior, dark the parent of
  light, ``r`` fixed at each value of ``--r``;
- ``joint learned r``: the same, ``r`` learned from the first ``--r``
  (``--optimize-double-wilson-r``);
- ``joint learned r in N shells``: the same with an ``r`` learned in each of
  ``N = --r-shells`` equal-count resolution shells (``--double-wilson-r-shells``);
  the learned ``r`` per shell is printed beside the ``r`` the truths imply in
  the same shells;
- ``careless r=R``: careless (the reference program, ``--careless``, e.g.
  the venv of ``benchmarks/setup_competitors.sh``) on the same two streams
  with its double-Wilson prior, ``r`` the last of ``--r``, for
  ``--careless-iterations`` steps (default ``--iterations``); its stream
  metadata keys are its own (:data:`CARELESS_KEYS`: careless offers no
  detector coordinates for streams).  Skipped, with a line, when the
  program is absent;
- ``truth``: the true amplitudes (the ceiling of the map figures).

For each, ``careless_online.difference``'s steps (common scale, ΔF, q-weights,
map with the dark model's phases) give: CC of ΔF and of the weighted ΔF to
the true ΔF, and the difference-map heights (σ) at the moved atoms' old
places (negative peaks) and new places (positive peaks).  Prints a Markdown
table and writes ``benchmarks/results/time_resolved_<date>.json``::

    python benchmarks/time_resolved.py --images 300 --iterations 2400 --r 0.9,0.99
"""

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from datetime import datetime, timezone
from functools import partial

import gemmi
import numpy as np
import pandas as pd
import reciprocalspaceship as rs

from careless_online.io.layout import to_internal
from careless_online.simulate.states import StateChange, implied_r, implied_r_per_shell, simulate_states, write_states
from careless_online.stats.difference import difference_table
from careless_online.stats.difference_map import atom_heights, difference_map, phases_from_model

HERE = os.path.dirname(os.path.abspath(__file__))
SPACEGROUP = "P 43 21 2"
KEYS = "dHKL,image_id,XDET,YDET,ewald_offset"
#: careless's metadata keys for the same streams (it reads no XDET/YDET from a stream).
CARELESS_KEYS = "dHKL,BATCH,s1x,s1y,s1z,ewald_offset"
CARELESS = "/opt/bench/careless-venv/bin/careless"


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=400, help="images per state")
    parser.add_argument("--dmin", type=float, default=3.0)
    parser.add_argument("--atoms", type=int, default=400)
    parser.add_argument("--changed", type=int, default=3)
    parser.add_argument("--shift", type=float, default=1.5)
    parser.add_argument("--occupancy", type=float, default=0.8)
    parser.add_argument("--iterations", type=int, default=2000)
    parser.add_argument("--r", default="0.9", help="comma-separated fixed double-Wilson r (the first: the start of "
                                                     "the learned r)")
    parser.add_argument("--r-shells", type=int, default=4, help="resolution shells of the per-shell learned r row")
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument("--folder", default="/tmp/careless_online_time_resolved")
    parser.add_argument("--only", default=None, help="comma-separated variants to run (default: all)")
    parser.add_argument("--careless", default=CARELESS, help="careless executable (absent: its row is skipped)")
    parser.add_argument("--careless-iterations", type=int, default=None,
                        help="careless's steps (default --iterations; choose them for a comparable wall time)")
    return parser.parse_args(argv)


def timed(command):
    """Run a command (output discarded); returns its wall time (s)."""
    start = time.perf_counter()
    subprocess.run(list(map(str, command)), check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


def mono(*args):
    """Run ``careless_online mono``; returns the wall time (s)."""
    return timed([sys.executable, "-m", "careless_online.cli.main", "mono", "--disable-progress-bar",
                  "--spacegroups", SPACEGROUP, *args])


def careless_variant(args, streams, out, r):
    """The careless double-Wilson row: ``{name: (run, (light.mtz, dark.mtz))}``, or {} if careless is absent."""
    if not os.access(args.careless, os.X_OK):
        print(f"careless not found at {args.careless}: its row is skipped", file=sys.stderr)
        return {}
    steps = args.careless_iterations or args.iterations
    command = [args.careless, "mono", "--separate-files", "--spacegroups", SPACEGROUP, "--iterations", steps,
               "--double-wilson-parents=None,0", f"--double-wilson-r=0.,{r}", CARELESS_KEYS, *streams,
               f"{out}/careless"]
    return {f"careless r={r:g}": (lambda: timed(command), (f"{out}/careless_1.mtz", f"{out}/careless_0.mtz"))}


def variants(args, streams, out):
    """Name -> (function running the merge and returning its wall time, (light.mtz, dark.mtz))."""
    options = ["--validation-frequency", max(1, args.iterations // 4), "--no-predictions", "--cache-dir",
               os.path.join(out, "cache")]
    common = ["--iterations", args.iterations, *options]
    half = ["--iterations", max(1, args.iterations // 2), *options]
    r_values = [float(r) for r in args.r.split(",")]

    def coupled(r):
        return ["--separate-files", "--double-wilson-parents=None,0", f"--double-wilson-r=0.,{r}"]

    fixed = {f"joint r={r:g}": (partial(lambda r: mono(*common, *coupled(r), KEYS, *streams, f"{out}/fixed_{r:g}"), r),
                                (f"{out}/fixed_{r:g}_1.mtz", f"{out}/fixed_{r:g}_0.mtz")) for r in r_values}
    return {
        "naive": (lambda: mono("--naive", "--separate-files", "--no-predictions", "--cache-dir",
                               os.path.join(out, "cache"), KEYS, *streams, f"{out}/naive"),
                  (f"{out}/naive_1.mtz", f"{out}/naive_0.mtz")),
        "separate": (lambda: mono(*half, KEYS, streams[0], f"{out}/sep_dark")
                     + mono(*half, KEYS, streams[1], f"{out}/sep_light"),
                     (f"{out}/sep_light_0.mtz", f"{out}/sep_dark_0.mtz")),
        "joint": (lambda: mono(*common, "--separate-files", KEYS, *streams, f"{out}/joint"),
                  (f"{out}/joint_1.mtz", f"{out}/joint_0.mtz")),
        **fixed,
        "joint learned r": (lambda: mono(*common, *coupled(r_values[0]), "--optimize-double-wilson-r", KEYS, *streams,
                                         f"{out}/learned"),
                            (f"{out}/learned_1.mtz", f"{out}/learned_0.mtz")),
        f"joint learned r in {args.r_shells} shells": (
            lambda: mono(*common, *coupled(r_values[0]), "--optimize-double-wilson-r", "--double-wilson-r-shells",
                         args.r_shells, KEYS, *streams, f"{out}/shells"),
            (f"{out}/shells_1.mtz", f"{out}/shells_0.mtz")),
        **careless_variant(args, streams, out, r_values[-1]),
    }


def read_merged(path):
    """A merged MTZ with ``F, SIGF`` (careless's column layout or the CCP4-style one, :mod:`careless_online.io.layout`)."""
    return to_internal(rs.read_mtz(path))


def positions(changed):
    """gemmi positions of the moved atoms' old and new places."""
    old = [gemmi.Position(*row) for row in changed[["x_old", "y_old", "z_old"]].to_numpy()]
    new = [gemmi.Position(*row) for row in changed[["x_new", "y_new", "z_new"]].to_numpy()]
    return old, new


def score(light, dark, truth, model, changed):
    """CC of DF and WDF to the true DF, and map heights at the old and new places."""
    table, _ = difference_table(light, dark)
    true_df = truth["DF"].reindex(table.index).to_numpy(dtype=float)
    keep = np.isfinite(true_df)
    cc = {c: float(np.corrcoef(table[c].to_numpy(dtype=float)[keep], true_df[keep])[0, 1]) for c in ("DF", "WDF")}
    grid = difference_map(table, phases_from_model(table, model), column="WDF")
    old, new = positions(changed)
    return {"reflections": int(len(table)), "cc_df": cc["DF"], "cc_wdf": cc["WDF"],
            "height_old": atom_heights(grid, old).tolist(), "height_new": atom_heights(grid, new).tolist()}


def truth_sets(states):
    """The true amplitudes as merged datasets (light, dark) with a tiny SIGF."""
    diff = states.difference
    out = []
    for column in ("F_LIGHT", "F_DARK"):
        ds = rs.DataSet({"F": diff[column].to_numpy(float), "SIGF": np.full(len(diff), 1e-3)}, index=diff.index,
                        cell=diff.cell, spacegroup=diff.spacegroup, merged=True)
        out.append(ds.astype({"F": "F", "SIGF": "Q"}))
    return out


def learned_r(out, base="learned"):
    """The learned r of the light dataset in each shell (None if the run is absent)."""
    from careless_online.model.build import load_model

    path = f"{out}/{base}_0.keras"
    return load_model(path).coupling.r_per_shell().numpy()[1].tolist() if os.path.exists(path) else None


def main(argv=None):
    args = parse_args(argv)
    os.makedirs(args.folder, exist_ok=True)
    change = StateChange(n_changed=args.changed, shift=args.shift, occupancy=args.occupancy)
    states = simulate_states(n_images=args.images, seed=args.seed, dmin=args.dmin, n_atoms=args.atoms, change=change)
    paths = write_states(states, os.path.join(args.folder, "tr"))
    streams = [paths["dark"]["stream"], paths["light"]["stream"]]
    model = gemmi.read_structure(paths["dark"]["model"])
    changed = pd.read_csv(paths["changed"])
    out = os.path.join(args.folder, "out")
    os.makedirs(out, exist_ok=True)
    rows = {"truth": {"wall_s": 0.0, **score(*truth_sets(states), states.difference, model, changed)}}
    wanted = None if args.only is None else set(args.only.split(","))
    for name, (run, (light, dark)) in variants(args, streams, out).items():
        if wanted is not None and name not in wanted:
            continue
        wall = run()
        rows[name] = {"wall_s": wall, **score(read_merged(light), read_merged(dark), states.difference, model,
                                              changed)}
        print(f"{name}: {rows[name]}", file=sys.stderr, flush=True)
    result = {
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"), "host": platform.node(),
        "command": "python benchmarks/time_resolved.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "settings": vars(args), "implied_r": implied_r(states.difference), "learned_r": (learned_r(out) or [None])[0],
        "implied_r_per_shell": implied_r_per_shell(states.difference, args.r_shells).tolist(),
        "learned_r_per_shell": learned_r(out, "shells"),
        "rows": rows,
    }
    print(f"implied r = {result['implied_r']:.4f}; learned r = {result['learned_r']}")
    print(f"per shell (low to high resolution): implied r = {result['implied_r_per_shell']}; "
          f"learned r = {result['learned_r_per_shell']}")
    print("| merge | CC(ΔF, true) | CC(wΔF, true) | map at old places (σ) | map at new places (σ) | wall s |")
    print("|---|---|---|---|---|---|")
    for name, row in rows.items():
        old = ", ".join(f"{h:+.1f}" for h in row["height_old"])
        new = ", ".join(f"{h:+.1f}" for h in row["height_new"])
        print(f"| {name} | {row['cc_df']:.3f} | {row['cc_wdf']:.3f} | {old} | {new} | {row['wall_s']:.0f} |")
    stamp = datetime.now(timezone.utc).strftime("%Y-%m-%d_%H%M")
    path = os.path.join(HERE, "results", f"time_resolved_{args.images}_{stamp}.json")
    with open(path, "w") as handle:
        json.dump(result, handle, indent=1)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
