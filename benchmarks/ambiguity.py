"""Indexing ambiguity: ``careless_online mono`` on data whose images were indexed in either setting.

Simulates a P 6₁ data set (a hexagonal cell, the benchmark datasets'
mosaicity and energy jitter), reindexes a fraction of the images by the
lattice's twin law and merges, from the command line:

- ``no flips``: the data before reindexing, default flags (the reference);
- ``default``: the reindexed data, **default flags** (``--reindexing-ops auto``:
  the model chooses every image's setting);
- ``none``: the reindexed data with ``--reindexing-ops none`` (as indexed);
- ``naive``: the reindexed data with ``--naive`` (as indexed, no model).

Every merge is compared with the truth in the global setting that fits it
best (a merge is written in its first image's setting,
:func:`careless_online.simulate.ambiguity.merged_correlations_to_truth`);
the per-image choices of ``default`` are read from its predictions file and
compared with the simulated settings.  With ``--oracle`` the choice is also
made offline (:func:`careless_online.ambiguity.resolve.resolve_settings`) and
merged with the simulator's true corrections, which measures the choice
alone.

Prints Markdown tables and writes ``benchmarks/results/ambiguity_<images>_<date>.json``::

    python benchmarks/ambiguity.py --images 2000
"""

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_util import bench_root, machine_info, machine_line, run_measured, tail, write_results  # noqa: E402

from careless_online.ambiguity.operators import candidate_operators  # noqa: E402
from careless_online.ambiguity.resolve import consistent_fraction  # noqa: E402

#: Metadata keys of every merge (those of the main benchmark).
METADATA = "dHKL,XDET,YDET,ewald_offset"

#: The command-line merges: name, data ("noflip" or "flip") and flags beyond the defaults.
MERGES = {"no flips": ("noflip", []), "default": ("flip", []),
          "none": ("flip", ["--reindexing-ops", "none"]), "naive": ("flip", ["--naive"])}


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=2000)
    parser.add_argument("--spacegroup", default="P 61")
    parser.add_argument("--cell", default="80,80,100,90,90,120")
    parser.add_argument("--dmin", type=float, default=2.0)
    parser.add_argument("--fraction", type=float, default=0.5, help="fraction of images reindexed")
    parser.add_argument("--seed", type=int, default=2024)
    parser.add_argument("--merges", default=",".join(MERGES), help="comma-separated names of the merges to run")
    parser.add_argument("--oracle", action="store_true",
                        help="also choose offline and merge with the true corrections (the choice alone)")
    parser.add_argument("--passes", type=int, default=2, help="passes of the offline choice (--oracle)")
    parser.add_argument("--timeout", type=float, default=3600.0, help="seconds allowed per merge")
    parser.add_argument("--mono-flags", default="",
                        help="flags added to every merge, for quick checks (e.g. '--iterations 100'); the figures "
                             "of the README use none")
    parser.add_argument("--root", default=None, help="working folder (default: the benchmarks' root)")
    return parser.parse_args(argv)


def simulate_files(args, folder):
    """The simulation, its reindexed copy (truth kept), both written as unmerged MTZ files."""
    from careless_online.simulate import simulate, write
    from careless_online.simulate.ambiguity import reindex_images

    cell = tuple(float(x) for x in args.cell.split(","))
    sim = simulate(n_images=args.images, seed=args.seed, dmin=args.dmin, spacegroup=args.spacegroup, cell=cell,
                   mosaicity=0.27, energy_jitter=0.002)
    operators = candidate_operators("auto", sim.cell, sim.spacegroup)
    flipped = reindex_images(sim, operators.triplets[1:], args.fraction, seed=args.seed)
    folder.mkdir(parents=True, exist_ok=True)
    files = {"noflip": write(sim, str(folder / "noflip"), formats=("mtz",))["mtz"],
             "flip": write(flipped, str(folder / "flip"), formats=("mtz",))["mtz"]}
    return sim, flipped, operators, files


def run_mono(name, data, flags, args, folder):
    """One ``careless_online mono`` run (default flags plus ``flags``); returns its measurement."""
    out = folder / name.replace(" ", "_")
    cmd = [sys.executable, "-m", "careless_online.cli.main", "mono", "--anomalous", "--dmin", str(args.dmin),
           "--disable-progress-bar", "--cache-dir", str(folder / "cache"), *args.mono_flags.split(), *flags, METADATA, data, str(out)]
    print(f"{name}: {' '.join(cmd[2:])}", flush=True)
    result = run_measured(cmd, folder / f"{out.name}.log", timeout_s=args.timeout)
    if result["rc"] != 0:
        print(tail(result["log"]))
        raise SystemExit(f"{name} failed (rc {result['rc']})")
    result["out"] = str(out)
    return result


def choices(out, flipped, operators):
    """Per-image choices of a merge (its predictions file) against the simulated settings."""
    import reciprocalspaceship as rs

    from careless_online.stats.settings import image_settings, setting_table

    per_image = image_settings(rs.read_mtz(f"{out}_predictions_0.mtz")).reset_index().sort_values("image_id")
    truth = flipped.images.sort_values("BATCH")["setting"].to_numpy()
    table = setting_table(per_image, operators.triplets)
    return {"consistent_fraction": consistent_fraction(per_image["setting"].to_numpy(), truth, operators,
                                                       operators.matrices[1:]),
            "settings": table.reset_index().to_dict(orient="records")}


def oracle_rows(sim, flipped, operators, args):
    """The offline choice merged with the true corrections (see the module docstring)."""
    from careless_online.ambiguity.resolve import resolve_settings
    from careless_online.io.reflections import ReflectionIndex, map_to_asu
    from careless_online.simulate.ambiguity import correlations_to_truth

    index = ReflectionIndex.from_cell(sim.cell, sim.spacegroup, args.dmin, anomalous=True)
    obs = flipped.observations.reset_index()
    ids = index.lookup(*map_to_asu(obs[["H", "K", "L"]].to_numpy(), sim.spacegroup))
    keep = ids >= 0
    start = time.perf_counter()
    result = resolve_settings(obs["BATCH"].to_numpy()[keep], obs["I"].to_numpy()[keep],
                              operators.reflection_table(index)[ids[keep]], len(index), passes=args.passes,
                              seed=args.seed)
    seconds = time.perf_counter() - start
    n = len(sim.images)
    rows = {"oracle, no flips": correlations_to_truth(sim, np.zeros(n, int), operators, args.dmin),
            "oracle, as indexed": correlations_to_truth(flipped, np.zeros(n, int), operators, args.dmin),
            "oracle, offline choice": correlations_to_truth(flipped, result["setting"], operators, args.dmin)}
    fraction = consistent_fraction(result["setting"], flipped.images["setting"].to_numpy(), operators,
                                   operators.matrices[1:])
    return rows, {"offline_choice_s": seconds, "offline_consistent_fraction": fraction}


def print_tables(rows, runs, choice, args):
    reference = rows.get("no flips") or next(iter(rows.values()))
    print(f"\n{args.images} images, {args.spacegroup}, {args.dmin} Å, {100 * args.fraction:.0f} % reindexed\n")
    print("| merge | flags | wall s | CC(F) | CC(anom) | % of no-flip CC(F) | % of no-flip CC(anom) |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for name, figures in rows.items():
        flags = " ".join(MERGES[name][1]) if name in MERGES else "—"
        wall = f"{runs[name]['wall_s']:.0f}" if name in runs else "—"
        print(f"| {name} | {flags or '(defaults)'} | {wall} | {figures['cc_f']:.4f} | {figures['cc_anom']:.4f} | "
              f"{100 * figures['cc_f'] / reference['cc_f']:.1f} | "
              f"{100 * figures['cc_anom'] / reference['cc_anom']:.1f} |")
    if choice:
        print(f"\nper-image choices of the default merge: {100 * choice['consistent_fraction']:.2f} % of the "
              "images in one setting\n")
        print("| setting | operator | images | fraction | median margin (SD) | median confidence | flagged ambiguous |")
        print("| --- | --- | --- | --- | --- | --- | --- |")
        for row in choice["settings"]:
            print(f"| {row['setting']} | {row['operator']} | {row['images']} | {row['fraction']:.3f} | "
                  f"{row['median_margin']:.1f} | {row['median_confidence']:.4f} | {row['ambiguous']} |")


def main(argv=None):
    import reciprocalspaceship as rs

    from careless_online.simulate.ambiguity import merged_correlations_to_truth

    args = parse_args(argv)
    folder = bench_root(args.root) / f"ambiguity_{args.images}"
    start = time.perf_counter()
    sim, flipped, operators, files = simulate_files(args, folder)
    print(f"{operators.reason}; simulated and written in {time.perf_counter() - start:.0f} s", flush=True)
    rows, runs, summary = {}, {}, {}
    for name in filter(None, (m.strip() for m in args.merges.split(","))):
        data, flags = MERGES[name]
        runs[name] = run_mono(name, files[data], flags, args, folder)
        rows[name] = merged_correlations_to_truth(rs.read_mtz(f"{runs[name]['out']}_0.mtz"), sim.truth, operators)
        print(f"{name}: {rows[name]} in {runs[name]['wall_s']:.0f} s", flush=True)
    choice = choices(runs["default"]["out"], flipped, operators) if "default" in runs else None
    if args.oracle:
        oracle, summary = oracle_rows(sim, flipped, operators, args)
        rows.update(oracle)
    print_tables(rows, runs, choice, args)
    machine = machine_info()
    print(f"\n{machine_line(machine)}")
    path = write_results(f"ambiguity_{args.images}", {
        "machine": machine, "options": vars(args),
        "operators": operators.to_config(), "merges": rows, "runs": runs, "choice": choice, "oracle": summary})
    print(f"written {path}")


if __name__ == "__main__":
    main()
