r"""Half-dataset merges for the live report's CC1/2 and CCanom.

Training two half models beside the main one would double the cost of a live
merge.  The report instead splits the *observations* into two halves by image
(even and odd image ids), puts each observation on the scale of the merged
:math:`F^2` with the main model's own prediction, and averages each half:

.. math::

    \hat I_{h} = I_{h}\,\frac{\langle F_h^2\rangle}{I^{pred}_{h}}, \qquad
    \sigma_{\hat I_h} = \sigma_{I_h}\,\frac{\langle F_h^2\rangle}{I^{pred}_{h}}, \qquad
    \bar I^{(k)} = \frac{\sum_{h \in k} \hat I_h / \sigma_{\hat I_h}^2}{\sum_{h \in k} 1 / \sigma_{\hat I_h}^2},

where :math:`\langle F^2\rangle = \mu^2 + s^2` is the posterior's second
moment of the reflection and :math:`I^{pred}` the model's predicted intensity
of the observation (which carries the image's scale, resolution fall-off and
partiality).  CC1/2 and CCanom are then Pearson correlations between the two
halves, as for half-dataset merges.  The scales come from a model that saw
both halves, so the halves are not fully independent: expect these values to
be a little higher than those of two separately trained half models.

The pass over the observations costs time proportional to them; the live
report makes it only when it redraws (see :mod:`careless_online.report.live`).
"""

import numpy as np


class HalfMerge:
    """Running weighted sums of model-scaled observations, per half and reflection.

    Parameters
    ----------
    f_mean, f_std : array of float, shape (n_reflections,)
        Posterior mean and standard deviation of every index entry.
    """

    def __init__(self, f_mean, f_std):
        f_mean, f_std = np.asarray(f_mean, dtype=float), np.asarray(f_std, dtype=float)
        self.second_moment = f_mean**2 + f_std**2
        self.n = len(f_mean)
        self.weight = np.zeros(2 * self.n)
        self.weighted = np.zeros(2 * self.n)

    def add(self, refl_id, image_id, intensity, sigma, predicted):
        """Add a batch of observations (arrays of equal length)."""
        refl_id = np.asarray(refl_id, dtype=np.int64)
        factor = self.second_moment[refl_id] / np.asarray(predicted, dtype=float)
        value = np.asarray(intensity, dtype=float) * factor
        weight = 1.0 / np.square(np.asarray(sigma, dtype=float) * factor)
        good = np.isfinite(value) & np.isfinite(weight) & (factor > 0)
        slot = (np.asarray(image_id, dtype=np.int64) % 2) * self.n + refl_id
        self.weight += np.bincount(slot[good], weight[good], minlength=2 * self.n)
        self.weighted += np.bincount(slot[good], (weight * value)[good], minlength=2 * self.n)

    def means(self):
        """Half means, shape (2, n_reflections); NaN where a half has no observation."""
        with np.errstate(invalid="ignore", divide="ignore"):
            means = self.weighted / self.weight
        means[self.weight == 0] = np.nan
        return means.reshape(2, self.n)


def merge_halves(batches, f_mean, f_std):
    """Half means from batches of observations with the model's predictions.

    Parameters
    ----------
    batches : iterable of dict
        Each with arrays ``refl_id``, ``image_id``, ``I``, ``SigI`` and ``Ipred``.
    f_mean, f_std : array of float

    Returns
    -------
    numpy.ndarray, shape (2, n_reflections)
    """
    merge = HalfMerge(f_mean, f_std)
    for batch in batches:
        merge.add(batch["refl_id"], batch["image_id"], batch["I"], batch["SigI"], batch["Ipred"])
    return merge.means()
