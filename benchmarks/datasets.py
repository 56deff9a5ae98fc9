"""Benchmark datasets: simulated still images with anomalous signal and known truth.

Each dataset is made once with ``careless_online.simulate`` and cached under
``<root>/data/<name>/`` (root: ``--root``, ``$CARELESS_ONLINE_BENCH`` or
``/tmp/careless_online_bench``); a dataset whose files all exist is reused.

Usage::

    python benchmarks/datasets.py quick 2k          # make (or find) datasets
    python benchmarks/datasets.py --list            # what each one is
"""

import argparse
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from bench_util import bench_root, run_measured

#: Simulator options giving about 1,500 reflections per image to 2.0 Å
#: (P 43 21 2 lysozyme-like cell, 4 Se per ASU: anomalous signal), with a
#: shot-to-shot jitter of the mean photon energy of 0.2 % rms (SASE-like; the
#: stream records the nominal energy).  Besides it the simulator's defaults
#: give partiality (mosaicity, bandwidth 0.2 %, domain size), per-image scale
#: (log sd 0.5) and B (sd 5 Å²), polarization, Poisson counts with background
#: and cell jitter.
SIM_OPTIONS = ("--dmin", "2.0", "--mosaicity", "0.27", "--energy-jitter", "0.002")
#: Space group of the simulated crystal (the simulator's default).
SPACEGROUP = "P 43 21 2"
#: Resolution limit of the simulated data (Å).
DMIN = 2.0


@dataclass(frozen=True)
class Dataset:
    """One benchmark dataset.

    Parameters
    ----------
    name : str
    n_images : int
    formats : tuple of str
        Simulator outputs (``stream`` always; ``mtz`` for tools reading MTZ).
    seed : int
    extra : tuple of str
        Further simulator options.
    options : tuple of str
        The base simulator options (default :data:`SIM_OPTIONS`).
    spacegroup : str
        Space group of the simulated crystal (what the merges are told).
    dmin : float
        Resolution limit of the merges (Å).
    """

    name: str
    n_images: int
    formats: tuple = ("stream", "mtz")
    seed: int = 2024
    extra: tuple = ()
    options: tuple = SIM_OPTIONS
    spacegroup: str = SPACEGROUP
    dmin: float = DMIN

    def base(self, root=None):
        """Path prefix of the dataset's files."""
        return bench_root(root) / "data" / self.name / self.name

    def paths(self, root=None):
        """Dictionary of the dataset's files: ``stream``, ``mtz`` (if made), ``truth``, ``model``."""
        base = self.base(root)
        out = {"stream": Path(f"{base}.stream"), "truth": Path(f"{base}_truth.mtz"),
               "model": Path(f"{base}_model.pdb")}
        if "mtz" in self.formats:
            out["mtz"] = Path(f"{base}.mtz")
        return out

    def command(self, root=None):
        """Simulator command line making this dataset."""
        truth = ("--mtz-truth-columns",) if "mtz" in self.formats else ()  # for the oracle merge
        return [sys.executable, "-m", "careless_online.simulate.cli", str(self.base(root)),
                "--n-images", str(self.n_images), "--seed", str(self.seed),
                "--format", ",".join(self.formats), *self.options, *truth, *self.extra]


#: The benchmark datasets by name.  The 20k set is stream-only (its MTZ would
#: add ~1.6 GB and only careless, which cannot hold it in memory, reads MTZ).
DATASETS = {
    "quick": Dataset("quick", 200),
    "2k": Dataset("2k", 2000),
    "20k": Dataset("20k", 20000, formats=("stream",)),
}


def get_dataset(name):
    """The :class:`Dataset` called ``name`` (KeyError listing the known names)."""
    try:
        return DATASETS[name]
    except KeyError:
        raise KeyError(f"unknown dataset {name!r}; known: {', '.join(DATASETS)}") from None


def ensure_dataset(name, root=None, log=print):
    """Make a dataset unless all of its files exist already.

    Parameters
    ----------
    name : str or Dataset
        Key of :data:`DATASETS`, or a :class:`Dataset` of one's own.
    root : str, optional
        Benchmark folder (see :func:`bench_util.bench_root`).
    log : callable, optional
        Progress messages.

    Returns
    -------
    dict
        ``paths`` (str by kind), ``n_images``, ``spacegroup``, ``dmin`` and
        ``simulation`` (the measured simulator run, or the one recorded when
        the dataset was made).
    """
    ds = name if isinstance(name, Dataset) else get_dataset(name)
    name = ds.name
    paths = ds.paths(root)
    record = Path(f"{ds.base(root)}_benchmark.json")
    simulation = json.loads(record.read_text()) if record.exists() else None
    same = simulation is not None and simulation.get("cmd", [])[1:] == list(map(str, ds.command(root)))[1:]
    if all(p.exists() for p in paths.values()) and same:
        log(f"[datasets] reusing {name} in {paths['stream'].parent}")
    else:
        # the record is written last: without it (an interrupted simulation) the files are made again
        record.unlink(missing_ok=True)
        log(f"[datasets] simulating {name}: {ds.n_images} images ...")
        t0 = time.time()
        simulation = run_measured(ds.command(root), f"{ds.base(root)}_simulate.log")
        if simulation["rc"] != 0:
            raise RuntimeError(f"simulation of {name} failed; see {simulation['log']}")
        log(f"[datasets] {name} done in {time.time() - t0:.0f} s")
        record.write_text(json.dumps(simulation, indent=2))
    return {"name": name, "paths": {k: str(v) for k, v in paths.items()},
            "n_images": ds.n_images, "spacegroup": ds.spacegroup, "dmin": ds.dmin,
            "simulation": simulation}


def main(argv=None):
    """Make (or find) benchmark datasets and print their paths."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("names", nargs="*", default=["quick"], help=f"datasets among {', '.join(DATASETS)}")
    p.add_argument("--root", default=None,
                   help="benchmark folder (default $CARELESS_ONLINE_BENCH or /tmp/careless_online_bench)")
    p.add_argument("--list", action="store_true", help="describe the datasets and exit")
    args = p.parse_args(argv)
    if args.list:
        for ds in DATASETS.values():
            print(f"{ds.name}: {ds.n_images} images, {'+'.join(ds.formats)}: {' '.join(ds.command(args.root))}")
        return
    for name in args.names:
        info = ensure_dataset(name, args.root)
        print(json.dumps({k: info[k] for k in ("name", "n_images", "paths")}))


if __name__ == "__main__":
    main()
