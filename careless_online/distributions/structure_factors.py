"""Surrogate posterior of the structure factor amplitudes."""

import keras
import numpy as np
import tensorflow as tf
import tensorflow_probability as tfp

from careless_online.checks import integer_at_least, positive
from careless_online.distributions import truncated_normal
from careless_online.distributions.wilson import WilsonPrior

tfd = tfp.distributions

_PACKAGE = "careless_online"

#: Lowest allowed ``loc / scale``. Below about -10, tfp's TruncatedNormal
#: underflows in float32 (NaN gradients of samples and stddev, wrong means).
MIN_STANDARDIZED_LOC = -8.0

#: The upper truncation point is placed this many scales above
#: ``max(loc, 0)`` (with its gradient stopped): the neglected mass is
#: ``~exp(-200)``. An infinite upper bound gives NaN stddevs and gradients.
UPPER_TAIL = 20.0

# Amplitudes are floored here before densities are evaluated at them, so an
# exact-zero sample never turns the acentric Wilson log density into -inf.
_TINY_F = 1e-30


@keras.saving.register_keras_serializable(package=_PACKAGE)
class StructureFactorPosterior(keras.layers.Layer):
    """Truncated-normal surrogate posterior ``q(F)`` of unique reflections.

    ``q(F_h) = TruncatedNormal(loc_h, scale_h, low=0, high=~inf)``, with
    ``scale = softplus(raw) + min_scale`` and ``loc`` clamped to at least
    ``MIN_STANDARDIZED_LOC * scale``. All variables are created at
    construction, so a model holding this layer loads its weights without
    having to be called first. ``centric`` and ``epsilon`` are kept as
    non-trainable weights and so travel with the saved weights; the config
    holds only the scalars.

    Calling the layer, ``F, kl = layer(ids, mc_samples)``, returns
    reparameterized samples ``[mc_samples, n]`` of the gathered reflections
    and the per-reflection Monte Carlo KL estimate ``[n]``.

    Parameters
    ----------
    n_reflections : int
        Number of unique reflections.
    centric : array-like of bool, optional
        ``[n_reflections]`` centric flags (default: all acentric).
    epsilon : array-like of float, optional
        ``[n_reflections]`` multiplicity factors (default: all 1).
    sigma : float
        Wilson ``Sigma`` (mean intensity) of the prior.
    min_scale : float
        Lower bound on the posterior scale.
    init_scale_fraction : float
        The posterior starts at ``loc = prior mean`` and
        ``scale = init_scale_fraction * prior stddev``.
    """

    def __init__(
        self,
        n_reflections,
        centric=None,
        epsilon=None,
        sigma=1.0,
        min_scale=1e-4,
        init_scale_fraction=1.0,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.n_reflections = integer_at_least("n_reflections", n_reflections, 1)
        self.sigma = positive("sigma", sigma)
        self.min_scale = positive("min_scale", min_scale)
        self.init_scale_fraction = positive("init_scale_fraction", init_scale_fraction)
        n = self.n_reflections
        self.centric = self.add_weight(
            name="centric", shape=(n,), initializer="zeros", trainable=False
        )
        self.epsilon = self.add_weight(
            name="epsilon", shape=(n,), initializer="ones", trainable=False
        )
        self.loc_raw = self.add_weight(name="loc", shape=(n,), initializer="zeros")
        self.scale_raw = self.add_weight(name="scale_raw", shape=(n,), initializer="zeros")
        if centric is not None:
            self.centric.assign(self._check_shape(centric, "centric").astype(np.float32))
        if epsilon is not None:
            epsilon = self._check_shape(epsilon, "epsilon").astype(np.float32)
            if not np.all(np.isfinite(epsilon) & (epsilon > 0)):
                raise ValueError("epsilon factors must be positive and finite")
            self.epsilon.assign(epsilon)
        prior = self.prior()
        self.set_initial(prior.mean(), self.init_scale_fraction * prior.stddev())
        self.built = True

    def _check_shape(self, values, name):
        values = np.asarray(values)
        if values.shape != (self.n_reflections,):
            raise ValueError(
                f"{name} must have shape ({self.n_reflections},), got {values.shape}"
            )
        return values

    def set_initial(self, loc, scale):
        """(Re)initialize the posterior from arrays of location and scale.

        Parameters
        ----------
        loc : array-like
            ``[n_reflections]`` TruncatedNormal locations.
        scale : array-like
            ``[n_reflections]`` TruncatedNormal scales; values below
            ``min_scale`` are raised to just above it.
        """
        loc = self._check_shape(np.asarray(loc, dtype=np.float64), "loc")
        scale = self._check_shape(np.asarray(scale, dtype=np.float64), "scale")
        gap = np.maximum(scale - self.min_scale, 1e-3 * self.min_scale)
        self.loc_raw.assign(loc.astype(np.float32))
        self.scale_raw.assign(tfp.math.softplus_inverse(gap).numpy().astype(np.float32))

    def _gather(self, value, ids):
        return value if ids is None else tf.gather(value, ids)

    def prior(self, ids=None, sigma=None):
        """:class:`WilsonPrior` of the reflections ``ids`` (all if None).

        ``sigma``: per-reflection Wilson Σ of those reflections (e.g. from
        :class:`~careless_online.distributions.wilson_scale.WilsonSigma`);
        default the constant ``self.sigma``.
        """
        return WilsonPrior(
            self._gather(self.centric, ids) > 0.5,
            self._gather(self.epsilon, ids),
            self.sigma if sigma is None else sigma,
        )

    def distribution(self, ids=None):
        """``tfd.TruncatedNormal`` of the reflections ``ids`` (int32 ``[n]``; all if None).

        The upper bound is ``max(loc, 0) + UPPER_TAIL * scale`` (treated as a
        constant), not infinity.
        """
        scale = tf.nn.softplus(self._gather(self.scale_raw, ids)) + self.min_scale
        loc = tf.maximum(self._gather(self.loc_raw, ids), MIN_STANDARDIZED_LOC * scale)
        high = tf.stop_gradient(tf.maximum(loc, 0.0) + UPPER_TAIL * scale)
        return tfd.TruncatedNormal(loc, scale, low=0.0, high=high)

    def mean(self):
        """``[n_reflections]`` posterior means."""
        return self.distribution().mean()

    def stddev(self):
        """``[n_reflections]`` posterior standard deviations."""
        return self.distribution().stddev()

    def sample(self, ids, mc_samples=1, seed=None):
        """Reparameterized samples ``[mc_samples, n]`` of reflections ``ids``.

        The gradients are the exact ones for the fixed bounds (see
        :mod:`careless_online.distributions.truncated_normal`; tfp's own are
        biased wherever the truncation at zero matters).
        """
        return truncated_normal.sample(self.distribution(ids), mc_samples, seed=seed)

    def kl_to_prior(self, ids, samples, sigma=None):
        """Monte Carlo ``KL(q || Wilson)`` per reflection.

        Parameters
        ----------
        ids : tf.Tensor
            int32 ``[n]`` reflection ids.
        samples : tf.Tensor
            ``[mc, n]`` samples of ``q`` for those reflections (reparameterized
            ones for gradients).
        sigma : tf.Tensor, optional
            ``[n]`` Wilson Σ of those reflections (see :meth:`prior`).

        Returns
        -------
        tf.Tensor
            ``[n]`` mean over samples of ``log q(F) - log p(F)``.
        """
        F = tf.maximum(samples, _TINY_F)
        log_ratio = self.distribution(ids).log_prob(F) - self.prior(ids, sigma).log_prob(F)
        return tf.reduce_mean(log_ratio, axis=0)

    def call(self, ids, mc_samples=1):
        """Samples ``[mc_samples, n]`` and KL estimate ``[n]`` for reflections ``ids``."""
        samples = self.sample(ids, mc_samples)
        return samples, self.kl_to_prior(ids, samples)

    def get_config(self):
        config = super().get_config()
        config.update(
            n_reflections=self.n_reflections,
            sigma=self.sigma,
            min_scale=self.min_scale,
            init_scale_fraction=self.init_scale_fraction,
        )
        return config
