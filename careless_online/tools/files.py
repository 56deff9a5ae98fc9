"""Reading, column lookup and safe writing shared by the helper commands."""

import os

from careless_online.errors import InputError
from careless_online.io import writers

#: Names of the uncertainty of a column ``X``, careless's first (``SigF``), then CCP4's (``SIGF``).
SIGMA_PREFIXES = ("Sig", "SIG")


def sigma_name(ds, name):
    """The uncertainty column of column ``name`` (``SigF`` or ``SIGF`` for ``F``, ``SigF(+)`` for ``F(+)``).

    Parameters
    ----------
    ds : reciprocalspaceship.DataSet
    name : str

    Returns
    -------
    str or None
        The first of ``Sig<name>``, ``SIG<name>`` present, None if neither is.
    """
    for prefix in SIGMA_PREFIXES:
        if prefix + name in ds.columns:
            return prefix + name
    return None


def check_output(path, inputs):
    """Refuse an output path that is one of the inputs (an input is never overwritten).

    Parameters
    ----------
    path : str
    inputs : sequence of str

    Raises
    ------
    InputError
    """
    target = os.path.realpath(path)
    for source in inputs:
        if os.path.exists(source) and os.path.realpath(source) == target:
            raise InputError("the output would overwrite this input; choose another output name", path)


def write_output(ds, path, inputs=()):
    """Write ``ds`` to ``path`` atomically, never over one of ``inputs``; returns ``path``."""
    check_output(path, inputs)
    return writers.write_mtz(ds, path)
