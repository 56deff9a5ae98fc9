"""``careless_online.isigi``: mean F/SIGF and I/SIGI per resolution shell."""

from careless_online.cli.common import user_errors_exit
from careless_online.errors import InputError
from careless_online.io.layout import internal_name
from careless_online.cli.completeness import MERGED_FILE
from careless_online.cli.stats_args import about, emit, stats_parser
from careless_online.stats.inputs import read_mtz
from careless_online.stats.plots import data_name, shell_figure
from careless_online.stats.signal import column_ratio_table, isigi_table


def build_parser():
    """The command's argument parser."""
    parser = stats_parser(
        "careless_online.isigi",
        "Mean F/SIGF and I/SIGI per resolution shell (I/SIGI when the file has I, SIGI). "
        "For anomalous files also over Friedel mates as separate reflections (_anom columns).",
        overall="print only the overall values")
    parser.add_argument("merged", help="merged file, <base>_<i>.mtz")
    parser.add_argument("--intensity-key", default=None,
                        help="instead: the mean ratio of this column to --uncertainty-key's, e.g. 'I(+)' (careless's "
                             "names or the CCP4-style ones)")
    parser.add_argument("--uncertainty-key", default=None, help="the sigma column of --intensity-key, e.g. 'SigI(+)'")
    return parser


def _table(merged, args):
    """The default F/SIGF and I/SIGI table, or the ratio of the two named columns."""
    keys = (args.intensity_key, args.uncertainty_key)
    if keys == (None, None):
        return isigi_table(merged, bins=args.bins)
    if None in keys:
        raise InputError("--intensity-key and --uncertainty-key go together", path=args.merged)
    return column_ratio_table(merged, *map(internal_name, keys), bins=args.bins, label="/".join(keys))


@user_errors_exit
def main(argv=None):
    """Run ``careless_online.isigi``."""
    args = build_parser().parse_args(argv)
    merged = read_mtz(args.merged, required=["F", "SIGF"], merged=True, what=MERGED_FILE)
    with about(args.merged):
        table = _table(merged, args)
    ratios = [c for c in table.columns if "/" in c]
    emit(table, args, figure=lambda t: shell_figure(t, ratios, "mean F/SIGF or I/SIGI (no unit)",
                                                    title=f"Signal to noise of {data_name(args.merged)}"))
