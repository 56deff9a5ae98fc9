"""The robustness matrix: default flags on simulated crystals that differ in what matters (issue 20).

For each configuration of ``robustness_configs.py`` the data are simulated once
(cached under ``$CARELESS_ONLINE_BENCH/data/robust_<config>_<images>/``, as
``datasets.py`` does) and merged by the exact-correction oracle, ``careless_online
mono --naive`` and ``careless_online mono`` with default flags (metadata
``dHKL,XDET,YDET,ewald_offset``, anomalous, as ``tools.py`` runs them); each
merge is measured by ``robustness_figures.py`` and judged against the
done-when thresholds of issue 20.  One Markdown table (one row per
configuration and tool) is printed and the rows, with every per-shell figure,
are written to ``benchmarks/results/robustness_<date>.json``.

Usage::

    python benchmarks/robustness.py                          # all configurations, 2,000 images each
    python benchmarks/robustness.py --images 300 --iterations 1500 --configs thermolysin,lysozyme_se
    python benchmarks/robustness.py --extra-flags "--some-flag 1"   # a candidate default on the whole matrix
    python benchmarks/robustness.py --list                   # the configurations and their simulator commands
"""

import argparse
import hashlib
import shlex
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pandas as pd
import reciprocalspaceship as rs

from bench_util import format_table, machine_info, machine_line, parse_list, write_results
from datasets import ensure_dataset
from robustness_configs import CONFIGS, select
from robustness_figures import THRESHOLDS, measure, summarize
from run_merge import run_tool
from tools import RunSpec, get_tool

#: Tools of the matrix; the oracle runs first (the strongest reflections are compared with it).
DEFAULT_TOOLS = ("oracle", "naive", "careless_online")

TABLE = [("config", "config"), ("tool", "tool"), ("wall_s", "wall s", 0), ("cc_F", "CC(F)"),
         ("cc_F_shell_min", "CC(F) worst shell"), ("cc_F_shell_margin", "worst shell − naive"),
         ("cc_anom", "CCanom"), ("cc_anom_pct_oracle", "% oracle", 1), ("peaks_text", "peaks % oracle"),
         ("strongest_max_err_pct", "20 strongest max err %", 1),
         ("ratio_flat_after_b_pct", "F/Ftrue flat ±% (after B)", 1), ("rms_z_max", "SIGF rms z max shell", 1),
         ("median_abs_z_max", "median |z| max shell", 1), ("verdict", "verdict"), ("error", "note")]

CONFIG_TABLE = [("config", "config"), ("spacegroup", "space group"), ("cell", "cell"), ("dmin", "dmin", 1),
                ("observations", "observations"), ("per_image", "per image", 0),
                ("strongest_i_over_mean", "strongest I/<I>", 0), ("about", "what it varies")]


def ordered_tools(names):
    """Tool names with the oracle first (others keep their order); KeyError for an unknown one."""
    for name in names:
        get_tool(name)
    return sorted(names, key=lambda n: n != "oracle")


def run_label(name, extra):
    """Output folder name of a tool's run; extra flags give their own folder."""
    if not extra or name != "careless_online":
        return name
    return f"{name}_x{hashlib.sha1(' '.join(extra).encode()).hexdigest()[:8]}"


def dataset_facts(config, info):
    """Size of a configuration's data and how strong its strongest reflection is."""
    images = pd.read_csv(info["paths"]["stream"][: -len(".stream")] + "_images.csv")
    intensity = rs.read_mtz(info["paths"]["truth"])["F"].to_numpy(dtype=float) ** 2
    n_obs = int(images["n_reflections"].sum())
    return {"config": config.name, "about": config.about, "spacegroup": config.spacegroup,
            "cell": " ".join(f"{v:g}" for v in config.cell[:3]), "dmin": config.dmin,
            "elements": config.elements, "images": len(images), "observations": n_obs,
            "per_image": n_obs / len(images), "strongest_i_over_mean": float(intensity.max() / intensity.mean()),
            "simulation": info["simulation"].get("cmd")}


def run_config(config, args, log=print):
    """Simulate (or find) one configuration's data and merge it with every tool.

    Returns
    -------
    (list of dict, dict)
        The summarized rows (see :func:`robustness_figures.summarize`) and
        :func:`dataset_facts`.
    """
    info = ensure_dataset(config.dataset(args.images, args.data_seed), args.root, log=log)
    extra = tuple(shlex.split(args.extra_flags or ""))
    rows, oracle_path = [], None
    for name in ordered_tools(parse_list(args.tools)):
        tool = get_tool(name)
        spec = RunSpec(steps=args.iterations if tool.iterative else None, seed=args.seed, extra=extra)

        def quality(merged, info, reference=oracle_path):
            return measure(merged, info, config.elements, reference)

        row = run_tool(tool, info, spec, args.root, run_label(name, extra), args.timeout, quality=quality)
        if name == "oracle" and "error" not in row:
            oracle_path = row["merged"]
        row["config"] = config.name
        if "cc_F_shells" in row:
            row["cc_F_shell_min"] = float(np.nanmin(row["cc_F_shells"]))
            row["strongest_max_err_pct"] = 100.0 * row["strongest_max_err"]
        rows.append(row)
    return summarize(rows), dataset_facts(config, info)


def run_matrix(configs, args, log=print):
    """Run :func:`run_config` for each configuration, ``args.jobs`` at a time.

    Returns
    -------
    (list of dict, list of dict)
        All rows (configuration order, then tool order) and the dataset facts.
    """
    with ThreadPoolExecutor(max_workers=max(1, args.jobs)) as pool:
        results = list(pool.map(lambda c: run_config(c, args, log), configs))
    return [row for rows, _ in results for row in rows], [facts for _, facts in results]


def build_parser():
    """Command-line options of robustness.py."""
    p = argparse.ArgumentParser(description="Run the robustness matrix (issue 20): oracle, naive and "
                                            "careless_online with default flags on simulated crystals.",
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--images", type=int, default=2000, help="images per configuration")
    p.add_argument("--iterations", type=int, default=None,
                   help="careless_online gradient steps (default: its own default)")
    p.add_argument("--configs", default=None, help=f"comma-separated subset of {', '.join(CONFIGS)}")
    p.add_argument("--tools", default=",".join(DEFAULT_TOOLS),
                   help="comma-separated tools (see tools.py); the oracle runs first")
    p.add_argument("--extra-flags", default="",
                   help="further careless_online mono flags, quoted as one string (not for --naive)")
    p.add_argument("--jobs", type=int, default=1, help="configurations run at once")
    p.add_argument("--timeout", type=float, default=3600.0, help="seconds before a merge is stopped")
    p.add_argument("--seed", type=int, default=1, help="seed of the merges")
    p.add_argument("--data-seed", type=int, default=2024, help="seed of the simulations")
    p.add_argument("--root", default=None, help="benchmark folder (default $CARELESS_ONLINE_BENCH "
                                                "or /tmp/careless_online_bench)")
    p.add_argument("--results-dir", default=None, help="folder of the JSON results (default benchmarks/results)")
    p.add_argument("--no-json", action="store_true", help="do not write a results file")
    p.add_argument("--list", action="store_true", help="print the configurations and their simulator commands")
    return p


def print_list(configs, args):
    """The configurations and the simulator command of each."""
    for config in configs:
        command = " ".join(shlex.quote(c) for c in config.dataset(args.images, args.data_seed).command(args.root))
        print(f"{config.name}: {config.about}\n    {command}\n")


def report(rows, facts, args, log=print):
    """Print the tables and write the JSON; returns the tables."""
    tables = {"configs": format_table(facts, CONFIG_TABLE), "matrix": format_table(rows, TABLE)}
    machine = machine_info()
    log(f"\nRobustness matrix: {args.images} images per configuration; machine: {machine_line(machine)}")
    log(f"Thresholds (issue 20): {THRESHOLDS}\n\n{tables['configs']}\n\n{tables['matrix']}")
    if not args.no_json:
        path = write_results("robustness", {"options": vars(args), "machine": machine, "thresholds": THRESHOLDS,
                                            "configs": facts, "rows": rows, "tables": tables},
                             results_dir=args.results_dir)
        log(f"\nwrote {path}")
    return tables


def main(argv=None):
    """Run the robustness matrix."""
    args = build_parser().parse_args(argv)
    try:
        configs = select(args.configs)
        ordered_tools(parse_list(args.tools))
    except KeyError as err:
        raise SystemExit(f"error: {err.args[0]}") from None
    if args.list:
        print_list(configs, args)
        return
    rows, facts = run_matrix(configs, args)
    report(rows, facts, args)


if __name__ == "__main__":
    main()
