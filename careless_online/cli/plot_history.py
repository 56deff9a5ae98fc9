"""``careless_online.plot_history``: training curves and their last and best values."""

import os

from careless_online.cli.common import user_errors_exit
from careless_online.cli.stats_args import emit, stats_parser
from careless_online.stats.history import history_summary
from careless_online.stats.inputs import read_history
from careless_online.stats.plots import history_figure


def build_parser():
    """The command's argument parser."""
    parser = stats_parser(
        "careless_online.plot_history",
        "Plot the loss terms (log scale where positive) and CCpred (train solid, test "
        "dashed) of training histories against step, and print the last and best value of "
        "each metric (best: lowest loss term, highest CCpred).",
        shells=False)
    parser.add_argument("histories", nargs="+", help="history files, <base>_history.csv")
    return parser


def run_names(paths):
    """Short distinct names of history files (base names, full paths if they clash).

    Parameters
    ----------
    paths : list of str

    Returns
    -------
    list of str
    """
    names = [os.path.basename(p) for p in paths]
    return names if len(set(names)) == len(names) else list(paths)


@user_errors_exit
def main(argv=None):
    """Run ``careless_online.plot_history``."""
    args = build_parser().parse_args(argv)
    histories = {name: read_history(path)
                 for name, path in zip(run_names(args.histories), args.histories)}
    emit(history_summary(histories), args, figure=lambda t: history_figure(histories))
