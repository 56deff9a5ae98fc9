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
        "mates are compared as separate reflections when the file has I(+)/I(-) columns.",
        overall="print only the overall Rsplit")
    parser.add_argument("xval", help="half-dataset merges, <base>_xval_<i>.mtz")
    parser.add_argument("--merge-friedel", action="store_true", default=False,
                        help="use the Friedel-merged I even when I(+)/I(-) columns exist")
    return parser


@user_errors_exit
def main(argv=None):
    """Run ``careless_online.rsplit``."""
    args = build_parser().parse_args(argv)
    xval = read_mtz(args.xval, required=["I", *HALF_COLUMNS], merged=True, what=XVAL_FILE)
    with about(args.xval):
        table = rsplit_table(xval, "I", bins=args.bins,
                             anomalous=False if args.merge_friedel else "auto")
    emit(table, args, figure=lambda t: shell_figure(t, ["Rsplit"], "Rsplit (no unit)",
                                                   title=f"Rsplit of {data_name(args.xval)}"))
