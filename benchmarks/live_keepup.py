"""Keeping up with the beam: a live merge following a stream written at a fixed rate.

For each rate R (images/s) ``careless_online mono --live`` (default flags)
follows a new CrystFEL stream that starts with ``--prefill`` images of the
benchmark dataset ``--dataset`` (default ``2k``); once the merge has trained
its first round (start-up, model building and the first drawing of the
report are over), a writer thread appends the dataset's next images at R
images per second, in bursts every ``--tick`` seconds, and records when each
image was written.  The merge says in its log when newly converted images
join the training (``N new images (M in all)``): from that moment its
gradient steps use them.  The **lag** of an image written at the rate is the
time from its write to that line.  Lag is *bounded* at a rate when the lag of
the last tenth of the images is not larger than ``--bound`` times the median
lag of the first third (it grows without end once conversion and training
fall behind).

After the writer has finished the merge trains on (its ``--live-timeout``),
ends with the learning-rate decay of an offline merge and writes its MTZ.
With ``--offline`` the same images are merged offline with as many steps as
the live merge took, and both are compared with the truth (CC(F), CCanom).

Run::

    python benchmarks/live_keepup.py --rates 20,40,80,160,320       # 2k dataset, one live merge per rate
    python benchmarks/live_keepup.py --rates 40 --offline            # live against offline at one rate

Prints a Markdown table and writes ``results/live_keepup_<date>.json``.
"""

import argparse
import os
import re
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np

from bench_util import bench_root, format_table, machine_info, machine_line, parse_list, quiet_env, write_results
from datasets import ensure_dataset
from quality import merged_quality

METADATA = "dHKL,XDET,YDET,ewald_offset"
BEGIN = "----- Begin chunk -----"
END = "----- End chunk -----\n"
NEW_IMAGES = re.compile(r"(\d+) new images \((\d+) in all\)")
ROUND = re.compile(r"^step (\d+): (\d+) images")
FIRST = re.compile(r"^first look: (\d+) images")


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="2k", help="benchmark dataset whose stream is replayed")
    parser.add_argument("--rates", default="20,40,80,160,320", help="images per second, comma-separated")
    parser.add_argument("--max-seconds", type=float, default=60.0,
                        help="longest writing time per rate (fewer images than the dataset's at low rates)")
    parser.add_argument("--tick", type=float, default=0.25, help="seconds between appends")
    parser.add_argument("--prefill", type=int, default=200, help="images in the stream before the merge starts")
    parser.add_argument("--iterations", type=int, default=None, help="--iterations of the live merge (default its own)")
    parser.add_argument("--live-timeout", type=float, default=10.0, help="--live-timeout of the live merge")
    parser.add_argument("--bound", type=float, default=2.0,
                        help="lag counts as bounded when the last images' lag <= bound x the first third's median")
    parser.add_argument("--offline", action="store_true",
                        help="also merge the same images offline with the live merge's steps and compare")
    parser.add_argument("--root", default=None, help="benchmark folder (datasets, runs)")
    parser.add_argument("--no-json", action="store_true")
    return parser.parse_args(argv)


def split_stream(path):
    """(header, [chunk texts]) of a CrystFEL stream."""
    text = Path(path).read_text()
    first = text.index(BEGIN)
    return text[:first], [part + END for part in text[first:].split(END)[:-1]]


class Writer(threading.Thread):
    """Appends chunks to ``target`` at ``rate`` images/s; ``written[i]`` is image i's write time.

    The first ``done`` chunks are in the file already (their times stay NaN).
    """

    def __init__(self, parts, target, rate, tick, clock, done):
        super().__init__(daemon=True)
        self.parts, self.target, self.done = parts, target, int(done)
        self.rate, self.tick, self.clock = float(rate), float(tick), clock
        self.written = np.full(len(parts), np.nan)

    def run(self):
        start, done = self.clock(), self.done
        while done < len(self.parts):
            due = min(len(self.parts), self.done + int((self.clock() - start) * self.rate) + 1)
            if due > done:
                with open(self.target, "a") as handle:
                    handle.write("".join(self.parts[done:due]))
                self.written[done:due] = self.clock()
                done = due
            time.sleep(self.tick)


def follow_log(process, clock, events, log_path, trained):
    """Read the merge's output line by line; record (time, images in training) when images join.

    ``trained`` is set once the first round's line is there.
    """
    with open(log_path, "w") as log:
        for line in process.stdout:
            now = clock()
            log.write(line)
            log.flush()
            if ROUND.match(line):
                trained.set()
            joined = NEW_IMAGES.search(line) or (FIRST.match(line) if not events else None)
            if joined:
                events.append((now, int(joined.groups()[-1])))


def lags(written, events):
    """Per image written at the rate, seconds from its write to the first event whose image count includes it."""
    out = np.full(len(written), np.nan)
    for when, count in events:
        todo = np.isnan(out[:count])
        out[:count][todo] = when - written[:count][todo]
    return out[np.isfinite(written)]


def live_run(args, info, rate, work):
    """One live merge of a stream written at ``rate``; returns its row."""
    header, parts = split_stream(info["paths"]["stream"])
    parts = parts[:min(len(parts), args.prefill + max(1, int(rate * args.max_seconds)))]
    stream, out = work / "growing.stream", work / "merge" / "live"
    stream.write_text(header + "".join(parts[:args.prefill]))
    command = ["careless_online", "mono", "--live", "--anomalous", "--dmin", str(info["dmin"]),
               "--spacegroups", info["spacegroup"], "--live-timeout", str(args.live_timeout),
               "--disable-progress-bar", METADATA, str(stream), str(out)]
    if args.iterations:
        command[2:2] = ["--iterations", str(args.iterations)]
    clock = time.monotonic
    events, trained = [], threading.Event()
    merger = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                              env=quiet_env())
    reader = threading.Thread(target=follow_log, args=(merger, clock, events, work / "live.log", trained))
    reader.start()
    while not trained.wait(0.5):
        if merger.poll() is not None:
            break
    writer = Writer(parts, stream, rate, args.tick, clock, args.prefill)
    started = clock()
    writer.start()
    writer.join()
    writing = clock() - started
    merger.wait()
    reader.join()
    if merger.returncode != 0:
        sys.exit(f"the live merge at {rate} images/s failed (exit {merger.returncode}); see {work / 'live.log'}")
    return _row(rate, writer.written, events, writing, clock() - started, args.bound, out, parts, work)


def _row(rate, written, events, writing, wall, bound, out, parts, work):
    lag = lags(written, events)
    n = len(lag)
    early, late = np.nanmedian(lag[: max(1, n // 3)]), np.nanmax(lag[-max(1, n // 10):])
    steps = _steps(work / "live.log")
    return {"rate": rate, "images": n, "writing_s": round(writing, 1), "wall_s": round(wall, 1),
            "lag_median_s": float(np.nanmedian(lag)), "lag_first_third_s": float(early),
            "lag_last_tenth_max_s": float(late), "lag_max_s": float(np.nanmax(lag)),
            "bounded": bool(late <= bound * max(early, 1.0)), "steps": steps,
            "merged": f"{out}_0.mtz", "n_chunks": len(parts)}


def _steps(log_path):
    """The last step the live merge's log names."""
    steps = [int(m.group(1)) for line in open(log_path) if (m := ROUND.match(line))]
    return steps[-1] if steps else 0


def offline_compare(args, info, row, work):
    """Merge the live run's images offline with its steps; CC(F)/CCanom of both to the truth."""
    header, parts = split_stream(info["paths"]["stream"])
    stream = work / "offline.stream"
    stream.write_text(header + "".join(parts[:row["n_chunks"]]))
    out = work / "offline" / "off"
    out.parent.mkdir(parents=True, exist_ok=True)
    command = ["careless_online", "mono", "--anomalous", "--dmin", str(info["dmin"]), "--spacegroups",
               info["spacegroup"], "--iterations", str(row["steps"]), "--disable-progress-bar", METADATA,
               str(stream), str(out)]
    done = subprocess.run(command, capture_output=True, text=True, env=quiet_env())
    if done.returncode != 0:
        sys.exit(f"the offline merge failed: {done.stderr.strip().splitlines()[-1:]}")
    live = merged_quality(row["merged"], info["paths"]["truth"])
    offline = merged_quality(f"{out}_0.mtz", info["paths"]["truth"])
    row.update(live_cc_F=live["cc_F"], live_cc_anom=live["cc_anom"], offline_cc_F=offline["cc_F"],
               offline_cc_anom=offline["cc_anom"],
               cc_anom_ratio=live["cc_anom"] / offline["cc_anom"], cc_F_ratio=live["cc_F"] / offline["cc_F"])


def main(argv=None):
    args = parse_args(argv)
    info = ensure_dataset(args.dataset, args.root)
    rows = []
    for rate in parse_list(args.rates, float):
        work = bench_root(args.root) / "runs" / f"live_keepup_{args.dataset}_{rate:g}"
        shutil.rmtree(work, ignore_errors=True)
        work.mkdir(parents=True)
        row = live_run(args, info, rate, work)
        if args.offline:
            offline_compare(args, info, row, work)
        rows.append(row)
        print(f"[live_keepup] {rate:g} images/s: median lag {row['lag_median_s']:.1f} s, "
              f"last {row['lag_last_tenth_max_s']:.1f} s, bounded {row['bounded']}", file=sys.stderr)
    columns = [("rate", "images/s", 0), ("images", "images at the rate"), ("n_chunks", "images in all"), ("writing_s", "writing s", 1),
               ("lag_first_third_s", "median lag, first third s", 1), ("lag_median_s", "median lag s", 1),
               ("lag_last_tenth_max_s", "max lag, last tenth s", 1), ("lag_max_s", "max lag s", 1),
               ("bounded", "bounded"), ("steps", "steps"), ("wall_s", "wall s", 0)]
    if args.offline:
        columns += [("live_cc_F", "CC(F) live"), ("offline_cc_F", "CC(F) offline"), ("live_cc_anom", "CCanom live"),
                    ("offline_cc_anom", "CCanom offline"), ("cc_anom_ratio", "CCanom live/offline")]
    info_machine = machine_info()
    print(machine_line(info_machine))
    print(format_table(rows, columns))
    bounded = [r["rate"] for r in rows if r["bounded"]]
    print(f"highest rate with bounded lag: {max(bounded):g} images/s" if bounded else "no rate kept the lag bounded")
    if not args.no_json:
        print(write_results("live_keepup", {"machine": info_machine, "args": vars(args), "rows": rows}))


if __name__ == "__main__":
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    main()
