"""A learned error model for the input intensity uncertainties.

Integration programs give each intensity a counting-statistics uncertainty
``SigI``; the errors of a merge also come from everything the model does not
capture exactly (partiality, scale, background, detector), which grow with
the intensity.  Classical scaling programs inflate the uncertainties as

    SigI'² = a² (SigI² + b I + (c I)²)

with ``a, b, c`` fitted to the scatter of the observations.  Here the same
form acts on the scaled quantities of the likelihood (``k I``, ``k SigI``) with
the model's own prediction ``Î = Σ F²`` (gradient stopped) in place of the
noisy ``I``, and ``a, b, c`` are positive weights learned with the rest of the
model by maximizing the ELBO, i.e. the likelihood of the observations'
actual scatter.  Wider observation errors widen the posteriors of the
amplitudes accordingly, so the merged SIGF reflect the data's real errors
instead of counting statistics alone.

Parameterization: ``a = softplus(α)``, ``b = softplus(β)``, ``c = softplus(γ)``,
starting at ``a = 1``, ``b = 10⁻⁴`` and ``c = 10⁻²`` (close to the input
uncertainties).
"""

import keras
import tensorflow as tf
import tensorflow_probability as tfp

_PACKAGE = "careless_online"

#: Starting values of a, b and c.
INITIAL = {"a": 1.0, "b": 1e-4, "c": 1e-2}


@keras.saving.register_keras_serializable(package=_PACKAGE)
class ErrorModel(keras.layers.Layer):
    """``σ' = a sqrt(σ² + b |Î| + (c Î)²)`` with learned positive ``a, b, c``.

    Call it as ``layer(sigma, prediction)``: ``sigma`` the scaled input
    uncertainties ``k SigI`` (``[n]``), ``prediction`` the predicted scaled
    intensities ``Σ F²`` (``[..., n]``, e.g. Monte Carlo samples); returns the
    refined uncertainties, broadcast to ``prediction``'s shape.
    """

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.a_raw, self.b_raw, self.c_raw = (
            self.add_weight(name=f"error_{name}", shape=(), trainable=True,
                            initializer=keras.initializers.Constant(
                                float(tfp.math.softplus_inverse(tf.constant(value, tf.float64)))))
            for name, value in INITIAL.items())
        self.built = True

    def parameters(self):
        """The current ``(a, b, c)`` as float tensors."""
        return tuple(tf.nn.softplus(raw) for raw in (self.a_raw, self.b_raw, self.c_raw))

    def call(self, sigma, prediction):
        a, b, c = self.parameters()
        intensity = tf.abs(tf.stop_gradient(prediction))
        return a * tf.sqrt(tf.square(sigma) + b * intensity + tf.square(c * intensity))
