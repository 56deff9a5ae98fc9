"""Likelihood of the measured intensities given predicted ones.

With ``k`` the learned positive intensity scale, the scaled intensity ``k I_i``
is Normal (or Student-t) around the prediction ``Sigma_i F_h^2`` with width
``k SigI_i``:

.. math::

    \\log p(I_i) = \\log \\mathcal{N}(k I_i \\mid \\Sigma_i F_h^2, k\\,\\sigma_i) + \\log k .

``log k`` is the Jacobian of ``I -> k I``: it makes the density one of the
measured ``I``.  Without it every observation would gain ``-log k`` as ``k``
shrinks, and a fit would slide ``k`` (and the scales with it) towards zero
instead of explaining the data.
"""

import tensorflow as tf
import tensorflow_probability as tfp

tfd = tfp.distributions


def check_dof(dof):
    """``dof`` as a float (None stays None: a Normal likelihood); ValueError unless positive."""
    if dof is None:
        return None
    dof = float(dof)
    if not dof > 0:
        raise ValueError(f"studentt_dof (Student-t degrees of freedom) must be positive, got {dof}")
    return dof


def scaled_intensity_distribution(prediction, width, dof=None):
    """Distribution of ``k I`` around ``prediction`` with scale ``width``.

    Parameters
    ----------
    prediction : tf.Tensor
        ``Sigma F^2`` (any shape broadcasting with ``width``).
    width : tf.Tensor
        ``k SigI`` (possibly refined by an error model).
    dof : float, optional
        Student-t degrees of freedom (None: Normal).

    Returns
    -------
    tfd.Normal or tfd.StudentT
    """
    if dof is None:
        return tfd.Normal(prediction, width)
    return tfd.StudentT(dof, prediction, width)


def intensity_log_likelihood(prediction, intensity, width, k, dof=None):
    """``log p(I | Sigma, F)`` of each observation, a density of the measured ``I``.

    Parameters
    ----------
    prediction : tf.Tensor
        ``[..., n]`` samples of ``Sigma F^2``.
    intensity : tf.Tensor
        ``[n]`` measured intensities ``I``.
    width : tf.Tensor
        ``[n]`` scale of ``k I`` (``k SigI``).
    k : tf.Tensor
        Scalar positive intensity scale.
    dof : float, optional
        Student-t degrees of freedom (None: Normal).

    Returns
    -------
    tf.Tensor
        ``[..., n]`` log densities.
    """
    distribution = scaled_intensity_distribution(prediction, width, dof)
    return distribution.log_prob(k * intensity) + tf.math.log(k)
