"""Checkpoints that are one consistent unit: model, optimizer and loop state of one step.

Layout, for the output model ``<out>_<i>.keras``::

    <out>_<i>.ckpt/                  folder()
        step_00001000/               one unit
            model.keras              model and optimizer state
            state.json               loop state (step, elapsed time, config, ...)
            MANIFEST.json            written last: step, and size and SHA-256 of each file

A unit is written in a temporary folder (``step_00001000.partial``), its
manifest last, and then renamed into place; older units are removed after
that.  :func:`latest` returns the newest unit whose manifest is present and
whose files match it, so a kill at any moment leaves either the new unit or
the previous one, never a model of one step with the state of another.
(``tf.train.CheckpointManager`` keeps TensorFlow checkpoints of variables
only, without the Keras model file, the loop state or a verified manifest,
and cannot tell a complete unit from one a kill cut short.)
:func:`write_model` replaces a ``.keras`` file atomically (temporary name,
then ``os.replace``): the user-facing ``<out>_<i>.keras`` is either the old
file or the new one.
"""

import contextlib
import hashlib
import json
import os
import shutil
from dataclasses import dataclass

from careless_online.io.atomic import atomic_path, sync_file, temporary_name, write_bytes, write_error

#: Files of a unit besides the manifest.
MODEL_FILE = "model.keras"
STATE_FILE = "state.json"
MANIFEST_FILE = "MANIFEST.json"
_PREFIX = "step_"
_PARTIAL = ".partial"


@dataclass(frozen=True)
class Checkpoint:
    """A complete checkpoint unit.

    Attributes
    ----------
    path : str
        Folder of the unit.
    step : int
        Gradient steps done when it was written.
    state : dict
        The loop state (``step``, ``elapsed_s``, ``config``, ...).
    """

    path: str
    step: int
    state: dict

    @property
    def model_path(self):
        """The unit's ``.keras`` file (model and optimizer)."""
        return os.path.join(self.path, MODEL_FILE)


def folder(model_path):
    """The checkpoint folder that goes with an output model path (``x.keras`` -> ``x.ckpt``)."""
    root, ext = os.path.splitext(model_path)
    return (root if ext == ".keras" else model_path) + ".ckpt"


def _sha256(path):
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _write_json(path, value):
    """Write JSON to ``path`` atomically and durably (an :class:`OSError` passes through)."""
    write_bytes(path, json.dumps(value).encode())


def write_model(model, path):
    """Save ``model`` (with its optimizer, if compiled) to ``path`` atomically.

    The temporary name keeps the ``.keras`` suffix that keras insists on; a
    failed write (a full disk, say) is a one-line
    :class:`~careless_online.errors.InputError` and leaves the previous file.
    """
    with atomic_path(path) as tmp:
        model.save(tmp)


def _manifest(unit, step):
    files = {}
    for name in (MODEL_FILE, STATE_FILE):
        path = os.path.join(unit, name)
        files[name] = {"size": os.path.getsize(path), "sha256": _sha256(path)}
    return {"step": int(step), "files": files}


def _write_unit(model, partial, state, step):
    """Write the files of a unit into the folder ``partial``, its manifest last."""
    shutil.rmtree(partial, ignore_errors=True)
    os.makedirs(partial)
    model.save(os.path.join(partial, MODEL_FILE))
    sync_file(os.path.join(partial, MODEL_FILE))
    _write_json(os.path.join(partial, STATE_FILE), state)
    _write_json(os.path.join(partial, MANIFEST_FILE), _manifest(partial, step))


def save(model, checkpoint_folder, state, keep=1):
    """Write a new unit for ``state['step']``; keep the ``keep`` newest units.

    Parameters
    ----------
    model : keras.Model
        Saved with its optimizer.
    checkpoint_folder : str
        See :func:`folder`.
    state : dict
        Loop state; must hold an int ``step``.
    keep : int
        Complete units kept (the new one included).

    Returns
    -------
    Checkpoint

    Raises
    ------
    careless_online.errors.InputError
        When the unit cannot be written (a full disk, say): one line, the
        partial unit removed, the previous units left as they were.
    """
    step = int(state["step"])
    final = os.path.join(checkpoint_folder, f"{_PREFIX}{step:08d}")
    partial = final + _PARTIAL
    try:
        _write_unit(model, partial, state, step)
    except OSError as err:
        shutil.rmtree(partial, ignore_errors=True)
        raise write_error(err, checkpoint_folder) from None
    except BaseException:  # interrupted (Ctrl-C, SIGTERM): no partial unit left behind
        shutil.rmtree(partial, ignore_errors=True)
        raise
    if os.path.isdir(final):  # the same step written again (a resumed run): replace it
        shutil.rmtree(final)
    os.replace(partial, final)
    _prune(checkpoint_folder, keep)
    return Checkpoint(final, step, dict(state))


def remove_temporaries(model_path):
    """Remove the partial units of ``model_path``'s checkpoint folder and this process's temporary of the model."""
    with contextlib.suppress(FileNotFoundError):
        os.remove(temporary_name(model_path))
    checkpoint_folder = folder(model_path)
    if os.path.isdir(checkpoint_folder):
        for name in os.listdir(checkpoint_folder):
            if name.endswith(_PARTIAL):
                shutil.rmtree(os.path.join(checkpoint_folder, name), ignore_errors=True)


def _units(checkpoint_folder):
    """``(step, path)`` of the unit folders (complete or not), newest first."""
    if not os.path.isdir(checkpoint_folder):
        return []
    units = []
    for name in os.listdir(checkpoint_folder):
        if name.startswith(_PREFIX) and name[len(_PREFIX):].isdigit():
            units.append((int(name[len(_PREFIX):]), os.path.join(checkpoint_folder, name)))
    return sorted(units, reverse=True)


def unit_folders(checkpoint_folder):
    """Paths of the unit folders of a checkpoint folder, complete or not (not the ``.partial`` ones), newest first."""
    return [path for _, path in _units(checkpoint_folder)]


def read(unit):
    """The :class:`Checkpoint` of a unit folder, or None unless it is complete and intact."""
    try:
        with open(os.path.join(unit, MANIFEST_FILE)) as handle:
            manifest = json.load(handle)
        for name, expected in manifest["files"].items():
            path = os.path.join(unit, name)
            if os.path.getsize(path) != expected["size"] or _sha256(path) != expected["sha256"]:
                return None
        with open(os.path.join(unit, STATE_FILE)) as handle:
            state = json.load(handle)
    except (OSError, ValueError, KeyError, TypeError):
        return None  # missing, partial or damaged: not a complete unit
    if state.get("step") != manifest["step"]:
        return None
    return Checkpoint(unit, int(manifest["step"]), state)


def unit_problem(unit):
    """Why a unit folder is not a complete checkpoint: a file missing, or files that do not match; None if complete."""
    for name in (MANIFEST_FILE, STATE_FILE, MODEL_FILE):
        if not os.path.isfile(os.path.join(unit, name)):
            return f"its {name} is missing"
    return None if read(unit) is not None else "its files do not match its manifest"


def no_checkpoint_message(model_path):
    """The one-line reason why ``--resume`` finds no complete unit for the output model ``model_path``.

    It names the newest unit and what it lacks and, when the user-facing
    model ``model_path`` is there (it is replaced atomically, so it is
    whole), says how to start from it: ``--model-in`` with another output
    prefix (the run's outputs must not overwrite its input).
    """
    checkpoint_folder = folder(model_path)
    units = _units(checkpoint_folder)
    if units:
        why = f"its newest unit {os.path.basename(units[0][1])} is incomplete ({unit_problem(units[0][1])})"
    else:
        why = "it holds no unit" if os.path.isdir(checkpoint_folder) else "it does not exist"
    message = f"--resume: no complete checkpoint to resume from in {checkpoint_folder}: {why}"
    if os.path.isfile(model_path):
        message += (f"; the run's last saved model {model_path} is intact: start from it with --model-in "
                    f"{model_path} and another output prefix")
    return message


def latest(checkpoint_folder):
    """The newest complete unit of a checkpoint folder, or None if there is none.

    Parameters
    ----------
    checkpoint_folder : str
        See :func:`folder`.

    Returns
    -------
    Checkpoint or None
    """
    for _, unit in _units(checkpoint_folder):
        found = read(unit)
        if found is not None:
            return found
    return None


def _prune(checkpoint_folder, keep):
    complete = 0
    for _, unit in _units(checkpoint_folder):
        if complete < keep and read(unit) is not None:
            complete += 1
            continue
        if complete >= keep:
            shutil.rmtree(unit, ignore_errors=True)
    for name in os.listdir(checkpoint_folder):
        if name.endswith(_PARTIAL):
            shutil.rmtree(os.path.join(checkpoint_folder, name), ignore_errors=True)
