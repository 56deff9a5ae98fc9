"""A time-resolved experiment followed live: dark and light streams growing side by side.

Simulates a dark/light pair (:func:`careless_online.simulate.states.simulate_states`), then
writes both CrystFEL streams a block of images at a time, alternately, while
``careless_online mono --live --separate-files --double-wilson-parents=None,0 --double-wilson-r=0.,R
--model-pdb dark_model.pdb`` follows them.  Every ``--sample`` seconds the script reads the two
merged MTZ files the live merge has just written (``<out>_0.mtz``, ``<out>_1.mtz``) and measures,
exactly as ``careless_online.difference`` would: the CC of ΔF to the true ΔF, and the height (σ) of
the isomorphous difference map (WDF, dark model's phases) at the moved atoms' old places (negative
peaks) and new places (positive peaks).  At the end headless Chromium (if installed) photographs
the live report's top ``index.html``.

Run::

    python benchmarks/live_time_resolved.py --work /tmp/live_tr            # prints a Markdown table
    python benchmarks/live_time_resolved.py --work /tmp/live_tr --screenshot docs/img/live_time_resolved.png
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import threading
import time

import gemmi
import numpy as np
import pandas as pd
import reciprocalspaceship as rs

from careless_online.io.layout import to_internal
from careless_online.simulate.states import StateChange, simulate_states, write_states
from careless_online.stats.difference import difference_table
from careless_online.stats.difference_map import atom_heights, difference_map, phases_from_model

KEYS = "dHKL,image_id,XDET,YDET,ewald_offset"
SG = "P 43 21 2"
END = "----- End chunk -----\n"


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", required=True, help="work folder (emptied)")
    parser.add_argument("--images", type=int, default=300, help="images of each state")
    parser.add_argument("--block", type=int, default=10, help="images per append")
    parser.add_argument("--interval", type=float, default=1.0, help="seconds between appends")
    parser.add_argument("--seed", type=int, default=12)
    parser.add_argument("--dmin", type=float, default=3.0)
    parser.add_argument("--atoms", type=int, default=400)
    parser.add_argument("--r", type=float, default=0.99, help="--double-wilson-r of the light state")
    parser.add_argument("--live-steps", type=int, default=50)
    parser.add_argument("--iterations", type=int, default=1500)
    parser.add_argument("--sample", type=float, default=10.0, help="seconds between measurements")
    parser.add_argument("--screenshot", default=None, help="write the report's photograph here")
    return parser.parse_args(argv)


def chunks(text):
    """(header, [chunk texts]) of a stream."""
    first = text.index("----- Begin chunk -----")
    body = text[first:]
    parts = body.split(END)
    return text[:first], [p + END for p in parts[:-1]]


def writer(sources, targets, block, interval):
    """Append ``block`` chunks of each stream in turn every ``interval`` seconds."""
    pieces = [chunks(open(s).read()) for s in sources]
    for (header, _), target in zip(pieces, targets):
        with open(target, "w") as handle:
            handle.write(header)
    n = max(len(c) for _, c in pieces)
    for start in range(0, n, block):
        for (_, parts), target in zip(pieces, targets):
            with open(target, "a") as handle:
                handle.write("".join(parts[start:start + block]))
        time.sleep(interval)


def measure(out, states, structure, changed):
    """CC(ΔF, true), mean map height at the old and new places of the moved atoms, images merged."""
    try:
        dark, light = (to_internal(rs.read_mtz(f"{out}_{d}.mtz")) for d in (0, 1))
    except (OSError, RuntimeError):  # a file not there yet
        return None
    table, _ = difference_table(light, dark)
    truth = states.difference["DF"].reindex(table.index).to_numpy(float)
    known = np.isfinite(truth)
    cc = float(np.corrcoef(table["DF"].to_numpy(float)[known], truth[known])[0, 1])
    grid = difference_map(table, phases_from_model(table, structure))
    old = atom_heights(grid, [gemmi.Position(*p) for p in changed[["x_old", "y_old", "z_old"]].to_numpy()])
    new = atom_heights(grid, [gemmi.Position(*p) for p in changed[["x_new", "y_new", "z_new"]].to_numpy()])
    return cc, old, new


def images_merged(out):
    try:
        status = json.load(open(f"{out}_live/status.json"))
    except (OSError, ValueError):
        return None
    return [d["images"] for d in status.get("datasets", [])], status.get("steps", 0)


def main(argv=None):
    args = parse_args(argv)
    screenshot = os.path.abspath(args.screenshot) if args.screenshot else None
    shutil.rmtree(args.work, ignore_errors=True)
    os.makedirs(args.work)
    os.chdir(args.work)
    states = simulate_states(n_images=args.images, seed=args.seed, dmin=args.dmin, n_atoms=args.atoms,
                             change=StateChange(n_changed=3, shift=1.5, occupancy=0.8))
    os.makedirs("sim")
    paths = write_states(states, "sim/tr")
    structure = gemmi.read_structure(paths["dark"]["model"])
    changed = pd.read_csv(paths["changed"])
    out = "merge/tr"
    command = ["careless_online", "mono", "--live", "--separate-files", "--double-wilson-parents=None,0",
               f"--double-wilson-r=0.,{args.r}", "--model-pdb", paths["dark"]["model"], "--dmin", str(args.dmin),
               "--spacegroups", SG, "--live-steps", str(args.live_steps), "--live-poll", "2", "--live-timeout",
               "20", "--iterations", str(args.iterations), "--disable-progress-bar", KEYS, "dark.stream",
               "light.stream", out]
    print("$", " ".join(command), file=sys.stderr)
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    started = time.monotonic()
    with open("live.log", "w") as log:
        merger = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env)
        feed = threading.Thread(target=writer, args=([paths["dark"]["stream"], paths["light"]["stream"]],
                                                     ["dark.stream", "light.stream"], args.block, args.interval))
        feed.start()
        rows = []
        while merger.poll() is None:
            time.sleep(args.sample)
            rows.append(_row(time.monotonic() - started, out, states, structure, changed))
        feed.join()
    rows.append(_row(time.monotonic() - started, out, states, structure, changed))
    if merger.returncode != 0:
        sys.exit(f"the live merge failed (exit {merger.returncode}); see {args.work}/live.log")
    _print(rows, args)
    if screenshot:
        _screenshot(f"{out}_live/index.html", screenshot)


def _row(seconds, out, states, structure, changed):
    merged = images_merged(out)
    figures = measure(out, states, structure, changed) if merged and merged[0] else None
    return {"seconds": seconds, "merged": merged, "figures": figures}


def _print(rows, args):
    print(f"| s | images merged (dark, light) | steps | CC(ΔF, true) | map at old places (σ) | "
          f"map at new places (σ) |\n|---|---|---|---|---|---|")
    for row in rows:
        if row["figures"] is None:
            continue
        cc, old, new = row["figures"]
        (images, steps) = row["merged"]
        print(f"| {row['seconds']:.0f} | {', '.join(map(str, images))} | {steps} | {cc:.3f} | "
              f"{', '.join(f'{h:+.1f}' for h in old)} | {', '.join(f'{h:+.1f}' for h in new)} |")
    report = [line for line in open("live.log") if line.startswith("report:")]
    print(report[-1].strip() if report else "no report line in live.log")


def _screenshot(page, target):
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        print("no chromium: no screenshot", file=sys.stderr)
        return
    subprocess.run([chromium, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                    "--disable-background-networking", "--disable-component-update", "--disable-sync",
                    f"--user-data-dir={os.path.abspath('.chromium')}", f"--screenshot={os.path.abspath('page.png')}",
                    "--window-size=1200,3600", f"file://{os.path.abspath(page)}"],
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)
    from PIL import Image, ImageOps

    shot = Image.open("page.png").convert("RGB")
    shot = shot.crop((0, 0, shot.width, min(shot.height, ImageOps.invert(shot).getbbox()[3] + 20)))
    shot = shot.resize((shot.width * 3 // 4, shot.height * 3 // 4), Image.LANCZOS)
    shot.quantize(128, method=Image.Quantize.FASTOCTREE).save(target, optimize=True)
    print(f"wrote {target}", file=sys.stderr)


if __name__ == "__main__":
    main()
