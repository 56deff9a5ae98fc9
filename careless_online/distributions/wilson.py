"""Wilson's prior on structure factor amplitudes."""

import numpy as np
import tensorflow as tf
import tensorflow_probability as tfp

tfd = tfp.distributions


def _check_positive(name, values):
    values = tf.get_static_value(values)
    if values is not None and not np.all(np.isfinite(values) & (values > 0)):
        raise ValueError(f"WilsonPrior {name} must be positive and finite")


class WilsonPrior:
    """Wilson distribution of amplitudes ``F``, acentric or centric per element.

    With ``s = sqrt(epsilon * sigma)``:

    - acentric: ``p(F) = 2F/s^2 exp(-F^2/s^2)``, i.e.
      ``tfd.Weibull(concentration=2, scale=s)``;
    - centric: ``p(F) = sqrt(2/(pi s^2)) exp(-F^2/(2 s^2))``, i.e.
      ``tfd.HalfNormal(scale=s)``.

    Both have ``<F^2> = epsilon * sigma``.

    Parameters
    ----------
    centric : array-like of bool
        ``[n]`` True for centric reflections.
    epsilon : array-like of float
        ``[n]`` multiplicity (epsilon) factors.
    sigma : float or array-like
        Mean intensity ``Sigma`` (scalar or broadcastable to ``[n]``).

    Raises
    ------
    ValueError
        If ``epsilon`` or ``sigma`` has a value that is not positive and
        finite (checked where the values are known when the prior is made,
        as tfp's ``validate_args`` does for constant parameters).
    """

    def __init__(self, centric, epsilon, sigma=1.0):
        self.centric = tf.cast(centric, tf.bool)
        epsilon = tf.convert_to_tensor(epsilon, tf.float32)
        sigma = tf.convert_to_tensor(sigma, tf.float32)
        _check_positive("epsilon", epsilon)
        _check_positive("sigma", sigma)
        self.scale = tf.sqrt(epsilon * sigma) * tf.ones_like(epsilon)
        self._centric = tfd.HalfNormal(scale=self.scale)
        self._acentric = tfd.Weibull(concentration=tf.constant(2.0), scale=self.scale)

    def _select(self, centric_value, acentric_value):
        return tf.where(self.centric, centric_value, acentric_value)

    def log_prob(self, F):
        """Log density of amplitudes ``F`` (``[n]`` or ``[..., n]``).

        Each branch is evaluated at a harmless value where it is not selected,
        so that gradients stay finite (the acentric log density is ``-inf`` at
        ``F = 0``).
        """
        F = tf.convert_to_tensor(F, tf.float32)
        safe = tf.broadcast_to(self.scale, tf.shape(F))
        centric = tf.broadcast_to(self.centric, tf.shape(F))
        lp_centric = self._centric.log_prob(tf.where(centric, F, safe))
        lp_acentric = self._acentric.log_prob(tf.where(centric, safe, F))
        return tf.where(centric, lp_centric, lp_acentric)

    def prob(self, F):
        """Density of amplitudes ``F``."""
        return tf.exp(self.log_prob(F))

    def mean(self):
        """``[n]`` prior means."""
        return self._select(self._centric.mean(), self._acentric.mean())

    def stddev(self):
        """``[n]`` prior standard deviations."""
        return self._select(self._centric.stddev(), self._acentric.stddev())

    def sample(self, n, seed=None):
        """Draw ``[n, n_reflections]`` amplitudes.

        Parameters
        ----------
        n : int
            Number of draws.
        seed : int or tuple of two ints, optional
            Seed; a tuple gives stateless (reproducible) sampling.
        """
        if seed is None:
            seed_c = seed_a = None
        else:
            seed_c, seed_a = tfp.random.split_seed(seed, n=2)
        return self._select(
            self._centric.sample(n, seed=seed_c), self._acentric.sample(n, seed=seed_a)
        )
