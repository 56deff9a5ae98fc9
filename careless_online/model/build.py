"""Construct, load and check merging models."""

import os
import zipfile
import zlib

import keras
import numpy as np

from careless_online.ambiguity.operators import candidate_operators
from careless_online.errors import InputError
from careless_online.io.reflections import ReflectionIndex
from careless_online.model.merging import MergingModel
from careless_online.model.start import start_posterior


def intensity_scale(manifest, index):
    """``k0``: the factor that gives scaled intensities the prior's mean ``<epsilon>``.

    Parameters
    ----------
    manifest : careless_online.io.cache.Manifest
    index : ReflectionIndex

    Returns
    -------
    float
    """
    mean_i, _ = manifest.column_stats("I")
    eps = float(np.mean(index.epsilon)) if len(index) else 1.0
    if not np.isfinite(mean_i) or mean_i <= 0:
        raise InputError("the mean intensity is not positive; cannot scale the data", manifest.files()[0])
    return eps / mean_i


def new_model(manifest, standardizer, reindexing_ops="auto", f_start="data", **options):
    """A fresh :class:`MergingModel` for the data of a cache.

    Parameters
    ----------
    manifest : careless_online.io.cache.Manifest
    standardizer : careless_online.io.pipeline.Standardizer
    reindexing_ops : str
        The ``--reindexing-ops`` value (``auto``, ``none`` or operators,
        :func:`~careless_online.ambiguity.operators.candidate_operators`);
        with more than one setting the model chooses every image's
        (:mod:`careless_online.model.settings`).
    f_start : str
        Where every ``q(F)`` starts (``--f-start``): ``data`` (each
        reflection's normalized intensity) or ``prior``
        (:func:`careless_online.model.start.start_posterior`).
    **options
        Passed to :class:`MergingModel` (``d_model``, ``encoder_layers``, ...).

    Returns
    -------
    MergingModel
    """
    index = manifest.index
    operators = candidate_operators(reindexing_ops, index.cell, index.spacegroup)
    model = MergingModel(
        len(index), len(standardizer.keys), centric=index.centric, epsilon=index.epsilon,
        reindexing_ops=operators.triplets,
        intensity_scale=intensity_scale(manifest, index), index_config=index.to_config(),
        standardizer_config=standardizer.get_config(), inverse_d2=1.0 / np.square(index.dHKL.astype(np.float64)),
        **options,
    )
    if model.setting_choice is not None:
        model.setting_choice.set_table(operators.reflection_table(index))
    start_posterior(model, manifest, index, f_start)
    return model


#: What ``keras.models.load_model`` raises for a damaged or foreign ``.keras``
#: archive (checked: bad or missing config.json -> ValueError/KeyError/TypeError,
#: missing or damaged weights -> ValueError/OSError, damaged members -> BadZipFile/zlib.error).
_LOAD_ERRORS = (ValueError, KeyError, TypeError, OSError, EOFError, zipfile.BadZipFile, zlib.error)


def load_model(path, restore_optimizer=False):
    """Load a saved model (``.keras``), refusing corrupt or foreign files with one line.

    Parameters
    ----------
    path : str
    restore_optimizer : bool
        Restore the saved optimizer and its state (``--resume``).  Otherwise
        the model comes back uncompiled and training gives it a fresh
        optimizer from the current flags (``--model-in``).

    Returns
    -------
    MergingModel
    """
    if not os.path.exists(path):
        raise InputError("no such model file", path)
    if not zipfile.is_zipfile(path):
        raise InputError("not a .keras model file (corrupt or truncated)", path)
    try:
        model = keras.models.load_model(path, compile=restore_optimizer)
    except _LOAD_ERRORS as err:
        raise InputError(f"cannot load the model ({type(err).__name__}: {str(err).splitlines()[0][:200]})", path) from None
    if not isinstance(model, MergingModel):
        raise InputError("not a careless_online model", path)
    return model


def model_index(model):
    """The :class:`ReflectionIndex` a model was built for."""
    return ReflectionIndex.from_config(model.index_config)
