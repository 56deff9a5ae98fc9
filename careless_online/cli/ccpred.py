"""``careless_online.ccpred``: CC between observed and predicted intensities."""

from careless_online.cli.common import user_errors_exit
from careless_online.cli.stats_args import about, add_method, emit, stats_parser
from careless_online.stats.inputs import read_mtz
from careless_online.stats.plots import data_name, shell_figure
from careless_online.stats.predictions import PREDICTION_COLUMNS, ccpred_table

#: What the input file is called in error messages.
PREDICTIONS_FILE = "predictions MTZ file (<base>_predictions_<i>.mtz)"


def predictions_parser(prog, description, method, **options):
    """The parser of a command reading one predictions file (``stats_parser`` options, a ``--method``)."""
    parser = stats_parser(prog, description, **options)
    parser.add_argument("predictions", help="predictions file, <base>_predictions_<i>.mtz")
    add_method(parser, default=method, both=False)
    return parser


def read_predictions(path):
    """The predictions file at ``path``, checked for the columns CCpred needs."""
    return read_mtz(path, required=PREDICTION_COLUMNS, what=PREDICTIONS_FILE)


def build_parser():
    """The command's argument parser."""
    return predictions_parser(
        "careless_online.ccpred",
        "CCpred per resolution shell: correlation between observed (Iobs) and predicted "
        "(Ipred) intensities, separately for training (test=0) and held-out (test=1) images.",
        "pearson", overall="print only the overall CCpred")


@user_errors_exit
def main(argv=None):
    """Run ``careless_online.ccpred``."""
    args = build_parser().parse_args(argv)
    predictions = read_predictions(args.predictions)
    with about(args.predictions):
        table = ccpred_table(predictions, bins=args.bins, method=args.method)
    emit(table, args, figure=lambda t: shell_figure(t, ["CCpred_train", "CCpred_test"],
                                                    "CCpred (pooled correlation of Iobs and Ipred)",
                                                    title=f"CCpred of {data_name(args.predictions)}"))
