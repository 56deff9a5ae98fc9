"""``careless_online.anomalous_peaks``: anomalous map peak heights at heavy atoms."""

import gemmi

from careless_online.cli.common import user_errors_exit
from careless_online.cli.completeness import MERGED_FILE
from careless_online.cli.parser import non_negative_float, number, positive_int
from careless_online.cli.stats_args import about, emit, stats_parser
from careless_online.errors import InputError
from careless_online.stats.inputs import friedel_columns, read_mtz
from careless_online.stats.maps import DEFAULT_ELEMENTS, anomalous_peak_table, parse_elements
from careless_online.stats.plots import data_name, peaks_figure


def build_parser():
    """The command's argument parser."""
    parser = stats_parser(
        "careless_online.anomalous_peaks",
        "Anomalous difference map from the merged F(+) - F(-) with the model's phases minus "
        "90 degrees (gemmi), in units of its standard deviation: prints the height at each "
        "selected atom and the highest other peaks with their nearest atom.",
        shells=False)
    parser.add_argument("merged", help="merged anomalous file, <base>_<i>.mtz")
    parser.add_argument("model", help="model (PDB or mmCIF) in the same cell and origin")
    parser.add_argument("--elements", default=DEFAULT_ELEMENTS,
                        help="comma-separated elements whose atoms are reported; "
                             "'metals' selects every metal")
    parser.add_argument("-n", "--peaks", type=positive_int, default=5,
                        help="number of other peaks to report")
    parser.add_argument("--exclude", type=non_negative_float, default=2.0,
                        help="other peaks must be this far (Å) from the selected atoms")
    parser.add_argument("--sample-rate", type=number(float, at_least=1.0), default=3.0,
                        help="map grid oversampling relative to the resolution limit")
    return parser


def read_model(path):
    """Read a model file with gemmi, reporting unreadable files as input errors.

    Parameters
    ----------
    path : str

    Returns
    -------
    gemmi.Structure
    """
    try:
        structure = gemmi.read_structure(path)
    except (RuntimeError, ValueError) as err:
        raise InputError(f"not a readable model file ({err})", path=path) from None
    if len(structure) == 0 or not any(True for _ in structure[0].all()):
        raise InputError("the model has no atoms", path=path)
    return structure


@user_errors_exit
def main(argv=None):
    """Run ``careless_online.anomalous_peaks``."""
    args = build_parser().parse_args(argv)
    try:
        parse_elements(args.elements)
    except ValueError as err:
        raise InputError(f"--elements: {err}") from None
    merged = read_mtz(args.merged, required=friedel_columns("F"), merged=True,
                      what=f"anomalous {MERGED_FILE}")
    structure = read_model(args.model)
    with about(args.merged):
        table = anomalous_peak_table(merged, structure, elements=args.elements,
                                     n_peaks=args.peaks, exclude=args.exclude,
                                     sample_rate=args.sample_rate)
    title = f"Anomalous difference map of {data_name(args.merged)}: {args.elements} atoms and other peaks"
    emit(table, args, figure=lambda t: peaks_figure(t, title))
