"""The merging model of Laue data: a measured spot is the sum of its harmonics.

The rows of a Laue batch are the harmonics ``j`` of the recorded spots ``s``
(:mod:`careless_online.io.laue`).  Each harmonic has its own reflection
``h_j`` and its own scale ``Sigma_j`` from the scale network, which sees the
harmonic's metadata (its wavelength ``lambda_1 / n`` when the wavelength is
a metadata key, and its resolution), so the spectrum and the Lorentz factor
are learned.  The likelihood of a spot compares its one measurement with
the sum of the predictions of its harmonics:

.. math::

    k I_s \\sim \\mathcal{N}\\Big(\\sum_{j \\in s} \\Sigma_j F_{h_j}^2,\\; k \\sigma_s\\Big)

(or Student-t).  Everything else (posteriors, priors, KL terms, datasets)
is the monochromatic model's (:class:`~careless_online.model.merging.MergingModel`);
only the likelihood and the predictions go through a
:class:`~careless_online.layers.HarmonicSum`.  Per-row results (the
log-likelihood, the predictions) keep the rows' layout: a spot's
log-likelihood is shared evenly among its rows, its predicted mean and
variance (the harmonics' independent moments summed) are repeated on each.
"""

import keras
import tensorflow as tf

from careless_online.layers import HarmonicSum
from careless_online.model.merging import MergingModel


@keras.saving.register_keras_serializable(package="careless_online")
class LaueMergingModel(MergingModel):
    """A :class:`MergingModel` whose observations are sums over harmonics.

    Batches carry ``spot`` and ``n_spots`` (:class:`careless_online.io.spots.SpotSegments`).
    Takes :class:`MergingModel`'s parameters; the reindexing of images
    (``reindexing_ops`` with more than one setting) is not supported.
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if self.setting_choice is not None:
            raise ValueError("a Laue model does not choose indexing settings (reindexing_ops must be one setting)")
        self.harmonic_sum = HarmonicSum(name="harmonic_sum")

    def _spots(self, batch):
        return batch["spot"], batch["n_spots"]

    def log_likelihood(self, prediction, batch):
        """Each row's share of its spot's ``log p(I_s | sum_j Sigma_j F_j^2)``; ``[..., n]``."""
        spots = self._spots(batch)
        total = self.harmonic_sum(prediction, *spots)
        intensity = self.harmonic_sum.mean(batch["I"], *spots)
        sigma = self.harmonic_sum.mean(batch["SigI"], *spots)
        return self.harmonic_sum.share(self.measured_log_likelihood(total, intensity, sigma), *spots)

    def predict_intensities(self, batch, scale_parameters=None):
        """Predicted mean and std of each row's spot (in input units), repeated on the spot's rows.

        The harmonics' exact moments (:meth:`MergingModel.predict_intensities`)
        add: means, and variances of the independent posteriors.
        """
        mean, std = super().predict_intensities(batch, scale_parameters)
        spot, n_spots = self._spots(batch)
        total_mean = self.harmonic_sum(mean, spot, n_spots)
        total_var = self.harmonic_sum(tf.square(std), spot, n_spots)
        return self.harmonic_sum.spread(total_mean, spot), self.harmonic_sum.spread(tf.sqrt(total_var), spot)
