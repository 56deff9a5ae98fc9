"""``careless_online.unfriedelize``: join the merges of the two Friedel halves into an anomalous table."""

from careless_online.cli.common import user_errors_exit
from careless_online.cli.parser import Parser
from careless_online.cli.stats_args import about
from careless_online.stats.inputs import read_mtz
from careless_online.tools.files import write_output
from careless_online.tools.friedel import join_halves


def build_parser():
    """The command's argument parser."""
    parser = Parser(prog="careless_online.unfriedelize",
                    description="Join the merges of careless_online.friedelize's two halves: each column X of "
                                "both files becomes X(+) (from the plus merge) and X(-) (from the minus merge), "
                                "NaN for the X(-) of centric reflections, as careless's unfriedelize does.")
    parser.add_argument("plus_mtz", help="merge of the plus half")
    parser.add_argument("minus_mtz", help="merge of the minus half")
    parser.add_argument("out_mtz", help="output anomalous MTZ file")
    return parser


@user_errors_exit
def main(argv=None):
    """Run ``careless_online.unfriedelize``."""
    args = build_parser().parse_args(argv)
    plus = read_mtz(args.plus_mtz, merged=True, what="merged MTZ file")
    minus = read_mtz(args.minus_mtz, merged=True, what="merged MTZ file")
    with about(args.minus_mtz):
        table = join_halves(plus, minus)
    print(f"wrote {write_output(table, args.out_mtz, [args.plus_mtz, args.minus_mtz])}")
