"""``careless_online.ccanom``: CC of anomalous differences between half-dataset merges."""

from careless_online.cli.cchalf import XVAL_FILE
from careless_online.cli.common import user_errors_exit
from careless_online.cli.stats_args import about, add_method, emit, methods, stats_parser
from careless_online.stats.halves import HALF_COLUMNS, ccanom_table
from careless_online.stats.inputs import friedel_columns, read_mtz
from careless_online.stats.plots import data_name, shell_figure


def build_parser():
    """The command's argument parser."""
    parser = stats_parser(
        "careless_online.ccanom",
        "CCanom per resolution shell: correlation between the two half-dataset merges of "
        "the anomalous differences F(+) - F(-) of acentric reflections, averaged over repeats.",
        overall="print only the overall CCanom")
    parser.add_argument("xval", help="half-dataset merges with Friedel columns, "
                                     "<base>_xval_<i>.mtz")
    add_method(parser, default="both")
    parser.add_argument("--intensities", action="store_true", default=False,
                        help="use I(+) - I(-) instead of F(+) - F(-)")
    return parser


@user_errors_exit
def main(argv=None):
    """Run ``careless_online.ccanom``."""
    args = build_parser().parse_args(argv)
    column = "I" if args.intensities else "F"
    xval = read_mtz(args.xval, required=[*friedel_columns(column), *HALF_COLUMNS], merged=True,
                    what=f"anomalous {XVAL_FILE}")
    with about(args.xval):
        table = ccanom_table(xval, column, bins=args.bins, methods=methods(args.method))
    cc = [c for c in table.columns if c.startswith("CCanom")]
    emit(table, args, figure=lambda t: shell_figure(t, cc, "CCanom (correlation, no unit)",
                                                   title=f"CCanom of {data_name(args.xval)}"))
