"""``careless_online.xds2mtz``: convert an XDS_ASCII.HKL file into an unmerged MTZ."""

import os

from careless_online.cli.common import user_errors_exit
from careless_online.cli.parser import Parser, positive_float
from careless_online.errors import InputError
from careless_online.io import writers
from careless_online.tools.files import check_output
from careless_online.tools.xds import read_xds_ascii


def build_parser():
    """The command's argument parser."""
    parser = Parser(prog="careless_online.xds2mtz",
                    description="Write the unmerged reflections of an XDS_ASCII.HKL file to an MTZ that "
                                "careless_online mono reads: columns named from the file's !ITEM_ header (I, SIGI, "
                                "XDET, YDET, ZDET as careless.xds2mtz names them), BATCH = ZDET rounded; "
                                "observations XDS rejected (negative sigma) are dropped.")
    parser.add_argument("hkl", help="XDS_ASCII.HKL file")
    parser.add_argument("mtz_out", help="output unmerged MTZ file")
    parser.add_argument("-s", "--spacegroup", default=None, help="override the file's space group (name or number)")
    parser.add_argument("-c", "--cell", type=positive_float, nargs=6, default=None,
                        metavar=("A", "B", "C", "ALPHA", "BETA", "GAMMA"), help="override the file's unit cell")
    return parser


@user_errors_exit
def main(argv=None):
    """Run ``careless_online.xds2mtz``."""
    args = build_parser().parse_args(argv)
    if not os.path.exists(args.hkl):
        raise FileNotFoundError(2, "No such file", args.hkl)
    check_output(args.mtz_out, [args.hkl])
    ds, wavelength, rejected = read_xds_ascii(args.hkl, args.spacegroup, args.cell)
    if len(ds) == 0:
        raise InputError("no reflections (after dropping those XDS rejected)", args.hkl)
    writers.write_mtz(ds, args.mtz_out, wavelength)
    print(f"wrote {args.mtz_out}: {len(ds)} observations on {ds['BATCH'].nunique()} images"
          + (f" ({rejected} rejected by XDS dropped)" if rejected else ""))
