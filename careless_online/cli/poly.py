"""``careless_online poly``: merge Laue (polychromatic, pink-beam) data, careless-style.

The arguments of ``mono`` (the metadata keys, unmerged MTZ files with a
per-spot wavelength column, the output prefix) and its flags, with the band
and the wavelength column of careless's ``poly``.  Every spot becomes one row
per harmonic inside the band and the resolution limit
(:mod:`careless_online.io.laue`), and the likelihood compares each spot
with the sum of its harmonics' predictions
(:class:`~careless_online.model.laue.LaueMergingModel`).  Give the
wavelength key among the metadata keys (e.g. ``dHKL,Wavelength,X,Y``) so
that the scale network learns the spectrum and the Lorentz factor.
"""

from careless_online.cli import mono
from careless_online.cli.checks import input_format
from careless_online.cli.parser import Parser, positive_float
from careless_online.errors import InputError
from careless_online.io.sources import is_pattern


def add_arguments(parser):
    """Add the ``poly`` arguments (``mono``'s and the Laue group) to ``parser``."""
    mono.add_arguments(parser)
    g = parser.add_argument_group("Laue")
    g.add_argument("-w", "--wavelength-key", default="Wavelength",
                   help="MTZ column of each spot's wavelength (Angstrom)")
    g.add_argument("-l", "--wavelength-range", nargs=2, type=positive_float, default=None, metavar=("LO", "HI"),
                   help="the beam's band in Angstrom: harmonics n h whose wavelength lambda_1/n lies inside it "
                        "add up on a spot (default: the range of the spots' wavelengths)")
    parser.set_defaults(reindexing_ops="none", strategy="single")
    return parser


#: Usage line of ``poly``.
USAGE = mono.USAGE


def build_parser(prog="careless_online poly"):
    """The argparse parser of ``careless_online poly``."""
    return add_arguments(Parser(prog=prog, usage=USAGE, description=__doc__.split("\n\n")[0]))


#: What ``poly`` cannot do (yet), by the flag that asks for it.
_UNSUPPORTED = (
    ("--strategy other than single", lambda args: args.strategy != "single"),
    ("--reindexing-ops other than none", lambda args: args.reindexing_ops.strip().lower() != "none"),
    ("--partiality-prior other than off", lambda args: args.partiality_prior != "off"),
)


def check_laue_arguments(args):
    """Refuse inputs and flags ``poly`` does not handle; one line each (before TensorFlow).

    With ``--live`` a folder or glob pattern is followed for the MTZ files
    arriving there, and the band must be given (``-l``): the wavelengths of
    files still to come are unknown.
    """
    if args.live and args.wavelength_range is None:
        raise InputError("poly --live needs -l/--wavelength-range LO HI: the band of files still to come is unknown")
    for path in args.inputs:
        if args.live and is_pattern(path):
            continue  # followed for the MTZ files that arrive (io.live.followed_formats)
        if input_format(path) != "mtz":
            raise InputError("poly reads unmerged MTZ files with a per-spot wavelength column (streams and DIALS "
                             "files are refused, as by careless poly)", path)
    for flag, asked in _UNSUPPORTED:
        if asked(args):
            raise InputError(f"poly does not support {flag}")


def laue_fields(args):
    """The ``laue`` :class:`~careless_online.io.table.TableOptions` field of the flags.

    The band is ``--wavelength-range``, else the range of the inputs' wavelengths.
    Imported here: the argument checks end before any reader is imported.
    """
    from careless_online.io.laue import LaueOptions, data_band

    band = args.wavelength_range
    if band is None:
        band = data_band(args.inputs, args.wavelength_key)
    return {"laue": LaueOptions(args.wavelength_key, tuple(band))}


def run(args, stop=None):
    """Run ``poly`` for parsed arguments; returns the paths written (see :func:`careless_online.cli.mono.run`)."""
    check_laue_arguments(args)
    return mono.run(args, stop=stop, table_fields=laue_fields)
