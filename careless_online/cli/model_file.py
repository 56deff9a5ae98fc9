"""What a saved model (``.keras``) says about itself, read without TensorFlow.

A ``.keras`` file is a zip archive whose ``config.json`` holds the model's
constructor arguments, among them the metadata keys it was trained with and
the space group of its reflection index.  Reading them takes milliseconds,
so ``--model-in`` that cannot fit the command line is refused before any
data are converted.
"""

import json
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
        ``{"keys": [...], "spacegroup": "P 43 21 2"}``, or None when the file
        is not a readable careless_online model (loading it reports that).
    """
    try:
        with zipfile.ZipFile(path) as archive:
            config = json.loads(archive.read("config.json"))["config"]
        keys = json.loads(config["standardizer_config"])["keys"]
        spacegroup = json.loads(config["index_config"])["spacegroup"]
    except (OSError, zipfile.BadZipFile, KeyError, TypeError, ValueError):
        return None
    return {"keys": list(keys), "spacegroup": spacegroup}


def check_model_in(path, keys, groups):
    """Refuse ``--model-in`` trained with other metadata keys or in another space group.

    Parameters
    ----------
    path : str
        The saved model.
    keys : list of str
        The metadata keys of this command line.
    groups : list of str or None
        The space group of each input (None: from the file).

    Raises
    ------
    InputError
        Naming the model file and what differs.
    """
    saved = saved_settings(path)
    if saved is None:
        return
    if saved["keys"] != list(keys):
        raise InputError(f"the model was trained with metadata keys {','.join(saved['keys'])}, "
                         f"not {','.join(keys)}", path)
    trained = gemmi.SpaceGroup(saved["spacegroup"]).xhm()
    for name in dict.fromkeys(g for g in groups if g):
        if gemmi.SpaceGroup(name).xhm() != trained:
            raise InputError(f"the model was trained in space group {trained}, not {name}", path)
