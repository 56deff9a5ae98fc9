"""``careless_online.isigi``: mean F/SIGF and I/SIGI per resolution shell."""

from careless_online.cli.common import user_errors_exit
from careless_online.cli.completeness import MERGED_FILE
from careless_online.cli.stats_args import about, emit, stats_parser
from careless_online.stats.inputs import read_mtz
from careless_online.stats.plots import data_name, shell_figure
from careless_online.stats.signal import isigi_table


def build_parser():
    """The command's argument parser."""
    parser = stats_parser(
        "careless_online.isigi",
        "Mean F/SIGF and I/SIGI per resolution shell (I/SIGI when the file has I, SIGI). "
        "For anomalous files also over Friedel mates as separate reflections (_anom columns).",
        overall="print only the overall values")
    parser.add_argument("merged", help="merged file, <base>_<i>.mtz")
    return parser


@user_errors_exit
def main(argv=None):
    """Run ``careless_online.isigi``."""
    args = build_parser().parse_args(argv)
    merged = read_mtz(args.merged, required=["F", "SIGF"], merged=True, what=MERGED_FILE)
    with about(args.merged):
        table = isigi_table(merged, bins=args.bins)
    ratios = [c for c in table.columns if "/" in c]
    emit(table, args, figure=lambda t: shell_figure(t, ratios, "mean F/SIGF or I/SIGI (no unit)",
                                                    title=f"Signal to noise of {data_name(args.merged)}"))
