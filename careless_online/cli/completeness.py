"""``careless_online.completeness``: completeness per resolution shell."""

from careless_online.cli.common import user_errors_exit
from careless_online.cli.stats_args import about, emit, stats_parser
from careless_online.stats.completeness import completeness_table
from careless_online.stats.inputs import read_mtz
from careless_online.stats.plots import data_name, shell_figure

#: What the input file is called in error messages.
MERGED_FILE = "merged MTZ file (<base>_<i>.mtz)"


def build_parser():
    """The command's argument parser."""
    parser = stats_parser(
        "careless_online.completeness",
        "Completeness per resolution shell against the full reciprocal ASU of the space "
        "group between the data's resolution limits (expected reflections from "
        "reciprocalspaceship's generate_reciprocal_asu); with F(+)/F(-) columns also the completeness of Friedel "
        "mates as separate reflections and the anomalous completeness.",
        overall="print only the overall completeness")
    parser.add_argument("merged", help="merged file, <base>_<i>.mtz")
    return parser


@user_errors_exit
def main(argv=None):
    """Run ``careless_online.completeness``."""
    args = build_parser().parse_args(argv)
    merged = read_mtz(args.merged, required=["F"], merged=True, what=MERGED_FILE)
    with about(args.merged):
        table = completeness_table(merged, "F", bins=args.bins)
    kinds = [c for c in table.columns if c.startswith("completeness")]
    emit(table, args, figure=lambda t: shell_figure(t, kinds, "completeness (fraction of the ASU)",
                                                   title=f"Completeness of {data_name(args.merged)}"))
