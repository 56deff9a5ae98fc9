"""How to run each merging tool of the benchmark, and where its merged MTZ lands.

Tools (``--tools`` names):

``careless_online``
    ``careless_online mono`` reading the dataset's CrystFEL stream.
``naive``
    ``careless_online mono --naive`` (per-image scales + weighted average).
``oracle``
    ``python -m careless_online.simulate.oracle``: every observation divided
    by its true correction (the simulator's hidden scale, B, partiality and
    polarization), weighted mean, French-Wilson: the ceiling.
``abismal``
    ``abismal`` 0.0.7 from its own virtual environment, reading the stream
    (it reads streams and DIALS files only); merged file
    ``asu_0_epoch_<last>.mtz``.
``careless``
    ``careless mono`` 0.5.4 from its own virtual environment, reading the
    unmerged MTZ of the same images (from a stream careless offers no
    XDET/YDET metadata); it takes full-batch gradient steps (no batch size).

Every tool merges with the same metadata ``dHKL,XDET,YDET,ewald_offset``
where it takes metadata keys (abismal chooses its own), anomalous, the
dataset's space group and resolution limit, on the CPU.
"""

import math
import os
import sys
from dataclasses import dataclass
from pathlib import Path

#: Virtual environments of the competitors (see setup_competitors.sh).
VENV_PREFIX = Path(os.environ.get("BENCH_PREFIX", "/opt/bench"))
METADATA = "dHKL,XDET,YDET,ewald_offset"
#: abismal's steps per epoch when a step count is spread over epochs.
ABISMAL_STEPS_PER_EPOCH = 100


@dataclass(frozen=True)
class RunSpec:
    """One merge to run.

    Parameters
    ----------
    steps : int or None
        Gradient steps (None: the tool's own default).
    batch_size : int or None
        Images per step (None: the tool's default; careless has none).
    seed : int
    test_fraction : float or None
        Held-out image fraction (None: the tool's default).
    extra : tuple of str
        Further ``careless_online mono`` flags (not for ``--naive``), e.g.
        candidate defaults tried on a whole benchmark.
    """

    steps: int = None
    batch_size: int = None
    seed: int = 1
    test_fraction: float = None
    extra: tuple = ()


def _careless_online(info, out, spec, naive=False):
    cmd = [sys.executable, "-m", "careless_online.cli.main", "mono", "--anomalous",
           "--spacegroups", info["spacegroup"], "--dmin", str(info["dmin"]), "--seed", str(spec.seed),
           "--disable-gpu", "--disable-progress-bar", "--cache-dir", str(out / "cache")]
    if naive:
        cmd.append("--naive")
    if spec.steps is not None and not naive:
        cmd += ["--iterations", str(spec.steps)]
    if spec.batch_size is not None and not naive:
        cmd += ["--batch-size", str(spec.batch_size)]
    if spec.test_fraction is not None and not naive:
        cmd += ["--test-fraction", str(spec.test_fraction)]
    if not naive:
        cmd += list(spec.extra)
    return cmd + [METADATA, info["paths"]["stream"], str(out / "merge")]


def abismal_epochs(steps):
    """Epochs and steps per epoch giving about ``steps`` abismal steps (rounded up)."""
    epochs = max(1, math.ceil(steps / ABISMAL_STEPS_PER_EPOCH))
    return epochs, math.ceil(steps / epochs)


def _abismal(info, out, spec):
    cmd = [str(VENV_PREFIX / "abismal-venv" / "bin" / "abismal"), "--anomalous",
           "--space-group", info["spacegroup"], "--dmin", str(info["dmin"]), "--out-dir", str(out),
           "--keras-verbosity", "2", "--num-cpus", str(min(2, os.cpu_count() or 1))]
    if spec.steps is not None:
        epochs, per_epoch = abismal_epochs(spec.steps)
        cmd += ["--epochs", str(epochs), "--steps-per-epoch", str(per_epoch)]
    if spec.batch_size is not None:
        cmd += ["--batch-size", str(spec.batch_size)]
    if spec.test_fraction is not None:
        cmd += ["--test-fraction", str(spec.test_fraction)]
    return cmd + [info["paths"]["stream"]]


def _careless(info, out, spec):
    if "mtz" not in info["paths"]:
        raise ValueError(f"careless needs the unmerged MTZ, which dataset {info['name']} lacks")
    cmd = [str(VENV_PREFIX / "careless-venv" / "bin" / "careless"), "mono", "--anomalous",
           "--spacegroups", info["spacegroup"], "--dmin", str(info["dmin"]), "--seed", str(spec.seed),
           "--disable-gpu", "--disable-progress-bar"]
    if spec.steps is not None:
        cmd += ["--iterations", str(spec.steps)]
    if spec.test_fraction:
        cmd += ["--test-fraction", str(spec.test_fraction)]
    return cmd + [METADATA, info["paths"]["mtz"], str(out / "merge")]


def _oracle(info, out, spec):
    if "mtz" not in info["paths"]:
        raise ValueError(f"the oracle needs the unmerged MTZ with truth columns, which dataset {info['name']} lacks")
    return [sys.executable, "-m", "careless_online.simulate.oracle", info["paths"]["mtz"],
            str(out / "merge_0.mtz"), "--dmin", str(info["dmin"])]


def _last_epoch_mtz(out):
    files = sorted(Path(out).glob("asu_0_epoch_*.mtz"), key=lambda p: int(p.stem.rsplit("_", 1)[1]))
    return files[-1] if files else Path(out) / "asu_0_epoch_missing.mtz"


@dataclass(frozen=True)
class Tool:
    """A merging tool of the benchmark.

    Parameters
    ----------
    name : str
    command : callable
        ``(dataset_info, out_dir, RunSpec) -> list of str``.
    merged : callable
        ``out_dir -> Path`` of the merged MTZ after the run.
    iterative : bool
        Whether the number of steps means anything (not for ``naive``).
    batched : bool
        Whether it takes a batch size.
    """

    name: str
    command: object
    merged: object
    iterative: bool = True
    batched: bool = True

    def history(self, out):
        """Path of the training history CSV, if the tool writes one."""
        candidates = {"abismal": Path(out) / "history.csv"}
        return candidates.get(self.name, Path(out) / "merge_history.csv")


TOOLS = {
    "careless_online": Tool("careless_online", _careless_online, lambda out: Path(out) / "merge_0.mtz"),
    "naive": Tool("naive", lambda info, out, spec: _careless_online(info, out, spec, naive=True),
                  lambda out: Path(out) / "merge_0.mtz", iterative=False, batched=False),
    "oracle": Tool("oracle", _oracle, lambda out: Path(out) / "merge_0.mtz", iterative=False, batched=False),
    "abismal": Tool("abismal", _abismal, _last_epoch_mtz),
    "careless": Tool("careless", _careless, lambda out: Path(out) / "merge_0.mtz", batched=False),
}


def get_tool(name):
    """The :class:`Tool` called ``name`` (KeyError listing the known names)."""
    try:
        return TOOLS[name]
    except KeyError:
        raise KeyError(f"unknown tool {name!r}; known: {', '.join(TOOLS)}") from None


def installed(tool):
    """Whether the tool's executable exists (the competitors need setup_competitors.sh)."""
    if tool.name == "abismal":
        return (VENV_PREFIX / "abismal-venv" / "bin" / "abismal").exists()
    if tool.name == "careless":
        return (VENV_PREFIX / "careless-venv" / "bin" / "careless").exists()
    return True
