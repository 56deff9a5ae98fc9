"""Construct, load and check merging models."""

import os
import zipfile
import zlib

import keras
import numpy as np

from careless_online.ambiguity.operators import candidate_operators
from careless_online.errors import InputError
from careless_online.io.reflections import ReflectionIndex
from careless_online.model.laue import LaueMergingModel
from careless_online.model.merging import MergingModel
from careless_online.model.start import start_posterior
from careless_online.model.parent_settings import parent_table
from careless_online.model.reference import set_initial_width


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


#: Values of ``--partiality-prior``.
PARTIALITY_PRIORS = ("off", "ewald", "ewald-image")


def partiality_prior_config(manifest, inverse_d2):
    """The :class:`~careless_online.layers.PartialityPrior` config of a cache, or None without Ewald offsets.

    The starting widths come from the spread of the recorded offsets
    (:func:`~careless_online.layers.partiality.initial_widths`); the offset
    ``c`` is the mean ``log P`` of all observations at those widths, so the
    term starts scale-neutral.

    Parameters
    ----------
    manifest : careless_online.io.cache.Manifest
    inverse_d2 : numpy.ndarray
        1/d² of each reflection of the index.

    Returns
    -------
    dict or None
    """
    from careless_online.io.ewald import COLUMN
    from careless_online.layers.partiality import initial_widths, log_partiality

    if COLUMN not in manifest.columns:
        return None
    offsets, q2 = [], []
    for i in range(len(manifest.shards)):
        arrays = manifest.load_shard(i, [COLUMN, "refl_id"])
        offsets.append(arrays[COLUMN].astype(np.float64))
        q2.append(inverse_d2[arrays["refl_id"]])
    e, q2 = np.concatenate(offsets), np.concatenate(q2)
    keep = np.isfinite(e)
    if not np.any(e[keep] != 0):
        return None
    r, eta, tau = initial_widths(e[keep], q2[keep])
    mean_log_p = float(np.mean(log_partiality(e[keep], q2[keep], r, eta, tau).numpy()))
    return dict(r=r, eta=eta, tau=tau, offset=mean_log_p)


def new_model(manifest, standardizer, reindexing_ops="auto", f_start="data", positional_encoding_keys=None,
              positional_encoding_frequencies=4, structure_factor_init_scale=1.0, double_wilson_reindexing_ops=None,
              partiality_prior="off", **options):
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
    positional_encoding_keys : list of str, optional
        Metadata keys (of ``standardizer.keys``) whose Fourier features the
        networks see (:class:`~careless_online.layers.PositionalEncoding`,
        ``positional_encoding_frequencies`` frequencies); keys among
        ``options["plain_metadata_keys"]`` are also seen as they are.
    structure_factor_init_scale : float
        Width of the start of ``q(F)`` in prior standard deviations.
    double_wilson_reindexing_ops : list of str, optional
        Per dataset, the operator to its parent's reflections
        (:mod:`careless_online.model.parent_settings`).
    partiality_prior : str
        ``--partiality-prior``: ``ewald`` puts the physical partiality of a
        still at each observation's Ewald offset into the mean of the scales'
        prior (:func:`partiality_prior_config`; off for data without an
        ``ewald_offset`` column), ``ewald-image`` the same with each image's
        own mosaic spread (from its image vector), ``off`` keeps the prior
        ``LogNormal(0, 1)``.
    **options
        Passed to :class:`MergingModel` (``d_model``, ``encoder_layers``, ...).

    Returns
    -------
    MergingModel
        A :class:`LaueMergingModel` for a Laue cache (:func:`model_class`).
    """
    index = manifest.index
    if partiality_prior not in PARTIALITY_PRIORS:
        raise ValueError(f"partiality_prior must be one of {', '.join(PARTIALITY_PRIORS)}, got {partiality_prior!r}")
    inverse_d2 = 1.0 / np.square(index.dHKL.astype(np.float64))
    if partiality_prior != "off":
        config = partiality_prior_config(manifest, inverse_d2)
        options["partiality_prior"] = (dict(config, per_image=True) if config and partiality_prior == "ewald-image"
                                       else config)
    operators = candidate_operators(reindexing_ops, index.cell, index.spacegroup)
    plain = options.pop("plain_metadata_keys", None)
    if positional_encoding_keys:
        options["positional_encoding"] = positional_encoding_config(
            manifest, standardizer, positional_encoding_keys, plain, positional_encoding_frequencies)
    model = model_class(manifest)(
        len(index), len(standardizer.keys), centric=index.centric, epsilon=index.epsilon,
        reindexing_ops=operators.triplets,
        intensity_scale=intensity_scale(manifest, index), index_config=index.to_config(),
        standardizer_config=standardizer.get_config(), inverse_d2=inverse_d2,
        double_wilson_reindexing_ops=double_wilson_reindexing_ops, **options,
    )
    if model.setting_choice is not None:
        model.setting_choice.set_table(operators.reflection_table(index))
    start_posterior(model, manifest, index, f_start)
    if structure_factor_init_scale != 1.0:
        set_initial_width(model, structure_factor_init_scale)
    if double_wilson_reindexing_ops is not None:
        model.coupling.set_parent_table(parent_table(index, double_wilson_reindexing_ops)[0])
    return model


def model_class(manifest):
    """The model of a cache's rows: :class:`LaueMergingModel` for harmonics of Laue spots, else :class:`MergingModel`."""
    return LaueMergingModel if "spot" in manifest.columns else MergingModel


def positional_encoding_config(manifest, standardizer, keys, plain, frequencies):
    """The :class:`~careless_online.layers.PositionalEncoding` config of ``keys`` over a cache.

    The range of each encoded column is its range in the cache (one pass,
    standardized as the networks see it); ``plain`` keys (default: all) are
    passed through as well.
    """
    columns = [standardizer.keys.index(k) for k in keys]
    low, high = np.full(len(keys), np.inf), np.full(len(keys), -np.inf)
    for i in range(len(manifest.shards)):
        meta = standardizer.transform(manifest.load_shard(i, standardizer.keys))[:, columns]
        if len(meta):
            low, high = np.minimum(low, meta.min(axis=0)), np.maximum(high, meta.max(axis=0))
    low, high = np.where(np.isfinite(low), low, 0.0), np.where(np.isfinite(high), high, 1.0)
    kept = [i for i, k in enumerate(standardizer.keys) if plain is None or k in plain]
    return dict(n_meta=len(standardizer.keys), encoded=columns, kept=kept, low=low.tolist(), high=high.tolist(),
                frequencies=int(frequencies))


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
