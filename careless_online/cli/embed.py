"""``--embed``: an interactive Python shell on a trained merge, after its outputs are written."""

import code
import importlib.util
import sys

#: What the shell's banner lists (the names in its namespace).
NAMES = ("model", "trainer", "manifest", "settings", "written")


def banner(namespace):
    """The shell's first lines: the names at hand and how to leave."""
    names = ", ".join(name for name in NAMES if name in namespace)
    return (f"careless_online --embed: the merge's outputs are written; at hand: {names} "
            "(e.g. model.summary(), written['merged']). Leave with exit() or Ctrl-D.")


def open_shell(namespace, stdin=None):
    """Open an interactive shell whose globals are ``namespace``.

    IPython's shell when IPython is installed and standard input is a
    terminal, else Python's own :func:`code.interact` (which also reads
    piped commands, one per line).

    Parameters
    ----------
    namespace : dict
        Names available in the shell.
    stdin : file-like, optional
        Read instead of ``sys.stdin`` (tests).
    """
    stream = sys.stdin if stdin is None else stdin
    terminal = stdin is None and stream.isatty()
    if terminal and _has_ipython():
        from IPython import embed

        embed(user_ns=dict(namespace), banner1=banner(namespace), colors="neutral")
        return
    code.interact(banner=banner(namespace), readfunc=None if terminal else _line_reader(stream),
                  local=dict(namespace), exitmsg="careless_online --embed: shell closed")


def _line_reader(stream):
    """``input()`` for a stream that is not a terminal: one line per call, EOFError at its end, no prompt."""
    def read(prompt=""):
        line = stream.readline()
        if not line:
            raise EOFError
        return line.rstrip("\n")
    return read


def _has_ipython():
    """Whether IPython is installed."""
    return importlib.util.find_spec("IPython") is not None
