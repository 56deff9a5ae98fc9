"""Where a fresh model's posterior starts: the prior's fall-off and every q(F) from one pass over the data.

The structure factors' surrogate posterior is optimized by Adam, whose steps
have a size of about the learning rate whatever the gradient: a reflection
that starts at its prior mean (``~0.9 sqrt(eps Sigma)``) and whose amplitude
is ten times that needs hundreds of the steps in which it is observed to get
there.  The strongest reflections, mostly at low resolution, are exactly those
that lie far from the prior, so a merge started at the prior ends with them
too low and over-confident when the run is short of steps.  Starting each
``q(F_h)`` at its data's own estimate removes that: with ``n_h``
observations of mean ``I/eps`` equal to ``r_h`` times the mean of its
resolution shell,

.. math:: \\hat F_h^2 = \\varepsilon_h \\Sigma_h\\,\\tilde r_h, \\qquad
          \\tilde r_h = \\frac{n_h r_h + n_0}{n_h + n_0},

(``n_0 = 1`` pseudo-observation of the prior's ``r = 1``), i.e. the
reflection's normalized intensity (in an anomalous merge the two Friedel
mates pool their observations and start alike, so that the anomalous
differences grow from the data as they do from the prior's start instead of
starting at the noise of two separate means), which the unknown per-image scales and
partialities leave unbiased on average over its observations.  The start is
``loc_h = sqrt(max(r~_h, r_min) eps_h Sigma_h)`` and the scale the smaller of
the prior's standard deviation and ``loc_h / (2 sqrt(n_h))`` (the spread of a
mean of ``n_h`` intensities with a relative scatter of one), never below a
twentieth of the prior's.

With a partiality prior (:class:`~careless_online.layers.PartialityPrior`)
the scales start at ``P_i' = exp(log P_i - c)``, not 1, so the means above
are ratio estimates ``sum_i I_i / sum_i P_i'`` (each reflection's, each
shell's, the prior's knots'): the start of ``q(F)`` then leaves out the
partiality that the scales' start already holds, instead of counting it
twice.
"""

import numpy as np

#: Pseudo-observations of the prior's normalized intensity 1 in each reflection's start.
PRIOR_OBSERVATIONS = 1.0
#: Lowest normalized intensity a start takes (weak and negative means: ``0.4 sqrt(eps Sigma)``).
MIN_RATIO = 0.16
#: Lowest start scale, as a fraction of the prior's standard deviation.
MIN_SCALE_FRACTION = 0.05
#: The choices of ``start_posterior``'s ``mode``.
MODES = ("data", "prior")


def reflection_sums(manifest, n_reflections):
    """Sum of ``I`` and number of observations of each unique reflection (one pass over the cache)."""
    total = np.zeros(n_reflections)
    for i in range(len(manifest.shards)):
        part = manifest.load_shard(i, ["refl_id", "I"])
        total += np.bincount(part["refl_id"], part["I"], minlength=n_reflections)
    return total, np.asarray(manifest.counts(), dtype=np.float64)


def reflection_exposure(model, manifest, n_reflections):
    """Sum of the starting scales ``exp(log P_i - c)`` over each reflection's observations.

    None without a partiality prior (every scale starts at 1: the exposure
    is the count of observations).
    """
    layer = getattr(model, "partiality", None)
    if layer is None:
        return None
    from careless_online.io.ewald import COLUMN

    inverse_d2 = model.wilson_sigma.inverse_d2.numpy()
    total = np.zeros(n_reflections)
    for i in range(len(manifest.shards)):
        part = manifest.load_shard(i, ["refl_id", COLUMN])
        scale = np.exp(layer(part[COLUMN].astype(np.float32), inverse_d2[part["refl_id"]]).numpy())
        total += np.bincount(part["refl_id"], scale.astype(np.float64), minlength=n_reflections)
    return total


def normalized_intensity(sigma, intensity_sum, counts, exposure=None):
    """``r~_h``: each reflection's mean ``I/eps`` over its shell's, shrunk towards 1.

    Parameters
    ----------
    sigma : careless_online.distributions.wilson_scale.WilsonSigma
        Its knots define the shells (interpolation-weighted means).
    intensity_sum : array of float
        Sum of ``I/eps`` over each reflection's observations.
    counts : array of float
        Observations of each reflection.
    exposure : array of float, optional
        Sum of the starting scales over each reflection's observations
        (:func:`reflection_exposure`; default ``counts``): the means are
        ``intensity_sum / exposure``.
    """
    weights = sigma.knot_weights(sigma.inverse_d2.numpy())
    if exposure is None:
        exposure, floor = counts, 1.0
    else:
        floor = 1e-12
    knot_mean = weights.T @ intensity_sum / np.maximum(weights.T @ exposure, 1e-12)
    shell_mean = weights @ knot_mean
    mean = np.where(counts > 0, intensity_sum / np.maximum(exposure, floor), 0.0)
    ratio = np.where(shell_mean > 0, mean / np.where(shell_mean > 0, shell_mean, 1.0), 1.0)
    return (counts * ratio + PRIOR_OBSERVATIONS) / (counts + PRIOR_OBSERVATIONS)


def pooled_over_mates(values, hkl):
    """Sum ``values`` over the reflections sharing ASU Miller indices ``hkl`` (Friedel mates), per reflection."""
    _, group = np.unique(np.asarray(hkl), axis=0, return_inverse=True)
    group = group.reshape(-1)
    return np.bincount(group, values)[group]


def data_start(prior, ratio, counts):
    """(loc, scale) of every ``q(F)`` from its normalized intensity (see the module's docstring).

    Parameters
    ----------
    prior : careless_online.distributions.wilson.WilsonPrior
        The reflections' prior (its mean square is ``eps Sigma``).
    ratio, counts : array of float
        :func:`normalized_intensity` and the observations of each reflection.
    """
    prior_sd = prior.stddev().numpy().astype(np.float64)
    mean_square = np.square(prior.mean().numpy().astype(np.float64)) + np.square(prior_sd)
    loc = np.sqrt(np.maximum(ratio, MIN_RATIO) * mean_square)
    spread = 0.5 * loc / np.sqrt(np.maximum(counts, 1.0))
    return loc, np.clip(spread, MIN_SCALE_FRACTION * prior_sd, prior_sd)


def start_posterior(model, manifest, index, mode="data"):
    """Start a fresh model's learned prior Σ(1/d²) and its q(F) from the data.

    The prior's knots start at the shell means of ``I/eps``
    (:meth:`~careless_online.distributions.wilson_scale.WilsonSigma.fit_moments`).
    ``mode`` ``data`` starts every ``q(F)`` at :func:`data_start`, ``prior``
    at the prior's mean and standard deviation (careless's start).  A fixed
    Wilson B leaves the prior as it is.

    Parameters
    ----------
    model : careless_online.model.merging.MergingModel
    manifest : careless_online.io.cache.Manifest
    index : careless_online.io.reflections.ReflectionIndex
    mode : str
        One of :data:`MODES`.
    """
    if mode not in MODES:
        raise ValueError(f"mode must be one of {', '.join(MODES)}, got {mode!r}")
    sigma, q = model.wilson_sigma, model.structure_factors
    if len(index) == 0 or (mode == "prior" and not sigma.learned):
        return
    total, counts = reflection_sums(manifest, len(index))
    intensity = total / index.epsilon
    exposure = reflection_exposure(model, manifest, len(index))
    if sigma.learned:
        sigma.fit_moments(sigma.inverse_d2.numpy(), intensity, counts if exposure is None else exposure)
    hkl = np.tile(np.arange(len(index), dtype=np.int32), model.n_datasets)  # every dataset starts alike
    prior = q.prior(sigma=sigma(hkl))
    if mode == "prior":
        q.set_initial(prior.mean().numpy(), q.init_scale_fraction * prior.stddev().numpy())
        return
    if index.anomalous:
        intensity, counts = pooled_over_mates(intensity, index.hkl), pooled_over_mates(counts, index.hkl)
        exposure = None if exposure is None else pooled_over_mates(exposure, index.hkl)
    ratio = np.tile(normalized_intensity(sigma, intensity, counts, exposure), model.n_datasets)
    q.set_initial(*data_start(prior, ratio, np.tile(counts, model.n_datasets)))
