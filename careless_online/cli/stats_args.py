"""Arguments and output shared by the statistics commands (cchalf, ccpred, ...)."""

import argparse
import contextlib
import os
import sys

from careless_online.cli.parser import Parser, positive_int
from careless_online.errors import DataError, InputError
from careless_online.io.atomic import write_atomically
from careless_online.stats.binning import DEFAULT_SHELLS, OVERALL, SHELLS_HELP
from careless_online.stats.plots import save_figure, supported_image_formats


def stats_parser(prog, description, shells=True, overall=None):
    """An argument parser with the options every statistics command shares.

    Adds ``-o/--output`` (CSV), ``-i/--image`` (figure) and, optionally,
    ``-b/--bins`` and ``--overall``.

    Parameters
    ----------
    prog : str
        Command name.
    description : str
    shells : bool, optional
        Whether the command reports resolution shells (adds ``-b/--bins``).
    overall : str, optional
        Help text of ``--overall``; without it the flag is not added.

    Returns
    -------
    careless_online.cli.parser.Parser
    """
    parser = Parser(prog=prog, description=description)
    parser.add_argument("-o", "--output", metavar="FILE.csv", default=None,
                        help="also write the table to this CSV file")
    parser.add_argument("-i", "--image", metavar="FILE.png", default=None, type=image_file,
                        help="write a figure to this image file (format from its extension: png, pdf, svg, ...)")
    if shells:
        parser.add_argument("-b", "--bins", type=positive_int, default=DEFAULT_SHELLS,
                            help=f"number of resolution shells; {SHELLS_HELP}")
    if overall:
        parser.add_argument("--overall", action="store_true", default=False, help=overall)
    return parser


def image_file(path):
    """An argparse ``type`` for ``-i``: a file name whose extension matplotlib can write.

    Raises
    ------
    argparse.ArgumentTypeError
        For a missing or unknown extension (``x.pnj``), before any data are read.
    """
    extension = os.path.splitext(path)[1].lower().lstrip(".")
    if extension not in supported_image_formats():
        raise argparse.ArgumentTypeError(f"unknown image format {extension or '(no extension)'!r} of {path} "
                                         f"(use one of {', '.join(sorted(supported_image_formats()))})")
    return path


def add_method(parser, default, both=True):
    """Add ``--method`` (pearson, spearman and, optionally, both).

    Parameters
    ----------
    parser : argparse.ArgumentParser
    default : str
    both : bool, optional
        Whether ``both`` is allowed.
    """
    choices = ["pearson", "spearman"] + (["both"] if both else [])
    parser.add_argument("--method", choices=choices, default=default,
                        help="correlation coefficient")


def methods(choice):
    """The correlation methods selected by a ``--method`` value.

    Parameters
    ----------
    choice : str

    Returns
    -------
    tuple of str
    """
    return ("pearson", "spearman") if choice == "both" else (choice,)


@contextlib.contextmanager
def about(path):
    """Name ``path`` in the data errors raised while computing its statistics.

    Only :class:`~careless_online.errors.DataError` (too little data for the
    statistic) is caught; other exceptions are bugs and propagate unchanged.

    Parameters
    ----------
    path : str
        The file the statistics are computed from.
    """
    try:
        yield
    except DataError as err:
        raise InputError(err.message, path=err.path or path) from None


def emit(table, args, figure=None, stream=None):
    """Print a table as CSV, and write the CSV file and figure if requested.

    Parameters
    ----------
    table : pandas.DataFrame
        The table; with ``args.overall`` only its ``overall`` row is printed.
    args : argparse.Namespace
        Parsed arguments (``output``, ``image`` and possibly ``overall``).
    figure : callable, optional
        ``figure(table) -> matplotlib.figure.Figure``, called with the full
        table when ``args.image`` is set.
    stream : file-like, optional
        Where to print; standard output by default.
    """
    stream = sys.stdout if stream is None else stream
    overall_only = getattr(args, "overall", False) and OVERALL in table.index
    shown = table.loc[[OVERALL]] if overall_only else table
    index = shown.index.name is not None
    shown.to_csv(stream, float_format="%.4g", index=index)
    if args.output:
        write_atomically(args.output, lambda tmp: shown.to_csv(tmp, float_format="%.6g", index=index))
    if args.image and figure is not None:
        save_figure(figure(table), args.image)
