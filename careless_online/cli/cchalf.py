"""``careless_online.cchalf``: CC1/2 between half-dataset merges."""

from careless_online.cli.common import user_errors_exit
from careless_online.cli.stats_args import about, add_method, emit, methods, stats_parser
from careless_online.stats.halves import HALF_COLUMNS, cchalf_table
from careless_online.stats.inputs import read_mtz
from careless_online.stats.plots import data_name, shell_figure

#: What the input file is called in error messages.
XVAL_FILE = "half-dataset MTZ file (<base>_xval_<i>.mtz)"


def build_parser():
    """The command's argument parser."""
    parser = stats_parser(
        "careless_online.cchalf",
        "CC1/2 per resolution shell between the two half-dataset merges of each repeat "
        "(matched on H,K,L), averaged over repeats: of the merged intensities I by default, as "
        "careless.cchalf, or of the amplitudes F. Friedel mates are compared as separate "
        "reflections when the file has (+)/(-) columns.",
        overall="print only the overall CC1/2")
    parser.add_argument("xval", help="half-dataset merges, <base>_xval_<i>.mtz")
    add_method(parser, default="both")
    quantity = parser.add_mutually_exclusive_group()
    quantity.add_argument("--use-structure-factors", "--amplitudes", dest="column", action="store_const",
                          const="F", default="I", help="compare amplitudes F instead of intensities I (the default)")
    quantity.add_argument("--intensities", dest="column", action="store_const", const="I",
                          help="compare intensities I (the default; kept for scripts written for "
                               "careless_online before it followed careless.cchalf)")
    parser.add_argument("--merge-friedel", action="store_true", default=False,
                        help="use the Friedel-merged column even when (+)/(-) columns exist")
    return parser


@user_errors_exit
def main(argv=None):
    """Run ``careless_online.cchalf``."""
    args = build_parser().parse_args(argv)
    column = args.column
    xval = read_mtz(args.xval, required=[column, *HALF_COLUMNS], merged=True, what=XVAL_FILE)
    with about(args.xval):
        table = cchalf_table(xval, column, bins=args.bins, methods=methods(args.method),
                             anomalous=False if args.merge_friedel else "auto")
    cc = [c for c in table.columns if c.startswith("CC1/2")]
    emit(table, args, figure=lambda t: shell_figure(t, cc, "CC1/2 (correlation, no unit)",
                                                   title=f"CC1/2 of {data_name(args.xval)}"))
