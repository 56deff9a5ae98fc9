"""User-facing errors.

Every problem caused by the user's input (a missing column, a bad file, an
inconsistent space group, ...) is raised as :class:`InputError`.  The command
line catches it and prints its one-line message without a traceback.
"""


class InputError(ValueError):
    """A problem with user input, reported as one line naming the culprit.

    Parameters
    ----------
    message : str
        What is wrong, phrased for a crystallographer.
    path : str, optional
        The file the problem was found in; prefixed to the message.
    """

    def __init__(self, message, path=None):
        self.path = None if path is None else str(path)
        self.message = message
        text = message if self.path is None else f"{self.path}: {message}"
        super().__init__(text.replace("\n", " "))

    def __reduce__(self):
        # keep message and path apart when raised in a worker process
        return (type(self), (self.message, self.path))


class DataError(InputError):
    """The data hold too little for the requested computation.

    Raised by computations that cannot tell which file the data came from
    (e.g. "no reflections to assign to resolution shells"); the command that
    read the file adds its path (see
    :func:`careless_online.cli.stats_args.about`).  Programming errors stay
    ``ValueError``/``TypeError`` and are never reported as user errors.

    Parameters
    ----------
    message : str
        What is missing, phrased for a crystallographer.
    path : str, optional
        The file, when known.
    """
