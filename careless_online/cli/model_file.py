"""What a saved model (``.keras``) says about itself, read without TensorFlow.

A ``.keras`` file is a zip archive whose ``config.json`` holds the model's
class (``MergingModel`` of ``mono``, ``LaueMergingModel`` of ``poly``) and
constructor arguments, among them the metadata keys it was trained with and
the space group of its reflection index.  Reading them takes milliseconds,
so ``--model-in`` or ``--resume`` that cannot fit the command line is
refused before any data are converted.
"""

import glob
import json
import os
import zipfile

import gemmi

from careless_online.errors import InputError


def saved_settings(path):
    """The metadata keys and space group a saved model was trained with.

    Parameters
    ----------
    path : str

    Returns
    -------
    dict or None
        ``{"keys": [...], "spacegroup": "P 43 21 2", "laue": False}`` (``laue``:
        a model of Laue data, trained by ``poly``), or None when the file is
        not a readable careless_online model (loading it reports that).
    """
    try:
        with zipfile.ZipFile(path) as archive:
            saved = json.loads(archive.read("config.json"))
        config = saved["config"]
        keys = json.loads(config["standardizer_config"])["keys"]
        spacegroup = json.loads(config["index_config"])["spacegroup"]
    except (OSError, zipfile.BadZipFile, KeyError, TypeError, ValueError):
        return None
    return {"keys": list(keys), "spacegroup": spacegroup, "laue": saved.get("class_name") == LAUE_CLASS}


#: Class name of the saved models of ``poly``.
LAUE_CLASS = "LaueMergingModel"

#: The command and the kind of data of each kind of model.
_KINDS = {False: ("mono", "monochromatic"), True: ("poly", "Laue")}


def check_model_kind(path, saved, laue, flag="--model-in"):
    """Refuse a saved model of the other kind of data (a ``poly`` model in ``mono``, or the reverse).

    Parameters
    ----------
    path : str
        The saved model (named in the message).
    saved : dict or None
        Its :func:`saved_settings` (None: not judged).
    laue : bool
        The command merges Laue data (``poly``).
    flag : str
        The flag that named the model.

    Raises
    ------
    InputError
    """
    if saved is None or saved["laue"] == laue:
        return
    command, data = _KINDS[saved["laue"]]
    raise InputError(f"{flag}: the model was trained by {command} on {data} data and cannot merge "
                     f"{_KINDS[laue][1]} data (run {command}, or start a new model)", path)


def check_resume_kind(out, laue):
    """Refuse ``--resume`` of a checkpoint of the other kind of data; see :func:`check_model_kind`.

    Parameters
    ----------
    out : str
        The output prefix, whose ``<out>_<i>.ckpt`` folders hold the checkpoints.
    laue : bool
    """
    folders = [f for f in sorted(glob.glob(glob.escape(out) + "_*.ckpt")) if os.path.isdir(f)]
    if not folders:
        return
    from careless_online.training.checkpoint import latest  # only with checkpoints: its package imports the readers

    for folder in folders:
        unit = latest(folder)
        if unit is not None:
            check_model_kind(unit.model_path, saved_settings(unit.model_path), laue, flag="--resume")


def check_model_in(path, keys, groups, laue=False):
    """Refuse ``--model-in`` trained with other metadata keys, in another space group or on the other kind of data.

    Parameters
    ----------
    path : str
        The saved model.
    keys : list of str
        The metadata keys of this command line.
    groups : list of str or None
        The space group of each input (None: from the file).
    laue : bool
        The command merges Laue data (:func:`check_model_kind`).

    Raises
    ------
    InputError
        Naming the model file and what differs.
    """
    saved = saved_settings(path)
    if saved is None:
        return
    check_model_kind(path, saved, laue)
    if saved["keys"] != list(keys):
        raise InputError(f"the model was trained with metadata keys {','.join(saved['keys'])}, "
                         f"not {','.join(keys)}", path)
    trained = gemmi.SpaceGroup(saved["spacegroup"]).xhm()
    for name in dict.fromkeys(g for g in groups if g):
        if gemmi.SpaceGroup(name).xhm() != trained:
            raise InputError(f"the model was trained in space group {trained}, not {name}", path)
