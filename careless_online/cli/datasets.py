"""``mono``'s multi-dataset flags: grouping images into datasets and coupling their priors.

Checked before TensorFlow is imported (standard library only, plus the
package's own modules that need neither TensorFlow nor the data):

- ``--separate-files``, ``--groups KEY`` and ``--groups-file PATH`` (at most
  one) say how images form datasets (:mod:`careless_online.io.groups`);
- ``--double-wilson-parents=None,0`` (careless's syntax: one entry per
  dataset, ``None`` for a root, else the number of an earlier dataset),
  ``--double-wilson-r=0.,0.9`` (the correlation of each dataset with its
  parent; roots' entries are ignored) and ``--optimize-double-wilson-r``
  (learn the correlations by empirical Bayes, starting from
  ``--double-wilson-r`` or :data:`LEARNED_R_START`); ``--double-wilson-r-shells N``
  gives each of N equal-count resolution shells its own ``r``.
"""

from careless_online.errors import InputError
from careless_online.io.groups import GroupSpec
from careless_online.model.parent_settings import parse_operators

#: Largest double-Wilson r (as :data:`careless_online.distributions.double_wilson.MAX_R`; kept here so the
#: check needs no TensorFlow).
MAX_R = 0.999

#: Start of a learned r when ``--double-wilson-r`` is not given.
LEARNED_R_START = 0.5


def group_spec(args):
    """The :class:`GroupSpec` of ``mono``'s arguments.

    Raises
    ------
    InputError
        For two grouping flags at once.
    """
    given = [flag for flag, on in (("--separate-files", args.separate_files), ("--groups", args.groups is not None),
                                   ("--groups-file", args.groups_file is not None)) if on]
    if len(given) > 1:
        raise InputError(f"{given[0]} and {given[1]} both group the images into datasets; give one")
    if args.groups_file is not None:
        _readable(args.groups_file)
    return GroupSpec(by_file=bool(args.separate_files), key=args.groups, split_file=args.groups_file)


def _readable(path):
    try:
        with open(path, "rb"):
            pass
    except OSError as err:
        raise InputError(f"cannot read the groups file ({err.strerror or type(err).__name__})", path) from None


def parse_parents(text):
    """``"None,0"`` -> ``[None, 0]``; each parent an earlier dataset.

    Raises
    ------
    InputError
    """
    parents = []
    for child, word in enumerate(w.strip() for w in text.split(",")):
        if word.lower() == "none":
            parents.append(None)
            continue
        try:
            parent = int(word)
        except ValueError:
            raise InputError(f"--double-wilson-parents: {word!r} is neither None nor a dataset number") from None
        if not 0 <= parent < child:
            raise InputError(f"--double-wilson-parents: the parent of dataset {child} must be None or an earlier "
                             f"dataset (0..{child - 1}), got {parent}" if child else
                             "--double-wilson-parents: dataset 0 must be a root (None)")
        parents.append(parent)
    return parents


def parse_r(text):
    """``"0.,0.9"`` -> ``[0.0, 0.9]``, each in ``[0, MAX_R]``.

    Raises
    ------
    InputError
    """
    values = []
    for word in (w.strip() for w in text.split(",")):
        try:
            value = float(word)
        except ValueError:
            raise InputError(f"--double-wilson-r: {word!r} is not a number") from None
        if not 0.0 <= value <= MAX_R:
            raise InputError(f"--double-wilson-r: {value:g} is outside [0, {MAX_R}]")
        values.append(value)
    return values


def double_wilson_options(args, spec):
    """The model options of the double-Wilson flags (empty without ``--double-wilson-parents``).

    Parameters
    ----------
    args : argparse.Namespace
    spec : GroupSpec

    Returns
    -------
    dict
        ``double_wilson_parents``, ``double_wilson_r``, ``learn_double_wilson_r``,
        ``double_wilson_r_shells`` (and ``double_wilson_reindexing_ops``) for
        :class:`~careless_online.model.MergingModel`.

    Raises
    ------
    InputError
        For malformed values, flags that need ``--double-wilson-parents``, or
        parents without datasets.
    """
    if args.double_wilson_parents is None:
        for flag, given in (("--double-wilson-r", args.double_wilson_r is not None),
                            ("--optimize-double-wilson-r", args.optimize_double_wilson_r),
                            ("--double-wilson-r-shells", args.double_wilson_r_shells != 1),
                            ("--double-wilson-reindexing-ops", args.double_wilson_reindexing_ops is not None)):
            if given:
                raise InputError(f"{flag} needs --double-wilson-parents")
        return {}
    if not spec.active:
        raise InputError("--double-wilson-parents couples datasets: group the images with --separate-files, "
                         "--groups or --groups-file")
    if args.naive:
        raise InputError("--naive merges each dataset on its own; it has no prior to couple "
                         "(drop --double-wilson-parents)")
    parents = parse_parents(args.double_wilson_parents)
    if args.double_wilson_r is None:
        if not args.optimize_double_wilson_r:
            raise InputError("--double-wilson-parents needs --double-wilson-r or --optimize-double-wilson-r")
        r = [LEARNED_R_START] * len(parents)
    else:
        r = parse_r(args.double_wilson_r)
        if len(r) != len(parents):
            raise InputError(f"--double-wilson-r gives {len(r)} values for the {len(parents)} datasets of "
                             "--double-wilson-parents")
    options = {"double_wilson_parents": parents, "double_wilson_r": r,
               "learn_double_wilson_r": bool(args.optimize_double_wilson_r),
               "double_wilson_r_shells": args.double_wilson_r_shells}
    if args.double_wilson_reindexing_ops is not None:
        options["double_wilson_reindexing_ops"] = parse_operators(args.double_wilson_reindexing_ops, len(parents))
    return options
