"""Helpers shared by every command-line entry point."""

import contextlib
import functools
import os
import sys

from careless_online.errors import InputError
from careless_online.training.interrupt import Interrupted


def user_errors_exit(func):
    """Decorate a ``main(argv)`` so that user errors end in one line, exit code 2.

    :class:`~careless_online.errors.InputError` (bad file, bad column, bad flag
    value) and :class:`FileNotFoundError` print ``<prog>: error: <message>`` on
    stderr and exit with status 2, without a traceback.  Programming errors
    still raise normally.  A closed output pipe (``| head``) ends the command
    quietly.

    Parameters
    ----------
    func : callable
        The ``main(argv=None)`` function of a command.

    Returns
    -------
    callable
        The wrapped function; it returns ``func``'s return value (or 0).
    """

    @functools.wraps(func)
    def wrapper(argv=None):
        prog = os.path.basename(sys.argv[0]) if argv is None else func.__module__.split(".")[-1]
        try:
            result = func(argv)
        except InputError as err:
            print(f"{prog}: error: {err}", file=sys.stderr)
            raise SystemExit(2)
        except FileNotFoundError as err:
            name = err.filename if err.filename else str(err)
            print(f"{prog}: error: {name}: no such file", file=sys.stderr)
            raise SystemExit(2)
        except KeyboardInterrupt as err:
            _interrupted(prog, err)
        except BrokenPipeError:
            # the reader of our output went away (e.g. `| head`): stop quietly
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
            raise SystemExit(1)
        return 0 if result is None else result

    return wrapper


def _interrupted(prog, err):
    """End an interrupted command: its message on one line, status 128 + the signal.

    An interruption by a real signal (:mod:`careless_online.training.interrupt`)
    ends the process at once, once the cleanups of the ``with``/``finally``
    blocks it went through have run: TensorFlow's runtime otherwise takes
    seconds to tear down.
    """
    message = str(err) if isinstance(err, Interrupted) else "interrupted"
    print(f"{prog}: {message}", file=sys.stderr)
    status = err.exit_status if isinstance(err, Interrupted) else 130
    if getattr(err, "from_signal", False):
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(status)
    raise SystemExit(status)


@contextlib.contextmanager
def no_new_empty_folders(paths):
    """Remove the folders of ``paths`` made inside the block if it fails and leaves them empty.

    Parameters
    ----------
    paths : list of str
        Folders the command may create (output folder, cache folder); those
        that exist beforehand are never touched, and only empty ones are
        removed (:func:`os.rmdir` refuses the others).
    """
    new = []
    for path in paths:
        path = os.path.abspath(path)
        while not os.path.exists(path) and path not in new:
            new.append(path)
            path = os.path.dirname(path)
    try:
        yield
    except BaseException:
        for path in sorted(new, key=len, reverse=True):
            with contextlib.suppress(OSError):
                os.rmdir(path)
        raise
