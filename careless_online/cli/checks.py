"""Checks of ``mono``'s arguments that need neither TensorFlow nor the data.

They run before anything heavy is imported or any folder is made, so that a
typo in a file name, a space group or a metadata key ends within a second with
one line naming the problem.  Only the Python standard library and gemmi are
used here.
"""

import os
import re

import gemmi

from careless_online.ambiguity.operators import MODES, candidate_operators
from careless_online.cli.model_file import check_model_in, check_resume_kind
from careless_online.cli.overwrite import check_outputs_spare_inputs
from careless_online.errors import InputError
from careless_online.io.cache_location import default_cache_dir
from careless_online.io.columns import available_keys
from careless_online.io.identity import file_identity, refuse_duplicates
from careless_online.io import stream_format
from careless_online.io.sources import is_pattern

#: File name endings of the readable inputs, and their formats.
FORMATS = {".mtz": "mtz", ".stream": "stream", ".expt": "dials", ".refl": "dials"}

#: A metadata key: a column or derived name without spaces or commas.
_KEY = re.compile(r"^[^\s,]+$")


def metadata_keys(text):
    """Split and check the comma-separated metadata keys.

    Parameters
    ----------
    text : str
        The first positional argument of ``mono``, e.g. ``"dHKL,XDET,YDET"``.

    Returns
    -------
    list of str

    Raises
    ------
    InputError
        If no key is given, a key is not a plain name (a file name given
        instead of the keys, a space inside a key), or a key repeats.
    """
    keys = [k.strip() for k in text.split(",")]
    if not any(keys):
        raise InputError("no metadata keys given (e.g. 'dHKL,XDET,YDET')")
    if os.path.splitext(text)[1].lower() in FORMATS or os.path.exists(text):
        raise InputError(f"the first argument is the metadata keys (e.g. 'dHKL,XDET,YDET'), not a file: {text}")
    for key in keys:
        if not _KEY.match(key):
            raise InputError(f"metadata keys: {key!r} is not a column name (keys are separated by commas)")
    repeated = sorted({k for k in keys if keys.count(k) > 1})
    if repeated:
        raise InputError(f"metadata keys: {', '.join(repeated)} given twice")
    return keys


def input_format(path):
    """The format of an input file from its name: ``mtz``, ``stream`` or ``dials``.

    Raises
    ------
    InputError
        For any other file name ending.
    """
    kind = FORMATS.get(os.path.splitext(str(path))[1].lower())
    if kind is None:
        raise InputError("unknown file format (expected .mtz, .stream, or DIALS .expt/.refl)", path)
    return kind


def readable_file(path, what="file"):
    """Raise :class:`InputError` unless ``path`` is a non-empty regular file we may read."""
    if not os.path.exists(path):
        raise InputError("no such file", path)
    if os.path.isdir(path):
        raise InputError(f"is a folder, not a {what}", path)
    if not os.path.isfile(path):
        raise InputError(f"is not a regular file", path)
    if not os.access(path, os.R_OK):
        raise InputError("permission denied", path)
    if os.path.getsize(path) == 0:
        raise InputError("the file is empty", path)


def input_files(paths, live=False):
    """Check the input files: known formats, and (unless ``live``) readable and distinct.

    A DIALS input needs both members of its ``.expt``/``.refl`` pair.  In live
    mode the files may not exist yet, so only their names are checked; a
    folder or glob pattern (:func:`careless_online.io.sources.is_pattern`,
    also a folder that does not exist yet) is searched while data arrive.
    Without ``--live`` a folder or pattern is refused, naming it.
    """
    for path in paths:
        if live and is_pattern(path):
            continue  # a folder or glob pattern: searched again while data arrive
        if not live and is_pattern(path):
            what = "is a folder" if os.path.isdir(path) else "no such file"
            raise InputError(f"{what} (folders and glob patterns are followed only with --live; "
                             "otherwise give the files)", path)
        kind = input_format(path)
        if live:
            continue
        members = [os.path.splitext(path)[0] + ext for ext in (".expt", ".refl")] if kind == "dials" else [path]
        for member in members:
            readable_file(member, what="reflection file")
    if not live:
        distinct_inputs(paths)


def distinct_inputs(paths):
    """Refuse a file given twice, by name or by contents (its images would count twice).

    The members of a DIALS pair (``x.expt x.refl``) count as one input.

    Raises
    ------
    InputError
        Naming the second occurrence.
    """
    seen = set()
    for path in paths:
        kind = input_format(path)
        real = os.path.realpath(os.path.splitext(path)[0] + ".refl" if kind == "dials" else path)
        if real in seen and kind != "dials":
            raise InputError("given twice: its images would count twice", path)
        seen.add(real)
    refuse_duplicates([file_identity(path) for path in dict.fromkeys(
        os.path.splitext(p)[0] + ".refl" if input_format(p) == "dials" else p for p in paths)])


def spacegroups(text, paths, model_in=None):
    """Check ``--spacegroups`` against the inputs; return one name (or None) per input.

    Parameters
    ----------
    text : str or None
        One space group for all inputs, or one per input separated by commas.
    paths : list of str
        The input files as given (a DIALS pair may be given as two files).
    model_in : str, optional
        A saved model; it knows its space group, so streams need none then.

    Raises
    ------
    InputError
        If a name is unknown to gemmi, the count matches neither one nor the
        number of inputs, or a CrystFEL stream is given without a space group.
    """
    kinds = [None if is_pattern(p) else input_format(p) for p in paths]  # live sources may be folders
    files = input_units(paths)
    if text is None:
        streams = [p for p, k in zip(paths, kinds) if k == "stream"]
        if streams and model_in is None:
            raise InputError("CrystFEL streams do not give a space group; pass --spacegroups", streams[0])
        return [None] * len(files)
    groups = [s.strip() for s in text.split(",") if s.strip()]
    for name in groups:
        if gemmi.find_spacegroup_by_name(name) is None:
            raise InputError(f"--spacegroups: unknown space group {name!r}")
    if len(groups) == 1:
        return groups * len(files)
    if len(groups) != len(files):
        raise InputError(f"--spacegroups gives {len(groups)} space groups for {len(files)} input files")
    return groups


def input_units(paths):
    """The inputs as ``--spacegroups`` counts them: a DIALS pair (given as one or two files) once, as its stem."""
    kinds = [None if is_pattern(p) else input_format(p) for p in paths]
    return list(dict.fromkeys(os.path.splitext(p)[0] if k == "dials" else p for p, k in zip(paths, kinds)))


def cell(text, groups=()):
    """Check ``--cell``: six positive numbers, angles below 180 degrees, fitting each space group of ``groups``."""
    if text is None:
        return
    words = [w for w in re.split(r"[,\s]+", text.strip()) if w]
    try:
        values = [float(w) for w in words]
    except ValueError:
        values = []
    if len(values) != 6 or not all(v > 0 for v in values) or not all(v < 180 for v in values[3:]):
        raise InputError(f"--cell: expected 'a,b,c,alpha,beta,gamma' (Å, degrees), got {text!r}")
    unit_cell = gemmi.UnitCell(*values)  # not io.table.parse_cell: these checks run before the readers are imported
    for name in dict.fromkeys(g for g in groups if g):
        group = gemmi.SpaceGroup(name)
        if not unit_cell.is_compatible_with_spacegroup(group):
            raise InputError(f"--cell {text} is incompatible with space group {group.xhm()}")


def header_cell(path, kind):
    """The reference cell a file's header states (an MTZ file's cell, a stream's target cell), or None.

    Reads the MTZ header or the stream's first MiB only; a file whose header
    cannot be read gives None (its reader reports the damage).
    """
    if kind == "mtz":
        try:
            return list(gemmi.read_mtz_file(str(path), with_data=False).cell.parameters)
        except RuntimeError:  # gemmi's error for a damaged or foreign file
            return None
    if kind == "stream":
        with open(path, "rb") as handle:
            head = handle.read(2**20)
        first = stream_format.CHUNK_BEGIN.search(head)
        return stream_format.target_cell(head if first is None else head[:first.start()])
    return None


def cells_fit_spacegroups(paths, groups, cell_text):
    """Refuse a file whose header cell cannot be in the space group ``--spacegroups`` gives it.

    Only without ``--cell`` (which :func:`cell` checks) and for files whose
    header states a valid cell; the cells of the images are checked again
    when the data are read.

    Raises
    ------
    InputError
        Naming the file, its cell and the space group.
    """
    if cell_text is not None:
        return
    for path, group in zip(input_units(paths), groups):
        if not group or is_pattern(path) or not os.path.isfile(path):
            continue  # no space group given, a DIALS pair's stem, or a live source not there yet
        params = header_cell(path, input_format(path))
        if params is None or not (min(params) > 0 and max(params[3:]) < 180):
            continue
        if not gemmi.UnitCell(*params).is_compatible_with_spacegroup(gemmi.SpaceGroup(group)):
            raise InputError(f"unit cell {tuple(round(p, 2) for p in params)} is incompatible with space group "
                             f"{gemmi.SpaceGroup(group).xhm()} (check --spacegroups, or pass --cell)", path)


def reindexing_ops(text, groups):
    """Check ``--reindexing-ops``: ``auto``, ``none`` or hkl operators such as ``'k,h,-l'``.

    Operators are read (and, when ``--spacegroups`` names the space group,
    checked to map its equivalent reflections onto equivalent ones) before
    any data are read.

    Raises
    ------
    InputError
        Naming the first operator that cannot be used.
    """
    if str(text).strip().lower() in MODES:
        return
    for group in dict.fromkeys(g for g in groups if g) or [None]:
        candidate_operators(text, None, gemmi.SpaceGroup(group) if group else gemmi.SpaceGroup("P 1"))


def output_prefix(out):
    """Check the output prefix: a file name stem in a folder that is not a file.

    A last argument that is an existing file or ends like an input
    (``mono dHKL a.stream b.stream`` without a prefix) is refused: it would
    otherwise be left out of the merge and give ``b.stream_0.mtz``.
    """
    if out.endswith(("/", os.sep)) or os.path.isdir(out):
        raise InputError(f"the output prefix is a folder; give a name in it, e.g. {os.path.join(out, 'merge')}")
    if os.path.isfile(out) or os.path.splitext(out)[1].lower() in FORMATS:
        raise InputError("the last argument is the output prefix (outputs <prefix>_0.mtz, ...), not an input "
                         "file: add a prefix after the inputs, e.g. merge/hewl", out)
    folder = os.path.dirname(out)
    while folder and not os.path.exists(folder):
        folder = os.path.dirname(folder)
    if folder and not os.path.isdir(folder):
        raise InputError("is a file, not a folder for the outputs", folder)


def cache_folder(args):
    """The cache folder of a run: ``--cache-dir``, else ``.careless_online_cache`` beside the outputs."""
    return default_cache_dir(args.out, args.cache_dir)


def existing_folder(path, flag):
    """Raise unless ``path`` is None, absent (it will be made) or a folder."""
    if path is not None and os.path.exists(path) and not os.path.isdir(path):
        raise InputError(f"{flag}: is a file, not a folder", path)


def mono_arguments(args):
    """Check ``mono``'s parsed arguments before any data are read.

    Parameters
    ----------
    args : argparse.Namespace

    Returns
    -------
    keys : list of str
        The metadata keys.
    groups : list of str or None
        The space group of each input file.

    Raises
    ------
    InputError
        For the first problem found.
    """
    keys = metadata_keys(args.metadata_keys)
    check_outputs_spare_inputs(args, cache_folder(args))  # before the inputs' own checks: the likelier cause
    input_files(args.inputs, live=args.live)
    groups = spacegroups(args.spacegroups, args.inputs, model_in=args.model_in)
    cell(args.cell, groups)
    cells_fit_spacegroups(args.inputs, groups, args.cell)
    reindexing_ops(getattr(args, "reindexing_ops", "auto"), groups)
    output_prefix(args.out)
    existing_folder(args.cache_dir, "--cache-dir")
    if args.model_in is not None:
        readable_file(args.model_in, what="saved model (.keras)")
        check_model_in(args.model_in, keys, groups, laue=laue_command(args))
    if getattr(args, "resume", False):
        check_resume_kind(args.out, laue_command(args))
    naive_alone(args)
    keys_in_inputs(keys, args.inputs)
    return keys, groups


def laue_command(args):
    """Whether the parsed arguments are ``poly``'s (Laue data): its parser alone has ``--wavelength-key``."""
    return getattr(args, "wavelength_key", None) is not None


def keys_in_inputs(keys, paths):
    """Refuse a metadata key that an input file cannot give, before any conversion.

    Folders, glob patterns and files not yet written (live mode) are passed
    over; the keys are checked again against the converted data.

    Raises
    ------
    InputError
        Naming the first unknown key and the file.
    """
    for path in paths:
        if is_pattern(path) or not os.path.isfile(path):
            continue
        available = available_keys(path, input_format(path))
        missing = [key for key in keys if available is not None and key not in available]
        if missing:
            raise InputError(f"unknown metadata key {missing[0]!r}; available: {', '.join(sorted(available))}",
                             path)


def naive_alone(args):
    """Refuse ``--naive`` with ``--resume`` or ``--model-in``: the naive merge has no model to continue.

    Raises
    ------
    InputError
        Naming the flag that ``--naive`` would silently ignore.
    """
    if args.naive and (args.resume or args.model_in is not None):
        flag = "--resume" if args.resume else "--model-in"
        raise InputError(f"--naive cannot be combined with {flag}: the naive merge has no model to continue")
