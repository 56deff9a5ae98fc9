"""Reparameterized samples of a truncated normal with correct gradients.

TensorFlow registers an implicit-reparameterization gradient for
``StatelessParameterizedTruncatedNormal`` (the op behind
``tfd.TruncatedNormal.sample``) that returns ``dx/dloc = 1`` and
``dx/dscale = (x - loc) / scale``, the derivatives of a sample whose bounds
move with ``loc`` and ``scale``; the parts through the bounds go to the
``low``/``high`` inputs.  When the bounds are constants (here ``low = 0``)
those parts are dropped, and the gradients are wrong wherever the truncation
matters: for ``TruncatedNormal(-1, 1, 0, inf)`` the mean gradient of samples
w.r.t. ``loc`` is 1 instead of ``d E[x] / d loc = 0.199``, and w.r.t. ``scale``
1.52 instead of 0.72.  For weak reflections (``loc`` below 0) this pushed the
posterior scale up and ``loc`` down step after step.

:func:`sample` draws with the same op and attaches the implicit
reparameterization gradient for fixed bounds (Figurnov et al., 2018):

.. math::

    \\frac{\\partial x}{\\partial\\theta}
      = -\\frac{\\partial C(x;\\theta)/\\partial\\theta}{q(x;\\theta)}
      = -\\frac{C}{q}\\frac{\\partial\\log C}{\\partial\\theta}
      = +\\frac{S}{q}\\frac{\\partial\\log S}{\\partial\\theta},

with ``C`` the CDF and ``S = 1 - C``; the form using the smaller of ``C``
and ``S`` (computed in log space by tfp) keeps it accurate in both tails.
Where float32 cannot tell ``C`` (or ``S``) from 0 the derivative is set to 0,
its limit at the bound.
"""

import math

import tensorflow as tf

_LOG_HALF = math.log(0.5)


def sample(distribution, n, seed=None):
    """``n`` samples of a ``tfd.TruncatedNormal`` with fixed-bound implicit gradients.

    Parameters
    ----------
    distribution : tfd.TruncatedNormal
        Its ``low`` and ``high`` are treated as constants.
    n : int
        Number of samples (a leading dimension).
    seed : int or tf.Tensor, optional
        As for ``distribution.sample``.

    Returns
    -------
    tf.Tensor
        ``[n, *batch_shape]`` samples; the values are those of
        ``distribution.sample(n, seed)``, the gradients w.r.t. ``loc`` and
        ``scale`` the exact pathwise ones.
    """
    q = distribution
    low, high = tf.stop_gradient(q.low), tf.stop_gradient(q.high)
    x = tf.clip_by_value(tf.stop_gradient(q.sample(n, seed=seed)), low, high)
    # At a bound C or S is 0 whatever the parameters, so the derivative is 0
    # there; float32 also rounds C to 0 for a sample within ~1e-7 scales of
    # the bound (one in millions).  Such points get a zero derivative and are
    # evaluated at the mean (log 0 = -inf would make 0 * (-inf - -inf) = NaN).
    usable = tf.stop_gradient(tf.math.is_finite(_log_tail(q, x)[0] - q.log_prob(x)))
    x_eval = tf.where(usable, x, tf.stop_gradient(q.mean()))
    log_tail, sign = _log_tail(q, x_eval)
    weight = tf.stop_gradient(tf.where(usable, sign * tf.exp(log_tail - q.log_prob(x_eval)), 0.0))
    return x + weight * (log_tail - tf.stop_gradient(log_tail))


def _log_tail(q, x):
    """The smaller tail at ``x``: ``(log C, -1)`` below the median, else ``(log S, +1)``."""
    log_cdf = q.log_cdf(x)
    lower = log_cdf < _LOG_HALF
    return tf.where(lower, log_cdf, q.log_survival_function(x)), tf.where(lower, -1.0, 1.0)
