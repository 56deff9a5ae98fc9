"""Merge a benchmark dataset with several tools; time, memory and quality against the truth.

Each tool runs as a subprocess under ``/usr/bin/time -v`` (wall time, peak
RSS of the largest process) with a timeout; its merged MTZ is compared with
the simulator's truth using ``careless_online.stats.reference.cc_to_reference``
(CC of F, and of the anomalous differences F(+)-F(-) of acentric reflections,
overall and in the highest-resolution of 10 equal-count shells of the truth).

Step counts (``--steps``) and batch sizes (``--batch-size``) take one value for
all tools or ``tool=value`` pairs.  ``--budget-s S`` instead gives every tool
the same wall time: two short calibration runs per tool (``--calibration-steps``)
fit ``wall = overhead + steps * seconds_per_step`` and the final run uses the
steps that fit in S ("quality at equal wall time").

``--sweep-batch-sizes 1,8,32,128`` also times careless_online's training
steps by batch size from its history CSV (``elapsed_s`` at each evaluation
row; the slope between the first and last rows, so tracing and start-up are
excluded and the few small evaluations are included).

Usage::

    python benchmarks/run_merge.py quick --tools careless_online,naive,oracle,abismal,careless
    python benchmarks/run_merge.py 2k --tools careless_online,naive --steps careless_online=2000
    python benchmarks/run_merge.py 2k --budget-s 600 --tools careless_online,abismal,careless
    python benchmarks/run_merge.py quick --tools none --sweep-batch-sizes 1,8,32,128
"""

import argparse
import csv
import math
import shutil

from bench_util import (bench_root, format_table, machine_info, machine_line, parse_list, run_measured, tail,
                        write_results)
from datasets import ensure_dataset
from quality import merged_quality
from tools import RunSpec, abismal_epochs, get_tool, installed

#: Default gradient steps per tool when --steps does not say.
DEFAULT_STEPS = {"careless_online": 4000, "abismal": 300, "careless": 300}
#: Default images per step per tool when --batch-size does not say.
DEFAULT_BATCH = {"careless_online": 8, "abismal": 8}


def per_tool(text, cast, defaults):
    """Parse ``"v"`` or ``"tool=v,tool=v"`` into a dictionary over ``defaults``' tools.

    Parameters
    ----------
    text : str or None
    cast : callable
    defaults : dict

    Returns
    -------
    dict
    """
    out = dict(defaults)
    if not text:
        return out
    for item in parse_list(text):
        if "=" in item:
            name, value = item.split("=", 1)
            out[name.strip()] = cast(value)
        else:
            out = {name: cast(item) for name in set(defaults) | set(out)}
    return out


def run_dir(root, dataset, label):
    """A fresh output folder for one run."""
    out = bench_root(root) / "runs" / dataset / label
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    return out


def default_quality(merged, info):
    """:func:`quality.merged_quality` of a merged MTZ against the dataset's truth (and Se peaks)."""
    return merged_quality(merged, info["paths"]["truth"], model_path=info["paths"].get("model"))


def run_tool(tool, info, spec, root, label, timeout_s, quality=default_quality):
    """Run one merge and measure it.

    Parameters
    ----------
    tool : tools.Tool
    info : dict
        Dataset record of :func:`datasets.ensure_dataset`.
    spec : tools.RunSpec
    root : str or None
        Benchmark folder.
    label : str
        Name of the run (its output folder).
    timeout_s : float or None
    quality : callable, optional
        ``(merged_path, info) -> dict`` of figures; :func:`default_quality` by default.

    Returns
    -------
    dict
        Run record: tool, steps, batch size, wall, peak RSS, return code,
        quality figures (or ``error``).
    """
    out = run_dir(root, info["name"], label)
    try:
        cmd = tool.command(info, out, spec)
    except ValueError as err:  # the dataset lacks what the tool reads (e.g. no MTZ for the oracle or careless)
        print(f"[merge] {label}: skipped: {err}", flush=True)
        return {"tool": tool.name, "label": label, "error": str(err)}
    print(f"[merge] {label}: {' '.join(cmd)}", flush=True)
    run = run_measured(cmd, out / "run.log", timeout_s=timeout_s)
    steps = spec.steps
    if tool.name == "abismal" and steps is not None:
        epochs, per_epoch = abismal_epochs(steps)
        steps = epochs * per_epoch
    row = {"tool": tool.name, "label": label, "steps": steps if tool.iterative else None,
           "batch_size": spec.batch_size if tool.batched else ("all" if tool.name == "careless" else None),
           "test_fraction": spec.test_fraction, **run}
    if run["timed_out"]:
        row["error"] = f"did not finish in {timeout_s / 60:.0f} min"
    elif run["rc"] != 0:
        row["error"] = f"exit status {run['rc']}: " + tail(run["log"], 6).strip().splitlines()[-1][:200]
    else:
        merged = tool.merged(out)
        row["merged"] = str(merged)
        try:
            row.update(quality(merged, info))
        except (OSError, KeyError, ValueError) as err:
            row["error"] = f"quality: {err.__class__.__name__}: {err}"
    row.update(history_timing(tool.history(out)))
    if row.get("ms_per_step") and tool.batched and spec.batch_size:
        row["images_per_s"] = spec.batch_size * 1000.0 / row["ms_per_step"]
    status = row.get("error") or f"CC {row['cc_F']:.3f} / anom {row['cc_anom']:.3f}"
    print(f"[merge] {label}: {run['wall_s']:.0f} s, {row.get('peak_rss_mb') or float('nan'):.0f} MiB, "
          f"{status}", flush=True)
    return row


def history_timing(path):
    """Training time per step from a careless_online history CSV (``step``, ``elapsed_s``).

    Returns
    -------
    dict
        ``ms_per_step`` and ``train_s`` (elapsed at the last row), or nothing
        when the file lacks the columns or has fewer than two rows.
    """
    try:
        with open(path) as handle:
            rows = [r for r in csv.DictReader(handle) if r.get("elapsed_s") not in (None, "")]
    except OSError:
        return {}
    if len(rows) < 2:
        return {"train_s": float(rows[-1]["elapsed_s"])} if rows else {}
    first, last = rows[0], rows[-1]
    steps = int(last["step"]) - int(first["step"])
    seconds = float(last["elapsed_s"]) - float(first["elapsed_s"])
    return {"ms_per_step": 1000.0 * seconds / steps, "train_s": float(last["elapsed_s"]),
            "history_rows": len(rows)}


def calibrate(tool, info, base_spec, root, calibration_steps, timeout_s):
    """Fit ``wall = overhead + steps * s_per_step`` from two short runs of a tool.

    Returns
    -------
    dict
        ``s_per_step``, ``overhead_s`` and the two runs (``runs``).
    """
    runs = []
    for n in calibration_steps:
        spec = RunSpec(steps=n, batch_size=base_spec.batch_size, seed=base_spec.seed,
                       test_fraction=base_spec.test_fraction)
        runs.append(run_tool(tool, info, spec, root, f"{tool.name}_calibrate_{n}", timeout_s))
    ok = [r for r in runs if r.get("rc") == 0]
    if len(ok) < 2:
        return {"runs": runs, "error": "calibration run failed"}
    (n1, w1), (n2, w2) = [(r["steps"], r["wall_s"]) for r in ok]
    per_step = max((w2 - w1) / (n2 - n1), 1e-6)
    return {"runs": runs, "s_per_step": per_step, "overhead_s": max(w1 - n1 * per_step, 0.0)}


def budget_steps(calibration, budget_s):
    """Steps fitting in ``budget_s`` by a calibration (None if none fit)."""
    steps = math.floor((budget_s - calibration["overhead_s"]) / calibration["s_per_step"])
    return steps if steps >= 1 else None


def merge_all(info, tool_names, steps, batches, args):
    """Run every tool once (or calibrate and run in the budget); returns rows and calibrations."""
    rows, calibrations = [], {}
    for name in tool_names:
        tool = get_tool(name)
        if not installed(tool):
            rows.append({"tool": name, "error": "not installed (run benchmarks/setup_competitors.sh)"})
            continue
        spec = RunSpec(steps=steps.get(name) if tool.iterative else None,
                       batch_size=batches.get(name) if tool.batched else None,
                       seed=args.seed, test_fraction=args.test_fraction)
        if args.budget_s and tool.iterative:
            cal = calibrate(tool, info, spec, args.root, parse_list(args.calibration_steps, int), args.timeout)
            calibrations[name] = cal
            n = budget_steps(cal, args.budget_s) if "error" not in cal else None
            if n is None:
                rows.append({"tool": name, "error": cal.get("error") or
                             f"start-up ({cal['overhead_s']:.0f} s) exceeds the {args.budget_s:.0f} s budget"})
                continue
            spec = RunSpec(steps=n, batch_size=spec.batch_size, seed=spec.seed, test_fraction=spec.test_fraction)
        label = name + (f"_s{spec.steps}" if tool.iterative else "") + (
            f"_b{spec.batch_size}" if tool.batched and spec.batch_size else "")
        rows.append(run_tool(tool, info, spec, args.root, label, args.timeout))
    return rows, calibrations


def batch_sweep(info, sizes, args):
    """Time careless_online's steps for each batch size (short runs, few evaluations)."""
    tool = get_tool("careless_online")
    rows = []
    for b in sizes:
        spec = RunSpec(steps=args.sweep_steps, batch_size=b, seed=args.seed, test_fraction=args.test_fraction)
        label = f"sweep_b{b}"
        out = run_dir(args.root, info["name"], label)
        every = max(args.sweep_steps // 4, 1)
        cmd = tool.command(info, out, spec)
        cmd[-3:-3] = ["--validation-frequency", str(every), "--validation-images", "16",
                      "--no-predictions", "--checkpoint-interval", str(10 * args.sweep_steps)]
        print(f"[sweep] batch {b}: {' '.join(cmd)}", flush=True)
        run = run_measured(cmd, out / "run.log", timeout_s=args.timeout)
        row = {"tool": "careless_online", "batch_size": b, "steps": args.sweep_steps, **run,
               **history_timing(tool.history(out))}
        if row.get("ms_per_step"):
            row["images_per_s"] = b * 1000.0 / row["ms_per_step"]
        elif run["timed_out"]:
            row["error"] = f"did not finish in {args.timeout / 60:.0f} min"
        else:
            row["error"] = tail(run["log"], 3).strip()[-200:]
        print(f"[sweep] batch {b}: {row.get('ms_per_step') or float('nan'):.1f} ms/step, "
              f"{row.get('images_per_s') or float('nan'):.1f} images/s", flush=True)
        rows.append(row)
    return rows


#: Figures given as a percentage of the oracle's: (figure, column of the percentage).
ORACLE_PERCENT = (("cc_F", "cc_F_pct_oracle"), ("cc_anom", "cc_anom_pct_oracle"), ("se_peak", "se_peak_pct_oracle"))

MERGE_TABLE = [("tool", "tool"), ("steps", "steps"), ("batch_size", "batch"), ("wall_s", "wall s", 0),
               ("peak_rss_mb", "peak RSS MiB", 0), ("ms_per_step", "ms/step", 1), ("images_per_s", "images/s", 0),
               ("cc_F", "CC(F)"), ("cc_F_pct_oracle", "% oracle", 1), ("cc_F_high", "CC(F) high"),
               ("cc_anom", "CCanom"), ("cc_anom_pct_oracle", "% oracle", 1), ("cc_anom_high", "CCanom high"),
               ("se_peak", "Se peak σ", 1), ("se_peak_pct_oracle", "% oracle", 1), ("other_peak", "next peak σ", 1),
               ("ratio_flat_pct", "F/Ftrue flat ±%", 1), ("rms_z", "rms z", 1), ("error", "note")]


def add_oracle_percentages(rows):
    """Add each row's CC(F), CCanom and Se peak as a percentage of the oracle row's (if there is one)."""
    oracle = next((r for r in rows if r.get("tool") == "oracle" and "error" not in r), None)
    if oracle is None:
        return rows
    for row in rows:
        for figure, column in ORACLE_PERCENT:
            if row.get(figure) is not None and oracle.get(figure):
                row[column] = 100.0 * row[figure] / oracle[figure]
    return rows
SWEEP_TABLE = [("batch_size", "batch images"), ("steps", "steps"), ("ms_per_step", "ms/step", 1),
               ("images_per_s", "images/s", 1), ("wall_s", "wall s", 0), ("peak_rss_mb", "peak RSS MiB", 0),
               ("error", "note")]


def build_parser():
    """Command-line options of run_merge.py."""
    p = argparse.ArgumentParser(description="Merge a benchmark dataset with several tools and compare.",
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("dataset", help="dataset name (see datasets.py: quick, 2k, 20k)")
    p.add_argument("--tools", default="careless_online,naive,oracle,abismal,careless",
                   help="comma-separated tools among careless_online, naive, oracle, abismal, careless "
                        "('none': skip)")
    p.add_argument("--steps", default=None,
                   help="gradient steps: one number or tool=N pairs (defaults: "
                        + ", ".join(f"{k}={v}" for k, v in DEFAULT_STEPS.items()) + ")")
    p.add_argument("--batch-size", default=None,
                   help="images per step: one number or tool=N pairs (defaults: "
                        + ", ".join(f"{k}={v}" for k, v in DEFAULT_BATCH.items()) + "; careless is full-batch)")
    p.add_argument("--budget-s", type=float, default=None,
                   help="equal wall-time budget per tool (s): calibrate, then run the steps that fit")
    p.add_argument("--calibration-steps", default="10,30", help="the two step counts of the calibration runs")
    p.add_argument("--timeout", type=float, default=900.0, help="seconds before a run is stopped")
    p.add_argument("--seed", type=int, default=1, help="seed given to every tool that takes one")
    p.add_argument("--test-fraction", type=float, default=None,
                   help="held-out image fraction for every tool (default: each tool's own)")
    p.add_argument("--sweep-batch-sizes", default=None,
                   help="also time careless_online by batch size, e.g. 1,8,32,128")
    p.add_argument("--sweep-steps", type=int, default=200, help="steps of each sweep run")
    p.add_argument("--root", default=None, help="benchmark folder (default $CARELESS_ONLINE_BENCH "
                                                "or /tmp/careless_online_bench)")
    p.add_argument("--no-json", action="store_true", help="do not write a results file")
    return p


def main(argv=None):
    """Run the merge benchmark."""
    args = build_parser().parse_args(argv)
    info = ensure_dataset(args.dataset, args.root)
    tool_names = [] if args.tools == "none" else parse_list(args.tools)
    for name in tool_names:
        get_tool(name)
    steps = per_tool(args.steps, int, DEFAULT_STEPS)
    batches = per_tool(args.batch_size, int, DEFAULT_BATCH)
    rows, calibrations = merge_all(info, tool_names, steps, batches, args)
    add_oracle_percentages(rows)
    sweep = batch_sweep(info, parse_list(args.sweep_batch_sizes, int), args) if args.sweep_batch_sizes else []
    machine = machine_info()
    print(f"\nDataset {info['name']}: {info['n_images']} images, {info['spacegroup']}, dmin {info['dmin']} A")
    print(f"Machine: {machine_line(machine)}\n")
    tables = {}
    if rows:
        tables["merge"] = format_table(rows, MERGE_TABLE)
        print(tables["merge"])
    if sweep:
        tables["sweep"] = format_table(sweep, SWEEP_TABLE)
        print("\ncareless_online by batch size:\n")
        print(tables["sweep"])
    if not args.no_json:
        path = write_results(args.dataset, {
            "dataset": {k: info[k] for k in ("name", "n_images", "spacegroup", "dmin", "paths")},
            "machine": machine, "options": vars(args), "rows": rows, "calibrations": calibrations,
            "sweep": sweep, "tables": tables})
        print(f"\nwrote {path}")


if __name__ == "__main__":
    main()
