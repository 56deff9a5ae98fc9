"""``careless_online.image_ccpred``: per-image CC between observed and predicted intensities."""

import sys

from careless_online.cli.ccpred import predictions_parser, read_predictions
from careless_online.cli.common import user_errors_exit
from careless_online.cli.stats_args import about, emit
from careless_online.stats.plots import data_name, image_cc_figure
from careless_online.stats.predictions import image_cc_summary, image_cc_table


def build_parser():
    """The command's argument parser."""
    return predictions_parser(
        "careless_online.image_ccpred",
        "Per-image correlation between observed (Iobs) and predicted (Ipred) intensities. "
        "Prints one row per image (file_id, image_id, test, n, cc) followed by '#' comment "
        "lines with the mean and median over training and held-out images.",
        "spearman", shells=False,
        overall="print only the summary table (images, mean and median CC per split)")


@user_errors_exit
def main(argv=None):
    """Run ``careless_online.image_ccpred``."""
    args = build_parser().parse_args(argv)
    predictions = read_predictions(args.predictions)
    with about(args.predictions):
        per_image = image_cc_table(predictions, method=args.method)
    summary = image_cc_summary(per_image)
    title = f"Per-image CCpred of {data_name(args.predictions)}"
    if args.overall:
        emit(summary, args, figure=lambda t: image_cc_figure(per_image, title))
        return
    emit(per_image, args, figure=lambda t: image_cc_figure(t, title))
    for split, row in summary.iterrows():
        print(f"# {split}: mean CC {row['mean_cc']:.4f}, median CC {row['median_cc']:.4f} "
              f"over {int(row['images'])} images", file=sys.stdout)
