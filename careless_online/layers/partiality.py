"""The physical partiality of a still: the mean of the scales' prior.

A reflection's reciprocal-space profile is a Gaussian of rms width
``sigma`` across the Ewald sphere, ``sigma^2 = r^2 + (eta q)^2`` (domain
size term ``r``, mosaic spread ``eta`` in radians, ``q = 1/d``); the sphere
itself has an effective Gaussian thickness ``tau`` (bandwidth, divergence).
The fraction of the reflection that a still records at Ewald offset ``e``
(Å⁻¹) is the overlap of the two:

.. math::

    P(e, q) = \\frac{\\tau}{\\sqrt{\\sigma^2 + \\tau^2}}
              \\exp\\Big(-\\frac{e^2}{2 (\\sigma^2 + \\tau^2)}\\Big).

``tau -> 0`` gives a height ``tau / sigma``: the Lorentz-like tie (a wide
profile records less of itself at its peak); ``tau`` much wider than
``sigma`` gives height 1 and no dependence on ``e``.  Only ``W^2 = r^2 +
tau^2 + eta^2 q^2`` and the constant ``log tau`` enter ``log P``: the
height's fall with resolution is ``1 / W(q)``, the same width that the
shape in ``e`` measures.

:class:`PartialityPrior` gives ``log P_i - c`` for each observation, with
the constant ``c`` fixed when the layer is made (the mean ``log P`` of the
training data at the starting parameters, so the term is scale-neutral
there). The merging model adds it to the location of ``q(Sigma_i)`` and to
the mean of its prior (:meth:`careless_online.model.merging.MergingModel.scale_parameters`).
"""

import math

import keras
import numpy as np
import tensorflow as tf

from careless_online.checks import positive

_PACKAGE = "careless_online"


def log_partiality(ewald_offset, inverse_d2, r, eta, tau):
    """``log P`` of the overlap of a Gaussian profile and a Gaussian Ewald shell.

    .. math::

        \\log P = \\log\\tau - \\tfrac12 \\log W^2 - \\frac{e^2}{2 W^2},
        \\qquad W^2 = r^2 + \\eta^2 q^2 + \\tau^2,\\; q^2 = 1/d^2.

    Parameters
    ----------
    ewald_offset : array-like
        ``e``, Å⁻¹.
    inverse_d2 : array-like
        ``1/d^2``, Å⁻².
    r, eta, tau : float or tensor
        Positive: profile radius (Å⁻¹), mosaic spread (rad), shell thickness (Å⁻¹).

    Returns
    -------
    tf.Tensor
        ``log P`` of each observation (the dtype of ``ewald_offset``).
    """
    e = tf.convert_to_tensor(ewald_offset)
    r, eta, tau, q2 = (tf.cast(x, e.dtype) if tf.is_tensor(x) else tf.convert_to_tensor(x, e.dtype)
                       for x in (r, eta, tau, inverse_d2))
    w2 = tf.square(r) + tf.square(eta) * q2 + tf.square(tau)
    return tf.math.log(tau) - 0.5 * tf.math.log(w2) - 0.5 * tf.square(e) / w2


def initial_widths(ewald_offset, inverse_d2):
    """Starting ``(r, eta, tau)`` from the spread of the recorded Ewald offsets.

    Least squares of ``e^2`` on ``q^2`` (``e^2 ~ a + b q^2``) gives the
    starting ``W^2(q)``: ``r = tau = sqrt(a / 2)`` and ``eta = sqrt(b)``.
    ``a`` is kept at least 5 % of the mean ``e^2``; a slope that is not
    positive gives an ``eta`` that widens ``W`` by 5 % at the largest ``q``.

    Parameters
    ----------
    ewald_offset, inverse_d2 : numpy.ndarray
        Of every training observation (finite values only are used).

    Returns
    -------
    (float, float, float)

    Raises
    ------
    ValueError
        Without a finite non-zero offset.
    """
    e = np.asarray(ewald_offset, dtype=np.float64)
    q2 = np.asarray(inverse_d2, dtype=np.float64)
    keep = np.isfinite(e) & np.isfinite(q2)
    e, q2 = e[keep], q2[keep]
    mean_e2 = float(np.mean(np.square(e))) if len(e) else 0.0
    if not mean_e2 > 0:
        raise ValueError("the Ewald offsets are all zero (or missing): no partiality term can be fitted")
    var_q2 = float(np.var(q2))
    b = float(np.cov(q2, np.square(e), bias=True)[0, 1] / var_q2) if var_q2 > 0 else 0.0
    a = mean_e2 - b * float(np.mean(q2))
    a = max(a, 0.05 * mean_e2)
    if not b > 0:
        q2_max = float(np.max(q2)) if len(q2) and np.max(q2) > 0 else 1.0
        b = (1.05 ** 2 - 1.0) * a / q2_max
    return math.sqrt(a / 2.0), math.sqrt(b), math.sqrt(a / 2.0)


@keras.saving.register_keras_serializable(package=_PACKAGE)
class PartialityPrior(keras.layers.Layer):
    """``log P_i - c`` of each observation (:func:`log_partiality`), with learned widths.

    ``r``, ``eta`` and ``tau`` are positive through their logarithms (the
    trainable weights ``log_r``, ``log_eta``, ``log_tau``); ``c`` is a fixed
    constant.

    Parameters
    ----------
    r, eta, tau : float
        Starting widths (positive; :func:`initial_widths` from the data).
    offset : float
        ``c``: subtracted from ``log P`` (finite).
    per_image : bool
        The caller gives each observation a ``log_width`` ``delta`` (its
        image's): ``eta`` becomes ``eta exp(delta)`` (the model computes
        ``delta`` from the image vector); saved in the config.
    """

    def __init__(self, r=1e-3, eta=1e-3, tau=1e-3, offset=0.0, per_image=False, **kwargs):
        super().__init__(**kwargs)
        self.r0, self.eta0, self.tau0 = positive("r", r), positive("eta", eta), positive("tau", tau)
        offset = float(offset)
        if not math.isfinite(offset):
            raise ValueError(f"offset must be finite, got {offset}")
        self.offset = offset
        self.per_image = bool(per_image)
        self.log_r = self._log_weight("log_r", self.r0)
        self.log_eta = self._log_weight("log_eta", self.eta0)
        self.log_tau = self._log_weight("log_tau", self.tau0)
        self.built = True

    def _log_weight(self, name, value):
        return self.add_weight(name=name, shape=(), trainable=True,
                               initializer=keras.initializers.Constant(math.log(value)))

    @property
    def widths(self):
        """Current ``(r, eta, tau)`` as tensors."""
        return tf.exp(self.log_r), tf.exp(self.log_eta), tf.exp(self.log_tau)

    def call(self, ewald_offset, inverse_d2, log_width=None):
        """``log P_i - c``.

        Parameters
        ----------
        ewald_offset : tf.Tensor
            float32 ``[n]`` raw Ewald offsets (Å⁻¹, not standardized).
        inverse_d2 : tf.Tensor
            float32 ``[n]`` 1/d² of each observation's reflection.
        log_width : tf.Tensor, optional
            float32 ``[n]`` ``delta_i``: the mosaic spread is ``eta exp(delta_i)``.

        Returns
        -------
        tf.Tensor
            float32 ``[n]``.
        """
        r, eta, tau = self.widths
        if log_width is not None:
            eta = eta * tf.exp(log_width)
        return log_partiality(ewald_offset, inverse_d2, r, eta, tau) - self.offset

    def get_config(self):
        config = super().get_config()
        config.update(r=self.r0, eta=self.eta0, tau=self.tau0, offset=self.offset, per_image=self.per_image)
        return config
