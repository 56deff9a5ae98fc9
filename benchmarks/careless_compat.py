"""careless 0.5.4's statistics scripts on careless_online's outputs, against careless_online's own commands.

Merges the shipped example (``examples/example.stream``) twice with this
checkout's careless_online (``--merge-half-datasets``, predictions on,
default column layout): once without and once with ``--anomalous``.  Then it
runs every careless statistics script of careless 0.5.4, installed in its own
virtual environment (``benchmarks/setup_competitors.sh`` makes
``/opt/bench/careless-venv``), on those files, and the matching
careless_online command on the same files, and compares the numbers shell by
shell (careless's bin ``b`` is careless_online's shell ``b + 1``: both make
equal-count shells from low to high resolution).

Each row of the table: the file, the careless script and flags, the
careless_online command and flags, the mean over shells (or images) of each
tool's value and the largest difference in a shell (or image).  A script that
fails is a row with its error.  careless's cchalf and isigi pick their
columns by name and by MTZ type, so they also check the layout.

Usage::

    python benchmarks/careless_compat.py [--iterations 300] [--careless-venv /opt/bench/careless-venv]

Writes ``benchmarks/results/careless_compat.json`` and prints a Markdown table.
"""

import argparse
import io
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from bench_util import bench_root, format_table, machine_info, quiet_env, write_results

#: The repository this script belongs to (its careless_online is the one benchmarked).
REPO = Path(__file__).resolve().parent.parent
#: Default virtual environment of careless 0.5.4.
CARELESS_VENV = "/opt/bench/careless-venv"
#: Resolution shells of every comparison.
BINS = 10


@dataclass
class Check:
    """One comparison: a careless script and a careless_online command on one output."""

    output: str
    careless: list
    ours: list
    compare: object
    note: str = ""


def parse_args(argv=None):
    """Command-line arguments."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--iterations", type=int, default=300, help="steps of each careless_online merge")
    parser.add_argument("--careless-venv", default=CARELESS_VENV, help="virtual environment of careless 0.5.4")
    parser.add_argument("--root", default=None, help="working folder (default: the benchmarks' root)")
    parser.add_argument("--reuse-merges", action="store_true",
                        help="compare the merges an earlier run left in the working folder")
    return parser.parse_args(argv)


def _env():
    """Environment of the subprocesses: this checkout first, no display, quiet TensorFlow."""
    return quiet_env({"PYTHONPATH": f"{REPO}{os.pathsep}{os.environ.get('PYTHONPATH', '')}", "MPLBACKEND": "Agg"})


def merge(folder, anomalous, iterations, reuse=False):
    """Merge the example with careless_online (unless ``reuse`` and its files are there); returns the output base."""
    base = folder / ("anomalous" if anomalous else "mono") / "hewl"
    if reuse and Path(f"{base}_xval_0.mtz").exists():
        return base
    base.parent.mkdir(parents=True, exist_ok=True)
    command = [sys.executable, "-c", "import sys; from careless_online.cli.main import main; sys.exit(main())",
               "mono", "--spacegroups", "P 43 21 2", "--iterations", str(iterations), "--merge-half-datasets",
               "--disable-progress-bar", "--seed", "1"] + (["--anomalous"] if anomalous else []) + [
               "dHKL,XDET,YDET,ewald_offset", str(REPO / "examples" / "example.stream"), str(base)]
    subprocess.run(command, check=True, env=_env(), stdout=subprocess.DEVNULL)
    return base


def run_csv(command, csv_path):
    """Run a statistics command that writes its table to ``csv_path``; returns (table, error)."""
    done = subprocess.run([*command, "-o", str(csv_path)], env=_env(), capture_output=True, text=True)
    if done.returncode != 0:
        lines = [line for line in done.stderr.strip().splitlines() if line.strip()]
        return None, lines[-1][:160] if lines else f"exit status {done.returncode}"
    return pd.read_csv(csv_path), None


def ours(name, *args):
    """A careless_online statistics command: its name and arguments (the file first)."""
    return [name, *map(str, args)]


def ours_command(name, args):
    """The command line running careless_online's statistics command ``name`` from this checkout."""
    module = f"careless_online.cli.{name}"
    return [sys.executable, "-c", f"import sys; from {module} import main; sys.exit(main())", *args]


def by_shell(careless_value, ours_value):
    """Compare careless's per-bin table with careless_online's shell table."""
    def compare(theirs, mine):
        rows = theirs.groupby("bin")[careless_value].mean()  # one repeat: the value itself
        mine = mine.set_index(mine.columns[0])
        shells = np.array([float(mine.loc[str(b + 1), ours_value]) for b in rows.index])
        return rows.to_numpy(dtype=float), shells
    return compare


def ccpred_split(split):
    """Compare careless.ccpred's Train/Test rows with careless_online's CCpred_train/test."""
    def compare(theirs, mine):
        rows = theirs[theirs["test"] == split.capitalize()].set_index("bin")["CCpred"]
        mine = mine.set_index(mine.columns[0])
        return rows.to_numpy(dtype=float), np.array([float(mine.loc[str(b + 1), f"CCpred_{split}"])
                                                     for b in rows.index])
    return compare


def per_image(theirs, mine):
    """Compare careless.image_ccpred's per-image CC (BATCH = image_id + 1) with careless_online's."""
    theirs = theirs.set_index(theirs["BATCH"] - 1)["CCpred"]
    mine = mine.set_index("image_id")["cc"].reindex(theirs.index)
    return theirs.to_numpy(dtype=float), mine.to_numpy(dtype=float)


def overall_completeness(careless_column, ours_column):
    """Compare the overall completeness of careless.completeness and careless_online.completeness."""
    def compare(theirs, mine):
        theirs = theirs.set_index(theirs.columns[0])
        mine = mine.set_index(mine.columns[0])
        return (np.array([float(theirs.loc["overall", careless_column])]),
                np.array([float(mine.loc["overall", ours_column])]))
    return compare


def read_completeness(path):
    """careless.completeness's CSV; for anomalous data it has two header rows (rs's column levels)."""
    table = pd.read_csv(path)
    if str(table.iloc[0, 0]) != "overall":
        table = pd.read_csv(path, header=[0, 1])
        table.columns = [b if a == "completeness" else a for a, b in table.columns]
    return table


#: The keys that make careless.isigi read an anomalous file.
ANOMALOUS_KEYS = ["--intensity-key", "I(+)", "--uncertainty-key", "SigI(+)"]


def checks(mono, anomalous):
    """The comparisons, for the merges at ``mono`` and ``anomalous`` (output bases)."""
    out = []
    for label, base in (("mono", mono), ("anomalous", anomalous)):
        xval, merged, predictions = (f"{base}_xval_0.mtz", f"{base}_0.mtz", f"{base}_predictions_0.mtz")
        out += [
            Check(f"{label} xval", ["cchalf", xval, "-m", "pearson", "-b", BINS],
                  ours("cchalf", xval, "--method", "pearson", "-b", BINS), by_shell("CChalf", "CC1/2_pearson"),
                  "intensities"),
            Check(f"{label} xval", ["cchalf", xval, "-m", "spearman", "-b", BINS],
                  ours("cchalf", xval, "--method", "spearman", "-b", BINS), by_shell("CChalf", "CC1/2_spearman"),
                  "intensities"),
            Check(f"{label} xval", ["cchalf", xval, "-m", "pearson", "--use-structure-factors", "-b", BINS],
                  ours("cchalf", xval, "--method", "pearson", "--use-structure-factors", "-b", BINS),
                  by_shell("CChalf", "CC1/2_pearson"), "amplitudes"),
            Check(f"{label} xval", ["rsplit", xval, "-b", BINS],
                  ours("rsplit", xval, "--use-structure-factors", "--fit-scale", "-b", BINS),
                  by_shell("Rsplit", "Rsplit"), "amplitudes, second half scaled"),
            Check(f"{label} predictions", ["ccpred", predictions, "-m", "pearson", "-b", BINS],
                  ours("ccpred", predictions, "--method", "pearson", "-b", BINS), ccpred_split("train"), "train"),
            Check(f"{label} predictions", ["ccpred", predictions, "-m", "pearson", "-b", BINS],
                  ours("ccpred", predictions, "--method", "pearson", "-b", BINS), ccpred_split("test"), "test"),
            Check(f"{label} predictions", ["image_ccpred", predictions, "-m", "spearman"],
                  ours("image_ccpred", predictions, "--method", "spearman"), per_image, "per image"),
        ]
    out += [
        Check("mono merged", ["isigi", f"{mono}_0.mtz", "-b", BINS], ours("isigi", f"{mono}_0.mtz", "-b", BINS),
              by_shell("I/sigI", "I/SIGI"), "first intensity and sigma columns"),
        Check("anomalous merged", ["isigi", f"{anomalous}_0.mtz", "-b", BINS], ours("isigi", f"{anomalous}_0.mtz"),
              None, "no intensity (J) column in an anomalous file: careless.isigi fails on careless's own too"),
        Check("anomalous merged", ["isigi", f"{anomalous}_0.mtz", "-b", BINS, *ANOMALOUS_KEYS],
              ours("isigi", f"{anomalous}_0.mtz", "-b", BINS, *ANOMALOUS_KEYS), by_shell("I/sigI", "I(+)/SigI(+)"),
              "I(+)/SigI(+), the keys careless.isigi needs on anomalous files"),
        Check("mono merged", ["completeness", f"{mono}_0.mtz", "-b", BINS],
              ours("completeness", f"{mono}_0.mtz", "-b", BINS), overall_completeness("non-anomalous", "completeness"),
              "overall"),
        Check("anomalous merged", ["completeness", f"{anomalous}_0.mtz", "-b", BINS],
              ours("completeness", f"{anomalous}_0.mtz", "-b", BINS),
              overall_completeness("anomalous", "completeness_anomalous"), "overall, both mates"),
        Check("anomalous xval", ["ccanom", f"{anomalous}_xval_0.mtz", "-m", "pearson", "-b", BINS],
              ours("ccanom", f"{anomalous}_xval_0.mtz", "--method", "pearson", "-b", BINS),
              by_shell("CCanom", "CCanom_pearson"), "F(+) - F(-), acentric"),
    ]
    return out


def evaluate(check, venv, folder, number):
    """One table row: both tools' mean value and their largest difference."""
    script, *args = check.careless
    theirs_csv, ours_csv = folder / f"careless_{number}.csv", folder / f"ours_{number}.csv"
    command = [str(Path(venv) / "bin" / f"careless.{script}"), *map(str, args)]
    theirs, error = run_csv(command, theirs_csv)
    if error is None and script == "completeness":
        theirs = read_completeness(theirs_csv)
    name, *our_args = check.ours
    mine, mine_error = run_csv(ours_command(name, our_args), ours_csv)
    row = {"file": check.output, "careless": " ".join(["careless." + script, *map(str, args[1:])]),
           "careless_online": " ".join([f"careless_online.{name}", *our_args[1:]]), "quantity": check.note}
    if error or mine_error or check.compare is None:
        row.update(careless_value="fails: " + error if error else "runs", careless_online_value=mine_error or "runs",
                   max_abs_difference="")
        return row
    a, b = check.compare(theirs, mine)
    finite = np.isfinite(a) & np.isfinite(b)
    row.update(careless_value=f"{np.mean(a[finite]):.4f}", careless_online_value=f"{np.mean(b[finite]):.4f}",
               max_abs_difference=f"{np.max(np.abs(a[finite] - b[finite])):.2g}" if finite.any() else "",
               compared=int(finite.sum()))
    return row


def main(argv=None):
    """Run the merges, the scripts and the comparison; print and save the table."""
    args = parse_args(argv)
    folder = bench_root(args.root) / "careless_compat"
    folder.mkdir(parents=True, exist_ok=True)
    mono = merge(folder, False, args.iterations, args.reuse_merges)
    anomalous = merge(folder, True, args.iterations, args.reuse_merges)
    rows = [evaluate(c, args.careless_venv, folder, i) for i, c in enumerate(checks(mono, anomalous))]
    columns = [("file", "file"), ("careless", "careless 0.5.4 script"), ("careless_online", "careless_online"),
               ("quantity", "quantity"), ("careless_value", "careless (mean)"),
               ("careless_online_value", "careless_online (mean)"), ("max_abs_difference", "max |diff|")]
    print(format_table(rows, columns))
    write_results("careless_compat", {"machine": machine_info(), "iterations": args.iterations, "rows": rows})


if __name__ == "__main__":
    main()
