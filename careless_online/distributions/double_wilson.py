"""The double-Wilson prior: a child dataset's amplitudes given its parent's.

Two related datasets (a dark and a light state, a native and a soak) have
complex structure factors whose normalized values ``E_c``, ``E_p`` are jointly
Gaussian with correlation ``r`` (the bivariate Wilson model).  Conditioned on
the parent's amplitude ``F_p``, the child's amplitude ``F_c`` follows, with
the Wilson scales ``s_c = sqrt(epsilon Sigma_c)`` and ``s_p = sqrt(epsilon Sigma_p)``
and the conditional mean ``nu = r (s_c / s_p) F_p``:

- acentric (complex ``F``; both components share the variance): Rice,

  .. math::

     p(F_c | F_p) = \\frac{F_c}{\\sigma^2}
        \\exp\\left(-\\frac{F_c^2 + \\nu^2}{2\\sigma^2}\\right)
        I_0\\left(\\frac{F_c \\nu}{\\sigma^2}\\right),
     \\qquad \\sigma^2 = \\frac{s_c^2 (1 - r^2)}{2};

- centric (real signed ``F``): the folded normal of mean ``nu`` and
  variance ``s_c^2 (1 - r^2)``,

  .. math::

     p(F_c | F_p) = \\frac{1}{s\\sqrt{2\\pi}}\\left[
        e^{-(F_c - \\nu)^2 / 2 s^2} + e^{-(F_c + \\nu)^2 / 2 s^2}\\right],
     \\qquad s^2 = s_c^2 (1 - r^2).

Both have ``<F_c^2 | F_p> = nu^2 + s_c^2 (1 - r^2)``, so that averaged over a
Wilson-distributed parent ``<F_c^2> = s_c^2``: the marginal of the child is
its own Wilson prior for every ``r``, and ``r = 0`` is exactly that prior.
"""

import numpy as np
import tensorflow as tf

#: Largest allowed correlation: ``1 - r^2`` must stay a usable width.
MAX_R = 0.999

# Amplitudes are floored here so that log F_c stays finite at a zero sample.
_TINY_F = 1e-30


def _check_r(r):
    value = tf.get_static_value(r)
    if value is not None and not np.all((value >= 0.0) & (value <= MAX_R)):
        raise ValueError(f"double-Wilson r must lie in [0, {MAX_R}]")


def _check_positive(name, values):
    value = tf.get_static_value(values)
    if value is not None and not np.all(np.isfinite(value) & (value > 0)):
        raise ValueError(f"DoubleWilsonPrior {name} must be positive and finite")


class DoubleWilsonPrior:
    """Conditional prior ``p(F_child | F_parent, r)`` per reflection.

    Parameters
    ----------
    centric : array-like of bool
        ``[n]`` True for centric reflections.
    epsilon : array-like of float
        ``[n]`` multiplicity (epsilon) factors.
    parent : array-like of float
        ``[n]`` or ``[..., n]`` parent amplitudes (e.g. posterior samples).
    r : float or array-like
        Correlation in ``[0, MAX_R]`` (per reflection, or per dataset gathered
        to the reflections).
    sigma_child, sigma_parent : float or array-like
        Wilson ``Sigma`` (mean intensity per epsilon) of each dataset.

    Raises
    ------
    ValueError
        If a constant ``r`` lies outside ``[0, MAX_R]`` or ``epsilon`` or a
        ``Sigma`` is not positive and finite (as tfp's ``validate_args``).
    """

    def __init__(self, centric, epsilon, parent, r, sigma_child=1.0, sigma_parent=1.0):
        epsilon = tf.convert_to_tensor(epsilon, tf.float32)
        sigma_child = tf.convert_to_tensor(sigma_child, tf.float32)
        sigma_parent = tf.convert_to_tensor(sigma_parent, tf.float32)
        r = tf.convert_to_tensor(r, tf.float32)
        _check_r(r)
        for name, value in (("epsilon", epsilon), ("sigma_child", sigma_child), ("sigma_parent", sigma_parent)):
            _check_positive(name, value)
        self.centric = tf.cast(centric, tf.bool)
        self.r = r
        s_child = tf.sqrt(epsilon * sigma_child)
        s_parent = tf.sqrt(epsilon * sigma_parent)
        self.loc = r * s_child / s_parent * tf.convert_to_tensor(parent, tf.float32)
        self.variance = tf.square(s_child) * (1.0 - tf.square(r))

    def _acentric_log_prob(self, F):
        half = 0.5 * self.variance
        z = F * self.loc / half
        return (tf.math.log(F) - tf.math.log(half) - tf.square(F - self.loc) / (2.0 * half)
                + tf.math.log(tf.math.bessel_i0e(z)))

    def _centric_log_prob(self, F):
        s2 = self.variance
        pair = tf.stack([-tf.square(F - self.loc), -tf.square(F + self.loc)], axis=0) / (2.0 * s2)
        return tf.reduce_logsumexp(pair, axis=0) - 0.5 * tf.math.log(2.0 * np.pi * s2)

    def log_prob(self, F):
        """Log density of child amplitudes ``F`` (broadcast against the parent).

        Parameters
        ----------
        F : array-like
            ``[n]`` or ``[..., n]`` non-negative amplitudes.

        Returns
        -------
        tf.Tensor
            ``log p(F | F_parent, r)``.
        """
        F = tf.maximum(tf.convert_to_tensor(F, tf.float32), _TINY_F)
        return tf.where(self.centric, self._centric_log_prob(F), self._acentric_log_prob(F))

    def prob(self, F):
        """Density of child amplitudes ``F``."""
        return tf.exp(self.log_prob(F))

    def second_moment(self):
        """``<F_child^2 | F_parent> = nu^2 + s_c^2 (1 - r^2)`` (both centricities)."""
        return tf.square(self.loc) + self.variance


def r_from_logit(logit):
    """Correlation in ``(0, MAX_R)`` from an unconstrained parameter: ``MAX_R * sigmoid(logit)``."""
    return MAX_R * tf.sigmoid(logit)


def logit_from_r(r):
    """Inverse of :func:`r_from_logit` (``r`` clipped into the open interval)."""
    fraction = np.clip(np.asarray(r, dtype=np.float64) / MAX_R, 1e-6, 1.0 - 1e-6)
    return np.log(fraction) - np.log1p(-fraction)
