"""Helpers shared by the benchmark scripts: measured subprocesses, tables, JSON, machine info."""

import datetime
import json
import os
import platform
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

#: Environment variable overriding where datasets and run outputs go.
ROOT_ENV = "CARELESS_ONLINE_BENCH"
#: Default working folder of the benchmarks (datasets, merge outputs, caches).
DEFAULT_ROOT = "/tmp/careless_online_bench"
#: Folder of the JSON results, beside this file.
RESULTS_DIR = Path(__file__).resolve().parent / "results"
#: GNU time, used for peak RSS of subprocesses.
GNU_TIME = "/usr/bin/time"


def bench_root(root=None):
    """Working folder: ``root``, else ``$CARELESS_ONLINE_BENCH``, else ``/tmp/careless_online_bench``."""
    return Path(root or os.environ.get(ROOT_ENV) or DEFAULT_ROOT)


def quiet_env(extra=None):
    """A copy of the environment with TensorFlow's C++ logging reduced.

    Parameters
    ----------
    extra : dict, optional
        Further variables to set.
    """
    env = dict(os.environ)
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    env.update(extra or {})
    return env


def _parse_gnu_time(text):
    """Peak RSS (MiB), user and system CPU seconds from ``/usr/bin/time -v`` output."""
    def number(label):
        m = re.search(rf"{re.escape(label)}:\s*([0-9.]+)", text)
        return float(m.group(1)) if m else None

    rss_kb = number("Maximum resident set size (kbytes)")
    return {
        "peak_rss_mb": None if rss_kb is None else rss_kb / 1024.0,
        "user_s": number("User time (seconds)"),
        "system_s": number("System time (seconds)"),
    }


def run_measured(cmd, log_path, timeout_s=None, env=None, cwd=None):
    """Run a command under ``/usr/bin/time -v``, measuring wall time and peak RSS.

    The command runs in its own process group, so a timeout ends it and all
    of its children.  Peak RSS is that of the largest process of the tree
    (``getrusage`` of the children), as GNU time reports it.

    Parameters
    ----------
    cmd : list of str
        Command and arguments.
    log_path : str or Path
        File receiving the command's stdout and stderr; GNU time's report
        goes to ``<log_path>.time``.
    timeout_s : float, optional
        Wall-clock limit; None for none.
    env : dict, optional
        Environment (default :func:`quiet_env`).
    cwd : str, optional
        Working directory.

    Returns
    -------
    dict
        ``cmd``, ``rc`` (None when timed out), ``timed_out``, ``wall_s``,
        ``peak_rss_mb``, ``user_s``, ``system_s`` and ``log``.
    """
    log_path = Path(log_path)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    time_path = Path(str(log_path) + ".time")
    full = [GNU_TIME, "-v", "-o", str(time_path), *map(str, cmd)]
    start = time.perf_counter()
    with open(log_path, "w") as log:
        log.write("$ " + " ".join(map(str, cmd)) + "\n")
        log.flush()
        proc = subprocess.Popen(full, stdout=log, stderr=subprocess.STDOUT, cwd=cwd,
                                env=env or quiet_env(), start_new_session=True)
        timed_out = False
        try:
            rc = proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            timed_out = True
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
            rc = None
    wall = time.perf_counter() - start
    measured = _parse_gnu_time(time_path.read_text()) if time_path.exists() and not timed_out else {
        "peak_rss_mb": None, "user_s": None, "system_s": None}
    return {"cmd": [str(c) for c in cmd], "rc": rc, "timed_out": timed_out, "wall_s": wall,
            "log": str(log_path), **measured}


def tail(path, n=15):
    """The last ``n`` lines of a text file (empty string if missing)."""
    try:
        return "".join(Path(path).read_text(errors="replace").splitlines(True)[-n:])
    except OSError:
        return ""


def _cell(value, digits):
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def format_table(rows, columns, digits=3):
    """Render dictionaries as a Markdown table.

    Parameters
    ----------
    rows : list of dict
    columns : list of (key, header) or (key, header, digits)
        Which values to show, in order; missing values print as ``-``.
    digits : int, optional
        Default decimals of floats.

    Returns
    -------
    str
    """
    specs = [(c[0], c[1], c[2] if len(c) > 2 else digits) for c in columns]
    header = "| " + " | ".join(h for _, h, _ in specs) + " |"
    rule = "|" + "|".join("---" for _ in specs) + "|"
    body = ["| " + " | ".join(_cell(r.get(k), d) for k, _, d in specs) + " |" for r in rows]
    return "\n".join([header, rule, *body])


def _cpu_model():
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _memory_gb():
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                return round(int(line.split()[1]) / 1024 ** 2, 1)
    except OSError:
        pass
    return None


def _gpus():
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=20)
        return [g.strip() for g in out.stdout.splitlines() if g.strip()] if out.returncode == 0 else []
    except (OSError, subprocess.TimeoutExpired):
        return []


def machine_info():
    """Description of this machine: CPU model and count, memory, GPUs, Python, load average.

    Returns
    -------
    dict
    """
    return {"cpu": _cpu_model(), "cpu_count": os.cpu_count(), "memory_gb": _memory_gb(),
            "gpus": _gpus(), "python": sys.version.split()[0], "platform": platform.platform(),
            "load_average": [round(x, 2) for x in os.getloadavg()]}


def machine_line(info):
    """One-line summary of :func:`machine_info`."""
    gpus = ", ".join(info["gpus"]) or "no GPU"
    load = info.get("load_average")
    busy = f", load average {load[0]:.1f}/{load[1]:.1f}/{load[2]:.1f} (1/5/15 min) when written" if load else ""
    return f"{info['cpu_count']} CPU cores ({info['cpu']}), {info['memory_gb']} GB RAM, {gpus}{busy}"


def write_results(name, payload, results_dir=None):
    """Write a JSON result file ``<results_dir>/<name>_<YYYY-MM-DD>.json``.

    An existing file of the same day gets a ``_2``, ``_3``, ... suffix rather
    than being overwritten.

    Returns
    -------
    Path
        The file written.
    """
    folder = Path(results_dir or RESULTS_DIR)
    folder.mkdir(parents=True, exist_ok=True)
    stem = f"{name}_{datetime.date.today().isoformat()}"
    path, k = folder / f"{stem}.json", 1
    while path.exists():
        k += 1
        path = folder / f"{stem}_{k}.json"
    payload = {"written": datetime.datetime.now().isoformat(timespec="seconds"),
               "command": " ".join([os.path.basename(sys.executable), *sys.argv]), **payload}
    path.write_text(json.dumps(payload, indent=2, default=_json_default))
    return path


def _json_default(value):
    if hasattr(value, "item"):
        return value.item()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"cannot serialize {type(value).__name__}")


def parse_list(text, cast=str):
    """Split a comma-separated option value into a list of ``cast`` values."""
    return [cast(v.strip()) for v in str(text).split(",") if v.strip()]
