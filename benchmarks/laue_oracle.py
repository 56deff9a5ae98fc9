"""Laue benchmark: ``careless_online poly`` against the Laue oracle and careless 0.5.4 ``poly`` at equal wall time.

Simulates a thermolysin-like pink-beam set (P 6_1 2 2, 93.9 x 131.4 A,
2,400 atoms with Zn, Ca and S as anomalous scatterers, 2 A, a 1.0-1.2 A
band: about 9,800 spots per image), merges it

- ``oracle``: every hidden correction divided out, harmonic spots
  deconvolved (:mod:`careless_online.simulate.laue_oracle`);
- ``careless_online poly``: default flags, ``--steps`` steps of ``--batch-size`` images;
- ``careless poly`` (0.5.4, its own venv), full-batch, as many iterations as
  fit in the wall time of the ``careless_online`` run (the rate measured in a
  short probe run, from careless's progress bar);

and prints CC(F), CCanom, the mean anomalous-map height at the Zn, Ca and S
atoms, images/s and peak memory (GNU time).  Each merge runs as its own
process; the files stay under ``--out``.

Usage::

    python benchmarks/laue_oracle.py --images 40 --steps 1000 --out /tmp/laue_oracle
"""

import argparse
import json
import os
import pickle
import re
import sys
from pathlib import Path

import reciprocalspaceship as rs

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from bench_util import run_measured  # noqa: E402
from quality import peak_heights  # noqa: E402
from tools import VENV_PREFIX  # noqa: E402

from careless_online.io.layout import to_internal  # noqa: E402
from careless_online.io.writers import write_mtz  # noqa: E402
from careless_online.simulate.laue import simulate_laue, write_laue  # noqa: E402
from careless_online.simulate.laue_oracle import laue_oracle_merge  # noqa: E402
from careless_online.simulate.laue_scores import cc_anom, cc_f  # noqa: E402

#: The thermolysin-like crystal of issue #25.
THERMOLYSIN = dict(cell=(93.9, 93.9, 131.4, 90.0, 90.0, 120.0), spacegroup="P 61 2 2", n_atoms=2400,
                   anomalous_atoms="Zn:1,Ca:4,S:4", dmin=2.0, band=(1.0, 1.2))
ELEMENTS = "Zn,Ca,S"
KEYS = "dHKL,Wavelength"
#: Iterations of careless's probe run (its rate per iteration).
PROBE_ITERATIONS = 20


def simulated(folder, images, seed):
    """The simulated set (pickled in ``folder`` and reused) and its spots file."""
    cached = folder / f"laue_{images}_{seed}.pkl"
    if cached.exists():
        data = pickle.loads(cached.read_bytes())
    else:
        data = simulate_laue(n_images=images, seed=seed, **THERMOLYSIN)
        cached.write_bytes(pickle.dumps(data))
    spots, _, _ = write_laue(data, str(folder / "laue"))
    return data, spots


def careless_online_poly(spots, out, args):
    """Run ``careless_online poly`` with default flags; the measured run (:func:`run_measured`)."""
    cmd = [sys.executable, "-m", "careless_online.cli.main", "poly", "--anomalous", "--disable-gpu",
           "--disable-progress-bar", "--no-predictions", "--iterations", str(args.steps), "--batch-size",
           str(args.batch_size), "--seed", str(args.seed), KEYS, spots, str(out / "merge")]
    return run_measured(cmd, out / "log.txt")


def careless_poly(spots, out, iterations, band):
    """Run careless 0.5.4 ``poly`` (progress bar on: its rate is read from the log)."""
    cmd = [str(VENV_PREFIX / "careless-venv" / "bin" / "careless"), "poly", "--anomalous", "--disable-gpu",
           "--iterations", str(iterations), "--wavelength-key", "Wavelength", "--wavelength-range",
           str(band[0]), str(band[1]), KEYS, spots, str(out / "merge")]
    return run_measured(cmd, out / "log.txt")


def iterations_per_second(log):
    """The last rate careless's progress bar printed (``it/s`` or ``s/it``)."""
    rates = re.findall(r"([0-9.]+)(it/s|s/it)", Path(log).read_text(errors="replace"))
    value, unit = rates[-1]
    return float(value) if unit == "it/s" else 1.0 / float(value)


def equal_wall_iterations(spots, folder, wall, band):
    """careless iterations that fill ``wall`` seconds: a probe run gives its start-up time and rate."""
    probe = careless_poly(spots, folder / "careless_probe", PROBE_ITERATIONS, band)
    rate = iterations_per_second(probe["log"])
    startup = probe["wall_s"] - PROBE_ITERATIONS / rate
    return max(PROBE_ITERATIONS, int((wall - startup) * rate)), rate


def scores(merged, data, model_path):
    """CC(F), CCanom and anomalous peak heights of a merged table against the truth."""
    merged = to_internal(merged)
    peaks = peak_heights(merged, model_path, ELEMENTS)["peaks"]
    return {"cc_f": cc_f(merged, data.truth)[0], "cc_anom": cc_anom(merged, data.truth)[0],
            **{f"peak_{e}": h for e, h in peaks.items()}}


def table(results, oracle):
    """Markdown rows of the results, CCanom and peaks also as % of the oracle's."""
    lines = ["| merge | steps | wall s | images/s | peak RSS MB | CC(F) | CCanom (% oracle) | Zn / Ca / S peak (σ) |",
             "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for name, r in results.items():
        share = 100 * r["cc_anom"] / oracle["cc_anom"]
        peaks = " / ".join(f"{r[f'peak_{e}']:.1f}" for e in ELEMENTS.split(","))
        lines.append(f"| {name} | {r.get('steps', '-')} | {r.get('wall_s', 0):.0f} | {r.get('images_s', 0):.1f} | "
                     f"{r.get('peak_rss_mb') or 0:.0f} | {r['cc_f']:.4f} | {r['cc_anom']:.4f} ({share:.0f} %) | "
                     f"{peaks} |")
    return "\n".join(lines)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--images", type=int, default=200)
    p.add_argument("--steps", type=int, default=2000)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--careless-iterations", type=int, default=None,
                   help="careless's iterations (default: those that fill careless_online's wall time, from a probe)")
    p.add_argument("--skip-careless", action="store_true", help="leave careless 0.5.4 out")
    p.add_argument("--reuse", action="store_true", help="score the merges of an earlier run in --out again "
                   "(its runs.json) instead of running them")
    p.add_argument("--out", type=Path, required=True)
    args = p.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    data, spots = simulated(args.out, args.images, args.seed)
    model = str(args.out / "laue_model.pdb")
    print(f"{args.images} images, {len(data.spots)} spots ({len(data.spots) / args.images:.0f} per image), "
          f"{100 * (data.spots['n_harmonics'] > 1).mean():.2f} % with several harmonics", flush=True)
    results = {}
    for name, single in (("oracle", False), ("oracle, single spots", True)):
        write_mtz(laue_oracle_merge(data, single_only=single), str(args.out / f"{name.replace(', ', '_')}.mtz"))
        results[name] = scores(rs.read_mtz(str(args.out / f"{name.replace(', ', '_')}.mtz")), data, model)
    runs = json.loads((args.out / "runs.json").read_text()) if args.reuse and (args.out / "runs.json").exists() else {}
    if "careless_online poly" not in runs:
        run = careless_online_poly(spots, args.out / "careless_online", args)
        runs["careless_online poly"] = {**run, "steps": args.steps, "images_s": args.steps * args.batch_size / run["wall_s"]}
    if not args.skip_careless and "careless 0.5.4 poly" not in runs:
        iterations = args.careless_iterations or equal_wall_iterations(
            spots, args.out, runs["careless_online poly"]["wall_s"], THERMOLYSIN["band"])[0]
        done = careless_poly(spots, args.out / "careless", iterations, THERMOLYSIN["band"])
        runs["careless 0.5.4 poly"] = {**done, "steps": iterations, "images_s": iterations * args.images / done["wall_s"]}
    (args.out / "runs.json").write_text(json.dumps(runs, indent=1, default=str))
    for name, folder in (("careless_online poly", "careless_online"), ("careless 0.5.4 poly", "careless")):
        if name in runs:
            results[name] = {**scores(rs.read_mtz(str(args.out / folder / "merge_0.mtz")), data, model), **runs[name]}
    (args.out / "results.json").write_text(json.dumps(results, indent=1, default=str))
    print(table(results, results["oracle"]))


if __name__ == "__main__":
    main()
