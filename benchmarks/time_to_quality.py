"""Quality against wall time: careless_online with several step counts, beside the oracle and naive.

Each step count is a separate merge (the learning-rate decay ends with the
run, so a run of N steps is what a user stopping at N gets).  The table gives
steps, epochs (passes over the training images), wall and training time, and
the quality figures of ``run_merge.py`` with CC(F), CCanom and Se peak height
as percentages of the oracle's.

Usage::

    python benchmarks/time_to_quality.py quick --steps 250,500,1000,2000,4000
    python benchmarks/time_to_quality.py 2k --steps 1000,2000,4000 --batch-size 8
"""

import argparse

from bench_util import format_table, machine_info, machine_line, parse_list, write_results
from datasets import ensure_dataset
from run_merge import add_oracle_percentages, run_tool
from tools import RunSpec, get_tool

TABLE = [("tool", "tool"), ("steps", "steps"), ("epochs", "epochs", 1), ("wall_s", "wall s", 0),
         ("train_s", "train s", 0), ("cc_F", "CC(F)"), ("cc_F_pct_oracle", "% oracle", 1), ("cc_anom", "CCanom"),
         ("cc_anom_pct_oracle", "% oracle", 1), ("se_peak", "Se peak σ", 1), ("se_peak_pct_oracle", "% oracle", 1),
         ("ratio_flat_pct", "F/Ftrue flat ±%", 1), ("rms_z", "rms z", 1), ("error", "note")]


def main(argv=None):
    """Run the oracle, naive and careless_online at each step count; print and store the table."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("dataset", help="dataset name (see datasets.py)")
    p.add_argument("--steps", default="500,1000,2000,4000", help="careless_online step counts")
    p.add_argument("--batch-size", type=int, default=8, help="images per step")
    p.add_argument("--test-fraction", type=float, default=0.1, help="held-out image fraction")
    p.add_argument("--timeout", type=float, default=1800.0, help="seconds before a run is stopped")
    p.add_argument("--baselines", default="oracle,naive", help="tools run once beside (the oracle gives the %%)")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--root", default=None, help="benchmark folder")
    args = p.parse_args(argv)
    info = ensure_dataset(args.dataset, args.root)
    rows = [run_tool(get_tool(name), info, RunSpec(seed=args.seed), args.root, name, args.timeout)
            for name in parse_list(args.baselines)]
    train_images = info["n_images"] * (1 - args.test_fraction)
    for steps in parse_list(args.steps, int):
        spec = RunSpec(steps=steps, batch_size=args.batch_size, seed=args.seed, test_fraction=args.test_fraction)
        row = run_tool(get_tool("careless_online"), info, spec, args.root, f"ttq_s{steps}_b{args.batch_size}",
                       args.timeout)
        row["epochs"] = steps * args.batch_size / train_images
        rows.append(row)
    add_oracle_percentages(rows)
    machine = machine_info()
    table = format_table(rows, TABLE)
    print(f"\nDataset {info['name']}: {info['n_images']} images; machine: {machine_line(machine)}\n\n{table}")
    path = write_results(f"ttq_{args.dataset}", {"dataset": info["name"], "machine": machine,
                                                  "options": vars(args), "rows": rows, "tables": {"ttq": table}})
    print(f"\nwrote {path}")


if __name__ == "__main__":
    main()
