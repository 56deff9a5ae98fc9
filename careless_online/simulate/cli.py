"""``careless_online.simulate``: write simulated still-image data with known truth."""

import argparse
import os
import sys

from careless_online.cli.common import no_new_empty_folders, user_errors_exit
from careless_online.errors import InputError
from careless_online.simulate.api import DEFAULT_FORMATS, FORMATS, simulate_to_files
from careless_online.simulate.config import DEFAULT_CELL, DEFAULT_SPACEGROUP, SimulationConfig

_DEFAULTS = SimulationConfig()


class _Parser(argparse.ArgumentParser):
    """An ArgumentParser whose usage errors are InputErrors (one line, exit 2)."""

    def error(self, message):
        raise InputError(message)


def build_parser():
    """The argument parser of ``careless_online.simulate``."""
    d = _DEFAULTS
    p = _Parser(
        prog="careless_online.simulate",
        description="Simulate serial-crystallography still images with known truth. Writes "
                    "BASE.stream (CrystFEL), BASE.mtz (unmerged), BASE_truth.mtz (merged true "
                    "F, PHI, F(+), PHI(+), F(-), PHI(-)), BASE_images.csv (per-image truth) and BASE_model.pdb "
                    "(the atoms of the asymmetric unit, for phases and anomalous sites); with --format "
                    "dials also the folder BASE_dials/ of DIALS stills pairs (.expt, .refl), one per block. "
                    "About 1,500 reflections per image: --dmin 2.0 --mosaicity 0.27.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("base", help="output path prefix, e.g. out/sim")
    p.add_argument("--n-images", type=int, default=100, help="number of images")
    p.add_argument("--format", default=",".join(DEFAULT_FORMATS),
                   help=f"comma-separated outputs among {', '.join(FORMATS)}")
    p.add_argument("--seed", type=int, default=d.seed, help="random seed")
    g = p.add_argument_group("crystal")
    g.add_argument("--cell", type=float, nargs=6, metavar=("A", "B", "C", "AL", "BE", "GA"),
                   default=None, help=f"unit cell (Å, deg); default {' '.join(map(str, DEFAULT_CELL))}"
                                      " or the --pdb file's")
    g.add_argument("--spacegroup", default=None,
                   help=f"space group; default {DEFAULT_SPACEGROUP} or the --pdb file's")
    g.add_argument("--dmin", type=float, default=d.dmin, help="resolution limit (Å)")
    g.add_argument("--pdb", default=None, help="coordinate file (PDB/mmCIF) instead of random atoms")
    g.add_argument("--n-atoms", type=int, default=d.n_atoms,
                   help="random model: C/N/O atoms per asymmetric unit")
    g.add_argument("--atom-b", type=float, default=d.atom_b, help="random model: atomic B (Å²)")
    g.add_argument("--anomalous-element", default=None,
                   help="element with f', f''; default Se (random model), or Se if the --pdb "
                        "model has any, else S")
    g.add_argument("--n-anomalous", type=int, default=d.n_anomalous,
                   help="random model: anomalous atoms per asymmetric unit")
    g.add_argument("--fprime", type=float, default=None,
                   help="f' (e); default Cromer-Liberman at the wavelength")
    g.add_argument("--fpp", type=float, default=None,
                   help="f'' (e); default Cromer-Liberman at the wavelength; 0: no anomalous signal")
    g.add_argument("--anomalous-atoms", default=None, metavar="EL:N[:FPP[:FP]],...",
                   help="random model: several anomalous elements, N atoms each per asymmetric unit, "
                        "e.g. Zn:1,Ca:4,S:8 (f'', f' Cromer-Liberman at the wavelength unless given); "
                        "replaces --anomalous-element, --n-anomalous, --fprime and --fpp")
    g.add_argument("--molecule-radius", type=float, default=d.molecule_radius,
                   help="random model: gather each asymmetric unit's atoms into a compact molecule of this "
                        "rms radius (Å), giving a few very strong low-order reflections; 0: uniform atoms")
    g.add_argument("--bulk-solvent", type=float, default=d.bulk_solvent, metavar="K_SOL",
                   help="Babinet bulk-solvent scale k_sol in [0, 1): low-resolution F fall by up to "
                        "(1 - k_sol); 0: no solvent")
    g.add_argument("--bulk-solvent-b", type=float, default=d.bulk_solvent_b, metavar="B_SOL",
                   help="B_sol of the Babinet bulk-solvent term (Å²)")
    g = p.add_argument_group("beam, crystal quality and detector")
    g.add_argument("--wavelength", type=float, default=d.wavelength, help="wavelength (Å)")
    g.add_argument("--bandwidth", type=float, default=d.bandwidth, help="rms dλ/λ")
    g.add_argument("--energy-jitter", type=float, default=d.energy_jitter,
                   help="relative rms shot-to-shot change of the mean wavelength (the stream records the nominal one)")
    g.add_argument("--mosaicity", type=float, default=d.mosaicity, help="rms mosaic spread (deg)")
    g.add_argument("--mosaicity-spread", type=float, default=d.mosaicity_spread,
                   help="sd of the log of each image's mosaicity (mean --mosaicity)")
    g.add_argument("--lorentz", action="store_true",
                   help="Lorentz-like partiality: multiply by (median profile width)/(profile width), so "
                        "narrow (low-resolution, low-mosaicity) profiles record more of their intensity")
    g.add_argument("--profile-radius", type=float, default=d.profile_radius,
                   help="rms reciprocal-lattice-point radius (1/Å)")
    g.add_argument("--cell-jitter", type=float, default=d.cell_jitter,
                   help="relative rms image-to-image change of the cell lengths")
    g.add_argument("--partiality-min", type=float, default=d.partiality_min,
                   help="record reflections with at least this partiality")
    g.add_argument("--detector-distance", type=float, default=d.detector_distance, help="mm")
    g.add_argument("--pixel-size", type=float, default=d.pixel_size, help="mm")
    g.add_argument("--detector-pixels", type=int, nargs=2, metavar=("NX", "NY"),
                   default=list(d.detector_pixels), help="detector size in pixels")
    g.add_argument("--polarization", type=float, default=d.polarization,
                   help="fraction of the beam polarized along x")
    g = p.add_argument_group("intensities")
    g.add_argument("--mean-counts", type=float, default=d.mean_counts,
                   help="photons of a full reflection of mean |F|² at image scale 1")
    g.add_argument("--scale-spread", type=float, default=d.scale_spread,
                   help="sd of the log of the image scale")
    g.add_argument("--image-b-sd", type=float, default=d.image_b_sd, help="sd of the image B (Å²)")
    g.add_argument("--background", type=float, default=d.background,
                   help="mean background photons under a spot")
    g.add_argument("--background-ratio", type=float, default=d.background_ratio,
                   help="background area / spot area of the background estimate")
    g.add_argument("--sigma-fraction", type=float, default=d.sigma_fraction,
                   help="fractional error term f: SIGI² = counting variance + (f I)²")
    g.add_argument("--model-error", type=float, default=d.model_error,
                   help="sd of the log of a multiplicative error on each expected signal, "
                        "not described by SIGI")
    g.add_argument("--min-reflections", type=int, default=d.min_reflections,
                   help="images with fewer reflections are redrawn")
    g = p.add_argument_group("output")
    g.add_argument("--block-size", type=int, default=500,
                   help="images simulated and appended to the stream (or written as one DIALS pair) at a time")
    g.add_argument("--interval", type=float, default=0.0,
                   help="seconds to wait between blocks (a growing, 'live' stream or folder of DIALS pairs)")
    g.add_argument("--mtz-truth-columns", action="store_true",
                   help="also write the truth columns (PARTIALITY, FTRUE, ...) to BASE.mtz")
    return p


def _make_folder(folder):
    """Make the output folder (and its parents) unless it exists."""
    try:
        os.makedirs(folder, exist_ok=True)
    except OSError as err:  # a file in the way, no permission
        raise InputError(f"cannot make the output folder ({err.strerror or err})", folder) from None


@user_errors_exit
def main(argv=None):
    """Run ``careless_online.simulate``.

    Parameters
    ----------
    argv : list of str, optional
        Arguments (default: ``sys.argv[1:]``).
    """
    args = build_parser().parse_args(argv)
    params = {k: getattr(args, k) for k in (
        "dmin", "pdb", "n_atoms", "atom_b", "anomalous_element", "n_anomalous", "fprime",
        "fpp", "wavelength", "bandwidth", "energy_jitter", "mosaicity", "profile_radius", "cell_jitter",
        "partiality_min", "detector_distance", "pixel_size", "polarization", "mean_counts",
        "scale_spread", "image_b_sd", "background", "background_ratio", "min_reflections",
        "spacegroup", "anomalous_atoms", "molecule_radius", "bulk_solvent", "bulk_solvent_b",
        "mosaicity_spread", "lorentz", "sigma_fraction", "model_error")}
    params["cell"] = None if args.cell is None else tuple(args.cell)
    params["detector_pixels"] = tuple(args.detector_pixels)
    if args.interval < 0:
        raise InputError(f"--interval must be >= 0, got {args.interval}")
    formats = [f.strip() for f in args.format.split(",") if f.strip()]
    folder = os.path.dirname(os.path.abspath(args.base))
    with no_new_empty_folders([folder]):  # a bad parameter leaves no new folder behind
        _make_folder(folder)
        paths = simulate_to_files(args.base, n_images=args.n_images, formats=formats, seed=args.seed,
                                  block_size=args.block_size, interval=args.interval,
                                  truth_columns=args.mtz_truth_columns, **params)
    print(" ".join(paths.values()), file=sys.stdout)


if __name__ == "__main__":
    main()
