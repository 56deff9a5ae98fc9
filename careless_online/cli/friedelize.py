"""``careless_online.friedelize``: split unmerged data into Friedel-plus and Friedel-minus halves."""

from careless_online.cli.common import user_errors_exit
from careless_online.cli.parser import Parser
from careless_online.cli.stats_args import about
from careless_online.stats.inputs import read_mtz
from careless_online.tools.files import check_output, write_output
from careless_online.tools.friedel import friedel_halves


def build_parser():
    """The command's argument parser."""
    parser = Parser(prog="careless_online.friedelize",
                    description="Write the observations of Friedel-plus reflections (and all centric ones) to one "
                                "unmerged MTZ and those of Friedel-minus reflections to another, as careless's "
                                "friedelize does: merge each without --anomalous and join the merges with "
                                "careless_online.unfriedelize into an anomalous table.")
    parser.add_argument("unmerged_mtz", help="unmerged MTZ file")
    parser.add_argument("-p", "--plus", default="friedel_plus.mtz", help="output of the plus half")
    parser.add_argument("-m", "--minus", default="friedel_minus.mtz", help="output of the minus half")
    return parser


@user_errors_exit
def main(argv=None):
    """Run ``careless_online.friedelize``."""
    args = build_parser().parse_args(argv)
    ds = read_mtz(args.unmerged_mtz, merged=False, what="unmerged MTZ file")
    with about(args.unmerged_mtz):
        plus = friedel_halves(ds)
    for path in (args.plus, args.minus):
        check_output(path, [args.unmerged_mtz])
    print(f"wrote {write_output(ds[plus], args.plus, [args.unmerged_mtz])} ({int(plus.sum())} observations)")
    print(f"wrote {write_output(ds[~plus], args.minus, [args.unmerged_mtz])} ({int((~plus).sum())} observations)")
