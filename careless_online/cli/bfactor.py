"""``careless_online.bfactor``: the Wilson B factor of merged or unmerged data."""

import numpy as np

from careless_online.cli.common import user_errors_exit
from careless_online.cli.parser import Parser, positive_float, positive_int
from careless_online.cli.stats_args import about
from careless_online.stats.inputs import read_mtz
from careless_online.tools.bfactor import MIN_SHELLS, fit_wilson_b, intensities


def build_parser():
    """The command's argument parser."""
    parser = Parser(prog="careless_online.bfactor",
                    description="Fit log <I> = log K - B/(2 d^2) to equal-count resolution shells (a Wilson plot) "
                                "of a merged file (<base>_<i>.mtz: I, or F^2 + SigF^2) or an unmerged MTZ, and "
                                "print B with its standard error, as careless.bfactor does.")
    parser.add_argument("mtz", help="merged or unmerged MTZ file")
    parser.add_argument("-b", "--bins", type=positive_int, default=20,
                        help=f"equal-count shells of 1/d^2 (at least {MIN_SHELLS} are fitted)")
    parser.add_argument("-c", "--isigi-cutoff", type=float, default=1.5,
                        help="fit the shells up to the last one whose mean I/SigI reaches this")
    parser.add_argument("-d", "--dmin", type=positive_float, default=None,
                        help="fit to this resolution (A) instead of the I/SigI limit")
    parser.add_argument("-x", "--dmax", type=positive_float, default=None, help="lowest resolution fitted (A)")
    return parser


@user_errors_exit
def main(argv=None):
    """Run ``careless_online.bfactor``."""
    args = build_parser().parse_args(argv)
    ds = read_mtz(args.mtz, what="MTZ file")
    with about(args.mtz):
        fit = fit_wilson_b(*intensities(ds), bins=args.bins, dmin=args.dmin,
                           dmax=np.inf if args.dmax is None else args.dmax, isigi_cutoff=args.isigi_cutoff)
    print(f"Wilson B: {fit.b:.2f} +- {fit.b_error:.2f} A^2 ({len(fit.inverse_d2)} shells to {fit.dmin:.2f} A)")
