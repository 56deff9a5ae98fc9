"""``careless_online.rsplit``: Rsplit between half-dataset merges."""

from careless_online.cli.cchalf import XVAL_FILE
from careless_online.cli.common import user_errors_exit
from careless_online.cli.stats_args import about, emit, stats_parser
from careless_online.stats.halves import HALF_COLUMNS, rsplit_table
from careless_online.stats.inputs import read_mtz
from careless_online.stats.plots import data_name, shell_figure


def build_parser():
    """The command's argument parser."""
    parser = stats_parser(
        "careless_online.rsplit",
        "Rsplit per resolution shell between the two half-dataset merges of each repeat: "
        "sum|I1 - I2| / (sqrt(2) * 0.5 * sum(I1 + I2)), averaged over repeats. Friedel "
        "mates are compared as separate reflections when the file has I(+)/I(-) columns. "
        "careless.rsplit's Rsplit is that of --use-structure-factors --fit-scale.",
        overall="print only the overall Rsplit")
    parser.add_argument("xval", help="half-dataset merges, <base>_xval_<i>.mtz")
    parser.add_argument("--merge-friedel", action="store_true", default=False,
                        help="use the Friedel-merged I even when I(+)/I(-) columns exist")
    parser.add_argument("--use-structure-factors", "--amplitudes", dest="column", action="store_const",
                        const="F", default="I", help="compare amplitudes F instead of intensities I (the default)")
    parser.add_argument("--fit-scale", action="store_true", default=False,
                        help="scale the second half by the factor k that minimizes Rsplit in each shell: "
                             "sqrt(2) min_k sum|x1 - k x2| / sum(x1 + k x2)")
    return parser


@user_errors_exit
def main(argv=None):
    """Run ``careless_online.rsplit``."""
    args = build_parser().parse_args(argv)
    xval = read_mtz(args.xval, required=[args.column, *HALF_COLUMNS], merged=True, what=XVAL_FILE)
    with about(args.xval):
        table = rsplit_table(xval, args.column, bins=args.bins,
                             anomalous=False if args.merge_friedel else "auto", fit_scale=args.fit_scale)
    emit(table, args, figure=lambda t: shell_figure(t, ["Rsplit"], "Rsplit (no unit)",
                                                   title=f"Rsplit of {data_name(args.xval)}"))
