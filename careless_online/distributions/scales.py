"""Surrogate posterior and prior of the per-observation scale factors ``Sigma``."""

import tensorflow as tf
import tensorflow_probability as tfp

tfd = tfp.distributions


def scale_distribution(loc, scale):
    """Surrogate posterior ``q(Sigma_i) = LogNormal(loc_i, scale_i)``.

    Parameters
    ----------
    loc, scale : tf.Tensor
        ``[n]`` location and scale of the underlying normal (log space).

    Returns
    -------
    tfd.LogNormal
    """
    return tfd.LogNormal(loc, scale)


def scale_prior(dtype=tf.float32):
    """The prior ``p(Sigma) = LogNormal(0, 1)``."""
    return tfd.LogNormal(tf.zeros([], dtype), tf.ones([], dtype))


def scale_kl(loc, scale):
    """Analytic ``KL(LogNormal(loc, scale) || LogNormal(0, 1))``, elementwise.

    The KL of two log-normals is that of their normals:

    .. math::

        \\mathrm{KL} = -\\log s + \\frac{s^2 + m^2}{2} - \\frac{1}{2}.

    Parameters
    ----------
    loc, scale : tf.Tensor
        ``[n]`` parameters ``m, s`` of the surrogate posterior.

    Returns
    -------
    tf.Tensor
        ``[n]`` KL divergences.
    """
    loc = tf.convert_to_tensor(loc)
    return tfd.kl_divergence(scale_distribution(loc, scale), scale_prior(loc.dtype))
