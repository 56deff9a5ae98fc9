"""``careless_online.apply_bfactor``: rescale a merged file by a B factor."""

from careless_online.cli.common import user_errors_exit
from careless_online.cli.parser import Parser, number
from careless_online.errors import InputError
from careless_online.stats.inputs import read_mtz
from careless_online.tools.bfactor import apply_b, column_powers
from careless_online.tools.files import write_output


def build_parser():
    """The command's argument parser."""
    parser = Parser(prog="careless_online.apply_bfactor",
                    description="Multiply amplitudes (F, F(+), F(-) and their sigmas) by exp(-B/(4 d^2)) and "
                                "intensities (I, I(+), I(-) and their sigmas) by exp(-B/(2 d^2)), as "
                                "careless.apply_bfactor does; other columns are copied.")
    parser.add_argument("mtz_in", help="merged MTZ file")
    parser.add_argument("mtz_out", help="output MTZ file (never one of the inputs)")
    parser.add_argument("-b", "--wilson-b", type=number(float), required=True,
                        help="B factor (A^2) to apply; negative values sharpen")
    return parser


@user_errors_exit
def main(argv=None):
    """Run ``careless_online.apply_bfactor``."""
    args = build_parser().parse_args(argv)
    ds = read_mtz(args.mtz_in, what="MTZ file")
    if not column_powers(ds):
        raise InputError("no amplitude or intensity column to rescale", args.mtz_in)
    print(f"wrote {write_output(apply_b(ds, args.wilson_b), args.mtz_out, [args.mtz_in])}")
