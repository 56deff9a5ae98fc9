"""The resolution dependence of the Wilson prior: Σ as a function of 1/d².

Why it is needed
----------------
The likelihood sees only ``Σ_i F_h²`` (observation scale times squared
amplitude), and the scale network sees ``dHKL``: a resolution fall-off can sit
in the scales or in the amplitudes equally well as far as the data go.  With
the same prior mean ``<F²> = ε`` at every resolution, the Wilson prior pulls
weak high-resolution amplitudes up and strong low-resolution ones down, so
the merged F lose part of their true fall-off (the scales take it instead).
Letting the prior's Σ follow the data's fall-off removes that pull; the scale
prior ``LogNormal(0, 1)``, which favours scales near 1 at every resolution,
then leaves the fall-off in F.

The model
---------
With ``x = 1/d²`` and ``K`` knots ``x_j = j x_max / (K - 1)``::

    g(x) = piecewise-linear interpolation of the values v_j at the knots x_j
    Σ_h = exp(g(x_h)) / mean_r exp(g(x_r))          (mean over every reflection of the index)

The normalization fixes the one direction the ELBO cannot see (scaling all F
by c, Σ by c² and the intensity scale k by c² changes nothing), and keeps
``<F²>/ε ≈ 1`` on average as with a flat prior.  The ``v_j`` are learned with
the rest of the model (empirical Bayes: the ELBO is maximized over them, so
they follow the shell means of the posterior's ``F²/ε``).  They start at the
shell means of the unmerged ``I/ε`` (:meth:`WilsonSigma.fit_moments`), and the
posterior of F starts at this prior's mean: the learned curve alone, started
flat, leaves part of the fall-off in the scales, because moving it from the
scales to thousands of amplitudes at once is a slow, ill-conditioned direction
for the optimizer.  A fixed Wilson B-factor instead gives ``g(x) = -B x / 2``
(``<F²> ∝ exp(-B/(2d²))``); ``B = 0`` is the flat prior ``Σ = 1``.
"""

import keras
import numpy as np
import tensorflow as tf

_PACKAGE = "careless_online"


@keras.saving.register_keras_serializable(package=_PACKAGE)
class WilsonSigma(keras.layers.Layer):
    """Σ of the Wilson prior of each reflection, from its resolution.

    Calling the layer with reflection ids (int32 ``[n]``) returns their Σ
    (float32 ``[n]``).

    Parameters
    ----------
    n_reflections : int
        Size of the reflection index.
    max_inverse_d2 : float
        ``x_max``: 1/d² of the last knot (the index's highest resolution).
    knots : int
        Number of knots ``K`` (at least 2) of the learned ``log Σ``.
    b_factor : float, optional
        Fixed Wilson B (Å²) instead of a learned curve; 0 gives ``Σ = 1``.
    """

    def __init__(self, n_reflections, max_inverse_d2, knots=8, b_factor=None, **kwargs):
        super().__init__(**kwargs)
        self.n_reflections = int(n_reflections)
        self.max_inverse_d2 = float(max_inverse_d2)
        self.knots = int(knots)
        self.b_factor = None if b_factor is None else float(b_factor)
        if not self.max_inverse_d2 > 0:
            raise ValueError(f"max_inverse_d2 must be > 0, got {max_inverse_d2}")
        if self.knots < 2:
            raise ValueError(f"knots must be >= 2, got {knots}")
        if self.b_factor is not None and not np.isfinite(self.b_factor):
            raise ValueError(f"b_factor must be finite, got {b_factor}")
        self.inverse_d2 = self.add_weight(name="inverse_d2", shape=(self.n_reflections,),
                                          initializer="zeros", trainable=False)
        self.values = self.add_weight(name="log_sigma_knots", shape=(self.knots,), initializer="zeros",
                                      trainable=self.b_factor is None)
        self.built = True

    @property
    def learned(self):
        """Whether the curve is learned (no fixed B-factor)."""
        return self.b_factor is None

    def set_resolution(self, inverse_d2):
        """Set each reflection's ``1/d²`` (``[n_reflections]``)."""
        inverse_d2 = np.asarray(inverse_d2, dtype=np.float32)
        if inverse_d2.shape != (self.n_reflections,):
            raise ValueError(f"inverse_d2 must have shape ({self.n_reflections},), got {inverse_d2.shape}")
        self.inverse_d2.assign(inverse_d2)

    def knot_weights(self, inverse_d2):
        """Linear-interpolation weights ``[n, K]`` of points ``x = 1/d²`` on the knots (numpy)."""
        x = np.asarray(inverse_d2, dtype=np.float64)
        position = np.clip(x / (self.max_inverse_d2 / (self.knots - 1)), 0.0, self.knots - 1.0)
        left = np.minimum(np.floor(position).astype(int), self.knots - 2)
        frac = position - left
        weights = np.zeros((len(x), self.knots))
        np.add.at(weights, (np.arange(len(x)), left), 1.0 - frac)
        np.add.at(weights, (np.arange(len(x)), left + 1), frac)
        return weights

    def fit_moments(self, inverse_d2, intensity_sum, counts):
        """Start the learned curve at the data's own fall-off (method of moments).

        Each knot value becomes ``v_j = log(Σ_i w_ij I_i/ε_i / Σ_i w_ij)``, the
        interpolation-weighted mean of the observations' ``I/ε`` around the
        knot: the unmerged intensities' shell means carry ``<F²>``'s fall-off
        times the mean observation scale, whose resolution dependence (mean
        image B-factor, polarization) is small.  Starting there, the scales
        need not take up the fall-off at the start of training, and the ELBO
        refines the curve.  Knots without data or with a non-positive mean
        take their neighbours' values.  No-op for a fixed B-factor.

        Parameters
        ----------
        inverse_d2 : array of float
            1/d² of each unique reflection.
        intensity_sum : array of float
            Sum of ``I/ε`` over each reflection's observations (any common scale).
        counts : array of int
            Observations of each reflection.
        """
        if not self.learned or len(inverse_d2) == 0:
            return
        weights = self.knot_weights(inverse_d2)
        total = weights.T @ np.asarray(counts, dtype=np.float64)
        mean = weights.T @ np.asarray(intensity_sum, dtype=np.float64) / np.maximum(total, 1e-12)
        good = (total > 0) & (mean > 0)
        if not good.any():
            return
        log_mean = np.log(np.where(good, mean, 1.0))
        knots = np.arange(self.knots)
        values = np.interp(knots, knots[good], log_mean[good])
        self.values.assign((values - values.mean()).astype(np.float32))

    def log_curve(self, inverse_d2):
        """Unnormalized ``g(x)`` at ``x = 1/d²`` (tensor of any shape)."""
        x = tf.convert_to_tensor(inverse_d2, tf.float32)
        if not self.learned:
            return -0.5 * self.b_factor * x
        step = self.max_inverse_d2 / (self.knots - 1)
        position = tf.clip_by_value(x / step, 0.0, self.knots - 1.0)
        left = tf.minimum(tf.cast(tf.floor(position), tf.int32), self.knots - 2)
        frac = position - tf.cast(left, tf.float32)
        return (1.0 - frac) * tf.gather(self.values, left) + frac * tf.gather(self.values, left + 1)

    def log_normalizer(self):
        """``log mean_r exp(g(x_r))`` over every reflection of the index."""
        g = self.log_curve(self.inverse_d2)
        return tf.reduce_logsumexp(g) - tf.math.log(tf.cast(tf.size(g), tf.float32))

    def call(self, ids):
        """Σ of the reflections ``ids``."""
        g = self.log_curve(tf.gather(self.inverse_d2, ids))
        return tf.exp(g - self.log_normalizer())

    def curve(self, inverse_d2):
        """Normalized Σ at arbitrary ``1/d²`` values (numpy), for reports and plots."""
        return np.exp((self.log_curve(np.asarray(inverse_d2, np.float32)) - self.log_normalizer()).numpy())

    def get_config(self):
        config = super().get_config()
        config.update(n_reflections=self.n_reflections, max_inverse_d2=self.max_inverse_d2,
                      knots=self.knots, b_factor=self.b_factor)
        return config
