"""Observations that are impossible given the rest of their image.

One overflowed pixel (``I = 4294967295`` with an ordinary sigma), a value
pasted in by hand or a unit mix-up gives an intensity no still or rotation
image can produce next to its other reflections.  Left in, its standardized
residual is millions of sigmas: one observation drives the scale network and
the optimizer's moment estimates, and the whole merge is lost.

The rule is robust and per image, so it is blind to the data's units and to
how bright the crystal is.  For each image (``m``: median, ``s``: the normal
consistent MAD, ``1.4826 * median |x - m|``), an observation is dropped when

* its signal-to-noise ``r = I / SigI`` lies more than :data:`SNR_SPREADS`
  spreads from the image's median ``r``, the spread being
  ``max(s(r), 1)``; or
* (images of at least :data:`MIN_IMAGE_OBSERVATIONS` observations) its
  intensity lies more than :data:`INTENSITY_SPREADS` spreads from the image's
  median intensity, the spread being ``max(s(I), median SigI)``.

On the shipped example and every real file of the test data (streams, MTZ
files, DIALS stills) the largest distances are 34 spreads (``r``) and 507
spreads (``I``): the bounds leave a factor of about 30 and 20 (measured with
:func:`distances`; docs/reliability.md).
"""

import numpy as np
import pandas as pd

#: Spreads of the image's ``I/SigI`` beyond which an observation is impossible.
SNR_SPREADS = 1000.0
#: Spreads of the image's intensities beyond which an observation is impossible.
INTENSITY_SPREADS = 1.0e4
#: Fewest observations of an image for the intensity rule (the median and MAD need a few).
MIN_IMAGE_OBSERVATIONS = 20
#: Normal-consistent factor of the median absolute deviation.
MAD_FACTOR = 1.4826
#: Reason under which the load report counts what :func:`implausible` drops.
REASON = "impossible for its image: I or I/SigI far beyond the image's, docs/reliability.md"


def _robust_distance(values, image, floor):
    """``|x - median| / max(MAD spread, floor)`` of each value within its image."""
    frame = pd.DataFrame({"x": values, "image": image})
    by_image = frame.groupby("image")["x"]
    median = by_image.transform("median").to_numpy()
    deviation = np.abs(values - median)
    mad = pd.Series(deviation).groupby(image).transform("median").to_numpy()
    return deviation / np.maximum(MAD_FACTOR * mad, floor)


def distances(intensity, sigma, image):
    """Each observation's robust distance from its image, for ``I/SigI`` and for ``I``.

    Parameters
    ----------
    intensity, sigma : numpy.ndarray
        Finite intensities and positive sigmas.
    image : numpy.ndarray
        Image number of each observation.

    Returns
    -------
    (numpy.ndarray, numpy.ndarray)
        Distances in spreads of ``I/SigI`` and of ``I`` (see the module docstring);
        the intensity distance is 0 in images with fewer than
        :data:`MIN_IMAGE_OBSERVATIONS` observations.
    """
    intensity = np.asarray(intensity, dtype=np.float64)
    sigma = np.asarray(sigma, dtype=np.float64)
    image = np.asarray(image)
    if len(intensity) == 0:
        return np.zeros(0), np.zeros(0)
    snr = _robust_distance(intensity / sigma, image, 1.0)
    typical_sigma = pd.Series(sigma).groupby(image).transform("median").to_numpy()
    size = pd.Series(sigma).groupby(image).transform("size").to_numpy()
    scale = _robust_distance(intensity, image, typical_sigma)
    return snr, np.where(size >= MIN_IMAGE_OBSERVATIONS, scale, 0.0)


def implausible(intensity, sigma, image):
    """Which observations are impossible given their image (see the module docstring).

    Parameters
    ----------
    intensity, sigma, image : numpy.ndarray
        As for :func:`distances`.

    Returns
    -------
    numpy.ndarray of bool
    """
    snr, scale = distances(intensity, sigma, image)
    return (snr > SNR_SPREADS) | (scale > INTENSITY_SPREADS)
