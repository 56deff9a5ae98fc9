"""Score existing robustness-matrix merges of candidate flags against the default, on the same data.

``robustness.py --extra-flags`` puts each candidate's merges in their own folder
(``careless_online_x<hash>``); this script measures every merge it finds for the
given configurations (oracle, naive, the default ``careless_online`` and each
candidate) with the matrix's own figures, the strongest reflections against the
oracle's merge, and prints the matrix table plus the low-resolution columns
(F/F_true per shell after B, SIGF rms z of the lowest shell)::

    python benchmarks/partiality_compare.py --root /tmp/rob --images 300 \\
        --configs thermolysin,lysozyme_se --candidates "--partiality-prior ewald"

Wall times come from each run's ``run.log.time`` (GNU time) when present.
"""

import argparse
import re
import shlex
from pathlib import Path

import numpy as np

from bench_util import format_table, machine_info, write_results
from robustness import TABLE, run_label
from robustness_configs import select
from robustness_figures import THRESHOLDS, measure, summarize

EXTRA = [("label", "run"), ("lowest_rms_z", "rms z lowest shell", 1), ("ratios_text", "F/Ftrue after B, low → high")]


def _wall(folder):
    path = Path(folder) / "run.log.time"
    if not path.exists():
        return None
    match = re.search(r"Elapsed \(wall clock\) time.*: (?:(\d+):)?(\d+):([\d.]+)", path.read_text())
    if not match:
        return None
    h, m, s = match.groups()
    return (int(h or 0) * 60 + int(m)) * 60 + float(s)


def score_config(config, args):
    """Rows of every merge found for one configuration."""
    info_paths = config.dataset(args.images, args.data_seed).paths(args.root)
    info = {"paths": {k: str(v) for k, v in info_paths.items()}}
    runs = Path(args.root) / "runs" / f"robust_{config.name}_{args.images}"
    oracle = runs / "oracle" / "merge_0.mtz"
    labels = [("oracle", "oracle", ""), ("naive", "naive", ""), ("careless_online", "careless_online", "default")]
    labels += [("careless_online", run_label("careless_online", tuple(shlex.split(c))), c) for c in args.candidates]
    rows = []
    for tool, label, flags in labels:
        merged = runs / label / "merge_0.mtz"
        if not merged.exists():
            continue
        row = measure(str(merged), info, config.elements, str(oracle) if tool != "oracle" and oracle.exists() else None)
        row.update(config=config.name, tool=tool, label=flags or tool, wall_s=_wall(runs / label))
        row["cc_F_shell_min"] = float(np.nanmin(row["cc_F_shells"]))
        row["strongest_max_err_pct"] = 100.0 * row["strongest_max_err"]
        row["lowest_rms_z"] = float(row["rms_z_shells"][0])
        row["ratios_text"] = " ".join(f"{r:.3f}" for r in row["shell_ratio_after_b"])
        rows.append(row)
    # summarize compares every careless_online row with the one oracle and naive row of the configuration
    return summarize(rows)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--root", required=True)
    p.add_argument("--images", type=int, default=300)
    p.add_argument("--data-seed", type=int, default=2024)
    p.add_argument("--configs", required=True)
    p.add_argument("--candidates", action="append", default=[], help="one candidate's extra flags (repeatable)")
    p.add_argument("--results-dir", default=None)
    p.add_argument("--name", default="partiality")
    args = p.parse_args(argv)
    rows = [row for config in select(args.configs) for row in score_config(config, args)]
    table = format_table(rows, TABLE[:2] + EXTRA[:1] + TABLE[2:-2] + EXTRA[1:])
    print(table)
    path = write_results(args.name, {"options": vars(args), "machine": machine_info(), "thresholds": THRESHOLDS,
                                     "rows": rows, "tables": {"matrix": table}}, results_dir=args.results_dir)
    print(f"\nwrote {path}")


if __name__ == "__main__":
    main()
