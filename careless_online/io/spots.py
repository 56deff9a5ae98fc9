"""Batch entries that say which rows of a batch are the harmonics of one Laue spot.

A Laue cache holds one row per harmonic (:mod:`careless_online.io.laue`),
the rows of a spot consecutive, each with its image id and its ``spot``
number in the image.  :class:`SpotSegments` adds to every batch

===========  ===============================================================
``spot``     int32 ``[n]``: the row's spot among the batch's spots (0 .. n_spots-1)
``n_spots``  int32 scalar: spots in the batch
===========  ===============================================================

so that the model can sum the predicted intensities of a spot's harmonics
(:class:`careless_online.layers.HarmonicSum`).
"""

import numpy as np
import tensorflow as tf


class SpotSegments:
    """The ``spot`` and ``n_spots`` entries of the batches of a Laue cache."""

    #: Cache columns the entries are made from.
    columns = ("image_id", "spot")

    @staticmethod
    def signature():
        """``tf.TensorSpec`` of each entry."""
        return {"spot": tf.TensorSpec([None], tf.int32), "n_spots": tf.TensorSpec([], tf.int32)}

    @staticmethod
    def entries(part):
        """The entries of one batch from its rows (whole images, spots consecutive).

        A new spot starts where the image id or the spot number changes.
        """
        image, spot = part["image_id"], part["spot"]
        starts = np.r_[True, (image[1:] != image[:-1]) | (spot[1:] != spot[:-1])] if len(image) else np.zeros(0, bool)
        segments = np.cumsum(starts, dtype=np.int64) - 1
        return {"spot": segments.astype(np.int32), "n_spots": np.int32(starts.sum())}


def batch_extras(manifest):
    """The extra batch entries a cache's rows call for.

    Spot segments for a Laue cache; the raw Ewald offsets
    (:class:`careless_online.io.ewald.EwaldOffsets`) when the cache has the column.
    """
    from careless_online.io.ewald import COLUMN, EwaldOffsets

    extras = [SpotSegments()] if "spot" in manifest.columns else []
    if COLUMN in manifest.columns:
        extras.append(EwaldOffsets())
    return extras
