"""``careless_online.difference``: isomorphous differences, difference map and its peaks."""

import os
import sys

import numpy as np

from careless_online.cli.anomalous_peaks import read_model
from careless_online.cli.common import user_errors_exit
from careless_online.cli.parser import Parser, non_negative_float, number, positive_int
from careless_online.cli.stats_args import about, emit
from careless_online.errors import InputError
from careless_online.io.layout import internal_name
from careless_online.io.writers import write_mtz
from careless_online.stats.difference import DEFAULT_ALPHA, difference_halves_cc, difference_table
from careless_online.stats.difference_map import (
    difference_map, difference_peaks, phases_from_model, phases_from_mtz, write_ccp4)
from careless_online.stats.inputs import read_mtz


def build_parser():
    """The command's argument parser."""
    description = (
        "Isomorphous differences DF = F(state) - F(reference) on a common scale (k exp(-B s^2/4) "
        "fitted over resolution shells), SIGDF, q-weights W (Ursby-Bourgeois style, Ren et al.'s "
        "form) and WDF = W DF, written to an MTZ file. With --phases it also writes the difference "
        "map (CCP4, sigma units) and prints its highest positive and negative peaks with the "
        "nearest model atoms (-o writes that table to CSV).")
    parser = Parser(prog="careless_online.difference", description=description)
    parser.add_argument("state", help="merged state (e.g. light) file, <base>_1.mtz")
    parser.add_argument("reference", help="merged reference (e.g. dark) file, <base>_0.mtz")
    parser.add_argument("out", help="output MTZ file of the differences")
    parser.add_argument("--column", default="F", type=internal_name,
                        help="amplitude column of both files (e.g. F(+) for one Friedel mate)")
    parser.add_argument("--sigma-column", default="SIGF", type=internal_name,
                        help="uncertainty column of both files; SIGF and careless's SigF name the same column "
                             "(the files may have either layout)")
    parser.add_argument("--alpha", type=non_negative_float, default=DEFAULT_ALPHA,
                        help="outlier term of the q-weights (0: noise term only)")
    parser.add_argument("--scale-bins", type=positive_int, default=10,
                        help="resolution shells of the relative scale fit")
    parser.add_argument("--phases", metavar="MODEL_OR_MTZ", default=None,
                        help="reference model (PDB/mmCIF) whose phases make the map, or an MTZ "
                             "file with a phase column (--phase-column)")
    parser.add_argument("--phase-column", default="PHI", help="phase column of an MTZ given to --phases")
    parser.add_argument("--model", default=None,
                        help="model naming the peaks' nearest atoms (default: the --phases model)")
    parser.add_argument("--map", metavar="FILE.ccp4", default=None,
                        help="difference map file (default: OUT with the extension .ccp4)")
    parser.add_argument("--map-coefficients", choices=["WDF", "DF"], default="WDF",
                        help="weighted or plain differences as map coefficients")
    parser.add_argument("-o", "--output", metavar="FILE.csv", default=None,
                        help="also write the peak table to this CSV file")
    parser.set_defaults(image=None)
    parser.add_argument("-n", "--peaks", type=positive_int, default=10, help="peaks of each sign to report")
    parser.add_argument("--sample-rate", type=number(float, at_least=1.0), default=3.0,
                        help="map grid oversampling relative to the resolution limit")
    parser.add_argument("--halves", nargs=2, metavar=("STATE_XVAL", "REFERENCE_XVAL"), default=None,
                        help="half-dataset files (<base>_xval_<i>.mtz) of both: prints CC1/2 of DF")
    return parser


def _read_merged(path, args):
    return read_mtz(path, required=[args.column, args.sigma_column], merged=True, what="merged file")


def _halves(path, args):
    """Half 0 and half 1 of the first repeat of a half-dataset file."""
    ds = read_mtz(path, required=[args.column, args.sigma_column, "repeat", "half"], merged=True,
                  what="half-dataset file")
    first = ds[ds["repeat"] == ds["repeat"].min()]
    halves = [first[first["half"] == h] for h in (0, 1)]
    if any(len(h) == 0 for h in halves):
        raise InputError("needs both halves (0 and 1)", path=path)
    return halves


def _phases(table, args):
    """``(table, phases)``: model phases, or those of an MTZ file (rows without one dropped)."""
    if args.phases.lower().endswith(".mtz"):
        phased = read_mtz(args.phases, required=[args.phase_column], merged=True, what="phased file")
        return phases_from_mtz(table, phased, args.phase_column)
    return table, phases_from_model(table, read_model(args.phases))


def _peak_model(args):
    if args.model is not None:
        return read_model(args.model)
    if args.phases.lower().endswith(".mtz"):
        return None
    return read_model(args.phases)


def _map_path(args):
    return args.map or os.path.splitext(args.out)[0] + ".ccp4"


@user_errors_exit
def main(argv=None):
    """Run ``careless_online.difference``."""
    args = build_parser().parse_args(argv)
    state, reference = _read_merged(args.state, args), _read_merged(args.reference, args)
    with about(args.state):
        table, scale = difference_table(state, reference, args.column, args.sigma_column, args.alpha,
                                        args.scale_bins)
    write_mtz(table, args.out)
    rms = float(np.sqrt(np.mean(np.square(table["DF"].to_numpy(dtype=float)))))
    print(f"{len(table)} reflections; state scaled by k = {scale['k']:.4g}, B = {scale['B']:.3g} A^2; "
          f"rms DF = {rms:.4g}; wrote {args.out}", file=sys.stderr)
    if args.halves:
        with about(args.halves[0]):
            cc = difference_halves_cc(_halves(args.halves[0], args), _halves(args.halves[1], args),
                                      args.column, args.sigma_column)
        print(f"CC1/2 of DF = {cc:.4f}", file=sys.stderr)
    if args.phases is None:
        return
    table, phases = _phases(table, args)
    grid = difference_map(table, phases, column=args.map_coefficients, sample_rate=args.sample_rate)
    print(f"wrote {write_ccp4(grid, _map_path(args))}", file=sys.stderr)
    structure = _peak_model(args)
    if structure is None:
        print("no --model: peaks not reported", file=sys.stderr)
        return
    emit(difference_peaks(grid, structure, n_peaks=args.peaks), args)
