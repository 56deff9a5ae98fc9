"""Sums over the harmonics of Laue spots, and back from spots to their rows."""

import keras
import tensorflow as tf

_PACKAGE = "careless_online"


@keras.saving.register_keras_serializable(package=_PACKAGE)
class HarmonicSum(keras.layers.Layer):
    """Add up per-harmonic values of each spot; hand spot values back to the rows.

    A batch of Laue data holds one row per harmonic ``j`` of each spot ``s``
    (``spot[j] = s``, :class:`careless_online.io.spots.SpotSegments`).  The
    layer computes

    .. math::

        T_s = \\sum_{j : spot(j) = s} x_j ,

    e.g. the predicted spot intensity ``sum_j Sigma_j F_{h_j}^2`` of the
    harmonics recorded together, over the last axis (leading axes, such as
    Monte Carlo samples, are kept).  :meth:`mean` gives a spot's value that
    its rows repeat (its measured ``I``), :meth:`share` spreads a spot's value
    evenly over its rows, so that per-row sums are per-spot sums.  No weights.
    """

    def call(self, values, spot, n_spots):
        """``T_s``: sums over the rows of each spot.

        Parameters
        ----------
        values : tf.Tensor
            ``[..., n]`` per-row values.
        spot : tf.Tensor
            int32 ``[n]`` spot of each row, in ``[0, n_spots)``.
        n_spots : tf.Tensor
            int32 scalar.

        Returns
        -------
        tf.Tensor
            ``[..., n_spots]``.
        """
        moved = tf.experimental.numpy.moveaxis(values, -1, 0)
        total = tf.math.unsorted_segment_sum(moved, spot, n_spots)
        return tf.experimental.numpy.moveaxis(total, 0, -1)

    def counts(self, spot, n_spots):
        """Rows (harmonics) of each spot, float32 ``[n_spots]``."""
        return tf.math.unsorted_segment_sum(tf.ones_like(spot, tf.float32), spot, n_spots)

    def mean(self, values, spot, n_spots):
        """The mean over the rows of each spot of ``[n]`` values (a spot's own value, which its rows repeat)."""
        return self(values, spot, n_spots) / tf.maximum(self.counts(spot, n_spots), 1.0)

    def share(self, spot_values, spot, n_spots):
        """``[..., n]``: each row's equal share ``v_s / |s|`` of its spot's value, so that row sums are spot sums."""
        per_row = spot_values / tf.maximum(self.counts(spot, n_spots), 1.0)
        return tf.gather(per_row, spot, axis=-1)

    def spread(self, spot_values, spot):
        """``[..., n]``: each row's copy of its spot's value."""
        return tf.gather(spot_values, spot, axis=-1)
