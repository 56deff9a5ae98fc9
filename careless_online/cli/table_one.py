"""``careless_online.table_one``: the data-collection statistics of a merge, as a paper prints them."""

from careless_online.cli.common import user_errors_exit
from careless_online.cli.cchalf import XVAL_FILE
from careless_online.cli.completeness import MERGED_FILE
from careless_online.cli.parser import Parser, number
from careless_online.cli.stats_args import about
from careless_online.io.atomic import write_atomically
from careless_online.stats.binning import DEFAULT_SHELLS
from careless_online.stats.inputs import read_mtz
from careless_online.tools.table_one import paper_lines, table_one


def build_parser():
    """The command's argument parser."""
    parser = Parser(prog="careless_online.table_one",
                    description="Resolution, unique reflections, multiplicity, completeness, mean I/sigma(I), "
                                "CC1/2 and (anomalous half-dataset merges) CCanom overall and in the outer shell, "
                                "printed as 'statistic<TAB>overall (outer)' lines a paper's table takes; the "
                                "numbers are those of careless_online.completeness, .isigi, .cchalf --intensities "
                                "and .ccanom --intensities on shells shared by all of them.")
    parser.add_argument("merged", help="merged file, <base>_<i>.mtz")
    parser.add_argument("xval", nargs="?", default=None,
                        help="half-dataset merges, <base>_xval_<i>.mtz (for CC1/2 and CCanom)")
    parser.add_argument("-b", "--bins", type=number(int, at_least=2), default=DEFAULT_SHELLS,
                        help="equal-count resolution shells; the outer shell is the last")
    parser.add_argument("-o", "--output", metavar="FILE.csv", default=None,
                        help="also write the table (overall and outer shell columns) to this CSV file")
    return parser


@user_errors_exit
def main(argv=None):
    """Run ``careless_online.table_one``."""
    args = build_parser().parse_args(argv)
    merged = read_mtz(args.merged, merged=True, what=MERGED_FILE)
    xval = None if args.xval is None else read_mtz(args.xval, required=["repeat", "half"], merged=True,
                                                  what=XVAL_FILE)
    with about(args.xval or args.merged):
        table = table_one(merged, xval, bins=args.bins)
    for line in paper_lines(table):
        print(line)
    if args.output:
        write_atomically(args.output, lambda tmp: table.to_csv(tmp, float_format="%.6g", index_label="statistic"))
