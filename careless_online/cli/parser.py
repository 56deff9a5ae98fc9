"""The argument parser every careless_online command uses, and checked number types.

:class:`Parser` turns every parsing problem into an
:class:`~careless_online.errors.InputError` (one line, exit status 2), refuses
abbreviated flags, prints the usage line of the (sub-)command whose arguments
were wrong, and suggests the closest known flag for a misspelt one.
:class:`Formatter` shows each default once, and none for flags that are off
or unset by default.
"""

import argparse
import difflib
import math
import sys

from careless_online.errors import InputError


class Formatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """Help formatter: ``(default: ...)`` once, only for meaningful defaults.

    The default is not added when the help text already names one (it then
    says what the default means, e.g. "default: the data's"), when it is
    ``None`` (unset) or ``False`` (a switch that is off).
    """

    def _get_help_string(self, action):
        text = action.help or ""
        if "default" in text or action.default is None or action.default is False:
            return text
        return super()._get_help_string(action)


class Parser(argparse.ArgumentParser):
    """``argparse.ArgumentParser`` for careless_online commands.

    Differences from argparse: abbreviations are refused (``allow_abbrev``
    is always False), errors raise :class:`~careless_online.errors.InputError`
    (after printing this parser's usage line when an argument is unknown,
    missing or surplus; a bad value of a known flag is one line), and an
    unknown flag comes with a "did you mean" suggestion.  Sub-command parsers report their own unknown
    flags, so the usage shown is the sub-command's.

    Parameters
    ----------
    *args, **kwargs
        As for :class:`argparse.ArgumentParser`; ``formatter_class`` defaults
        to :class:`Formatter`.
    """

    def __init__(self, *args, **kwargs):
        kwargs["allow_abbrev"] = False
        kwargs.setdefault("formatter_class", Formatter)
        super().__init__(*args, **kwargs)

    def parse_known_args(self, args=None, namespace=None):
        parsed, extras = super().parse_known_args(args, namespace)
        if extras:
            self.error(f"unrecognized arguments: {' '.join(extras)}{self.suggestion(extras)}")
        return parsed, extras

    def suggestion(self, words):
        """``"; did you mean --x?"`` for the first unknown flag close to a known one, else ``""``.

        Parameters
        ----------
        words : list of str
            Unrecognized command-line words.

        Returns
        -------
        str
        """
        known = [flag for flag in self._option_string_actions if flag.startswith("--")]
        for word in words:
            if word.startswith("-"):
                flag = word.split("=", 1)[0]
                close = [k for k in known if k.startswith(flag)] if flag.startswith("--") else []
                close = close or difflib.get_close_matches(flag, known, n=3, cutoff=0.6)
                if close:
                    return f"; did you mean {' or '.join(close[:3])}?"
        return ""

    def error(self, message):
        if not message.startswith("argument "):
            # an unknown, missing or surplus argument: show what the command takes
            self.print_usage(sys.stderr)
        raise InputError(message)


def number(kind=float, above=None, at_least=None, below=None):
    """An argparse ``type`` that parses a number and checks its range.

    Parameters
    ----------
    kind : type, optional
        ``int`` or ``float``.
    above : float, optional
        The value must be greater than this.
    at_least : float, optional
        The value must be at least this.
    below : float, optional
        The value must be less than this.

    Returns
    -------
    callable
        ``parse(text) -> kind``, raising :class:`argparse.ArgumentTypeError`
        (reported by argparse with the flag's name).

    Examples
    --------
    ``number(float, above=0)`` accepts ``1e-3`` and refuses ``0``;
    ``number(int, at_least=0)`` accepts ``0`` and refuses ``-3``.
    """
    noun = "an integer" if kind is int else "a number"

    def parse(text):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not {noun}: {text!r}") from None
        if kind is float and not math.isfinite(value):
            raise argparse.ArgumentTypeError(f"not a finite number: {text!r}")
        if above is not None and not value > above:
            raise argparse.ArgumentTypeError(f"must be greater than {above}: {text}")
        if at_least is not None and not value >= at_least:
            raise argparse.ArgumentTypeError(f"must be at least {at_least}: {text}")
        if below is not None and not value < below:
            raise argparse.ArgumentTypeError(f"must be less than {below}: {text}")
        return value

    parse.__name__ = kind.__name__  # argparse names the type in "invalid <type> value" messages
    return parse


#: A count of at least one (images, steps, workers, ...).
positive_int = number(int, at_least=1)

#: A count that may be zero (network blocks, ...).
non_negative_int = number(int, at_least=0)

#: A strictly positive real (learning rate, dof, seconds, Å, ...).
positive_float = number(float, above=0)

#: A real that may be zero (weights, ...).
non_negative_float = number(float, at_least=0)

#: A fraction in [0, 1) (held-out share, Adam betas, ...).
fraction = number(float, at_least=0, below=1)
