"""Starting points and frozen parts of a model (careless's structure-factor and scale files).

- ``--structure-factor-file``: ``q(F)`` starts from a merged MTZ (an earlier merge,
  e.g. of the same crystal form at the same beamline): each reflection of the
  file gets the truncated normal whose mean and standard deviation are the
  file's ``F`` and ``SigF`` (:func:`truncated_normal_parameters`), in every
  dataset; reflections the file lacks keep the prior's start.
- ``--structure-factor-init-scale``: the width of the prior-based start, as a
  fraction of the prior's standard deviation.
- ``--scale-file``: the scale networks (image encoder, scale head), the
  intensity constant ``k`` and the error model start from a saved model's.
- ``--freeze-structure-factors``, ``--freeze-scales``: those parts are not trained.
"""

from dataclasses import dataclass

import numpy as np
from scipy import special

from careless_online.distributions.structure_factors import MIN_STANDARDIZED_LOC
from careless_online.errors import InputError
from careless_online.io.reflections import map_to_asu
from careless_online.stats.inputs import has_friedel_columns, read_mtz
from careless_online.tools.files import sigma_name


@dataclass(frozen=True)
class StartingPoint:
    """Files a new model starts from and parts that are not trained (see the module docstring)."""

    structure_factor_file: str = None
    freeze_structure_factors: bool = False
    scale_file: str = None
    freeze_scales: bool = False


def _moment_ratio(z):
    """``mean / std`` of a normal of standardized location ``z`` truncated at zero, and ``mean / sigma``."""
    lam = np.sqrt(2.0 / np.pi) / special.erfcx(-z / np.sqrt(2.0))  # phi(z) / Phi(z)
    mean = z + lam
    return mean / np.sqrt(np.maximum(1.0 - z * lam - lam * lam, 1e-300)), mean


def truncated_normal_parameters(mean, std):
    """``(loc, scale)`` of the normals truncated at zero whose mean and standard deviation are given.

    Solves ``mean/std = ratio(loc/scale)`` by bisection (the ratio grows with
    ``loc/scale``); ratios below the one at the model's smallest standardized
    location (:data:`MIN_STANDARDIZED_LOC`) take that location.
    """
    mean, std = np.asarray(mean, dtype=np.float64), np.asarray(std, dtype=np.float64)
    ratio = mean / std
    low = np.full(ratio.shape, MIN_STANDARDIZED_LOC)
    high = np.maximum(ratio, 1.0) + 1.0
    for _ in range(80):
        middle = 0.5 * (low + high)
        below = _moment_ratio(middle)[0] < ratio
        low, high = np.where(below, middle, low), np.where(below, high, middle)
    z = 0.5 * (low + high)
    scale = mean / _moment_ratio(z)[1]
    return z * scale, scale


def reference_amplitudes(path, index):
    """The ids of a merge's reflection index found in a merged MTZ, with their ``F`` and ``SigF``.

    A file with ``F`` gives both Friedel members of an anomalous index the same
    value; a file with only ``F(+)``, ``F(-)`` gives each member its own (and
    their mean, where both exist, to a merge without ``--anomalous``).

    Returns
    -------
    (numpy.ndarray of int, numpy.ndarray, numpy.ndarray)

    Raises
    ------
    InputError
        For a file without amplitudes, of another space group, or sharing no reflection with the index.
    """
    ds = read_mtz(path, merged=True, what="merged MTZ file (--structure-factor-file)")
    if ds.spacegroup.xhm() != index.spacegroup.xhm():
        raise InputError(f"space group {ds.spacegroup.xhm()}, the merge's is {index.spacegroup.xhm()}", path)
    mean_only = "F" in ds.columns
    if not mean_only and has_friedel_columns(ds, "F"):
        ds = ds.stack_anomalous()
    sigma = sigma_name(ds, "F")
    if "F" not in ds.columns or sigma is None:
        raise InputError("no amplitudes: needs F and SigF (or SIGF), or F(+), F(-) and their sigmas", path)
    f, sigf = ds["F"].to_numpy(np.float64), ds[sigma].to_numpy(np.float64)
    good = np.isfinite(f) & np.isfinite(sigf) & (sigf > 0) & (f > 0)
    asu, plus = map_to_asu(ds.get_hkls()[good], index.spacegroup)
    ids = index.lookup(asu, plus)
    f, sigf = f[good], sigf[good]
    if mean_only and index.anomalous:
        ids, f, sigf = np.concatenate([ids, index.lookup(asu, ~plus)]), np.tile(f, 2), np.tile(sigf, 2)
    found = ids >= 0
    if not found.any():
        raise InputError("no reflection of this file is among the merge's (another cell, setting or resolution?)",
                         path)
    ids, f, sigf = ids[found], f[found], sigf[found]
    counts = np.bincount(ids, minlength=len(index))
    unique = np.flatnonzero(counts)
    mean = np.bincount(ids, f, len(index))[unique] / counts[unique]
    std = np.bincount(ids, sigf, len(index))[unique] / counts[unique]
    return unique, mean, std


def start_structure_factors(model, index, path, log=print):
    """Start ``q(F)`` of every dataset at a merged MTZ's amplitudes (see :func:`reference_amplitudes`)."""
    ids, mean, std = reference_amplitudes(path, index)
    q = model.structure_factors
    loc, scale = q.loc_raw.numpy().astype(np.float64), q.distribution().scale.numpy().astype(np.float64)
    start_loc, start_scale = truncated_normal_parameters(mean, std)
    for d in range(model.n_datasets):
        loc[d * len(index) + ids], scale[d * len(index) + ids] = start_loc, start_scale
    q.set_initial(loc, scale)
    log(f"structure factors start from {path}: {len(ids)} of {len(index)} reflections "
        f"({100.0 * len(ids) / max(len(index), 1):.1f} %); the others start at the prior")


def set_initial_width(model, fraction):
    """Start ``q(F)`` at the prior's mean with ``fraction`` times its standard deviation (careless's init scale)."""
    q = model.structure_factors
    hkl = np.tile(np.arange(model.n_reflections, dtype=np.int32), model.n_datasets)
    prior = q.prior(sigma=model.wilson_sigma(hkl))
    q.init_scale_fraction = float(fraction)
    q.set_initial(prior.mean().numpy(), fraction * prior.stddev().numpy())


def _scale_parts(model):
    parts = {"encoder": model.encoder, "scale_head": model.scale_head}
    if model.error_model is not None:
        parts["error_model"] = model.error_model
    if getattr(model, "partiality", None) is not None:
        parts["partiality"] = model.partiality
    if getattr(model, "partiality_width", None) is not None:
        parts["partiality_width"] = model.partiality_width
    return parts


def copy_scales(model, path):
    """Copy a saved model's scale networks, ``k``, error model and partiality widths into ``model``.

    Raises
    ------
    InputError
        When the saved networks have other shapes (width, blocks or metadata inputs).
    """
    from careless_online.model.build import load_model

    saved = load_model(path)
    mine, theirs = _scale_parts(model), _scale_parts(saved)
    for name, layer in mine.items():
        source = theirs.get(name)
        shapes = [tuple(w.shape) for w in layer.weights]
        if source is None or [tuple(w.shape) for w in source.weights] != shapes:
            raise InputError(f"its {name.replace('_', ' ')} does not fit this run's (use the same --mlp-width, "
                             "--d-ff, --mlp-layers, --image-layers, metadata keys, positional encoding, "
                             "--refine-uncertainties and --partiality-prior)", path)
        layer.set_weights(source.get_weights())
    model.kappa.assign(saved.kappa)


def freeze(model, structure_factors=False, scales=False):
    """Stop training ``q(F)`` and/or the scale networks (their variables leave ``trainable_variables``)."""
    model.structure_factors.trainable = not structure_factors
    model.encoder.trainable = not scales and model.image_scales  # without image scales it is unused
    model.scale_head.trainable = not scales
    for part in (getattr(model, "partiality", None), getattr(model, "partiality_width", None)):
        if part is not None:
            part.trainable = not scales


def prepare(model, index, start, new=True, log=print):
    """Apply a :class:`StartingPoint` to a model (files only to a model that starts training: ``new``)."""
    if new and start.structure_factor_file:
        start_structure_factors(model, index, start.structure_factor_file, log)
    if new and start.scale_file:
        copy_scales(model, start.scale_file)
        log(f"scale model starts from {start.scale_file}")
    freeze(model, start.freeze_structure_factors, start.freeze_scales)
