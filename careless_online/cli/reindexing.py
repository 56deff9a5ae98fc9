"""``careless_online.reindexing``: the indexing setting the model chose for each image, summarized."""

import gemmi

from careless_online.cli.ccpred import PREDICTIONS_FILE
from careless_online.cli.common import user_errors_exit
from careless_online.cli.stats_args import emit, stats_parser
from careless_online.stats.inputs import read_mtz
from careless_online.stats.plots import data_name
from careless_online.ambiguity.outputs import operators_from_history
from careless_online.stats.settings import SETTINGS_REQUIRED, image_settings, margin_figure, setting_table


def build_parser():
    """The command's argument parser."""
    parser = stats_parser(
        "careless_online.reindexing",
        "Indexing ambiguity: the fraction of images the model put in each indexing setting and how confident "
        "the choices are (median margin over the runner-up in standard deviations, median confidence, images "
        "flagged ambiguous), from a predictions file of a merge with --reindexing-ops. Prints one row per "
        "setting and an overall row; --per-image prints one row per image instead.",
        shells=False, overall="print only the overall row")
    parser.add_argument("predictions", help="predictions file, <base>_predictions_<i>.mtz")
    parser.add_argument("--per-image", action="store_true",
                        help="one row per image (file_id, image_id, setting, margin, confidence, ambiguous, test)")
    return parser


@user_errors_exit
def main(argv=None):
    """Run ``careless_online.reindexing``."""
    args = build_parser().parse_args(argv)
    predictions = read_mtz(args.predictions, required=SETTINGS_REQUIRED,
                           what=f"{PREDICTIONS_FILE} of a merge with a setting choice (--reindexing-ops)")
    operators = operators_from_history(gemmi.read_mtz_file(str(args.predictions), with_data=False).history)
    per_image = image_settings(predictions)
    title = f"Indexing settings of {data_name(args.predictions)}"
    figure = lambda t: margin_figure(per_image, operators, title)  # noqa: E731
    if args.per_image:
        emit(per_image.assign(ambiguous=per_image["ambiguous"].astype(int)).reset_index(), args, figure=figure)
        return
    emit(setting_table(per_image, operators), args, figure=figure)
