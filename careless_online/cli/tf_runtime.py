"""Import TensorFlow for a command, quietly unless debugging was asked for.

On a machine without a GPU, importing TensorFlow prints start-up notices from
its C++ runtime (oneDNN, "Could not find cuda drivers", ``cuInit`` failures)
that look like errors.  Some are written through absl before its logging is
initialised and obey no environment variable, so the import runs with the
process's standard error (file descriptor 2) pointed at ``/dev/null``; later
C++ messages below FATAL are dropped with ``TF_CPP_MIN_LOG_LEVEL=3``.
Python-side exceptions are unaffected: they are raised after standard error is
restored.
"""

import contextlib
import logging
import os
import sys

#: ``TF_CPP_MIN_LOG_LEVEL`` used unless debugging: only FATAL C++ messages.
QUIET_LEVEL = "3"


@contextlib.contextmanager
def stderr_silenced():
    """Point file descriptor 2 at ``/dev/null`` for the duration of the block.

    The C++ runtime writes to the descriptor directly, so reassigning
    ``sys.stderr`` would not be enough.
    """
    sys.stderr.flush()
    saved = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        yield
    finally:
        sys.stderr.flush()
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


def import_tensorflow(debug=False):
    """Import and return the ``tensorflow`` module, quietly unless ``debug``.

    Parameters
    ----------
    debug : bool, optional
        Keep every TensorFlow, absl and CUDA message (``TF_CPP_MIN_LOG_LEVEL=0``,
        the ``--tf-debug`` flag).

    Returns
    -------
    module
        ``tensorflow``.

    Notes
    -----
    The environment is read by TensorFlow's C++ runtime when it is loaded, so
    the level only takes effect if TensorFlow was not imported yet in this
    process.  It replaces any exported ``TF_CPP_MIN_LOG_LEVEL``: quiet unless
    ``--tf-debug``.
    """
    if debug:
        os.environ["TF_CPP_MIN_LOG_LEVEL"] = "0"
        import tensorflow as tf

        return tf
    os.environ["TF_CPP_MIN_LOG_LEVEL"] = QUIET_LEVEL
    if "tensorflow" in sys.modules:
        return sys.modules["tensorflow"]
    with stderr_silenced():
        import tensorflow as tf
    tf.get_logger().setLevel(logging.ERROR)
    logging.getLogger("absl").setLevel(logging.ERROR)
    return tf
