"""Fourier features of metadata columns (careless's ``--positional-encoding-keys``).

Each encoded column ``x`` is first mapped to ``p = 2 (x - low) / (high - low) - 1``
(``[-1, 1]`` over the data's range, ``low`` and ``high`` fixed when the model is
made and saved with it, so data arriving later are encoded alike) and then to
the ``2 L`` features ``cos(2^l pi p)``, ``sin(2^l pi p)``, ``l = 0 .. L-1``
(the NeRF positional encoding careless uses).  The networks see the columns
that are ordinary metadata as they are, followed by the encoded features.
"""

import keras
import numpy as np
import tensorflow as tf

from careless_online.checks import integer_at_least


def _columns(name, values, n_meta):
    values = [int(v) for v in values]
    if any(v < 0 or v >= n_meta for v in values):
        raise ValueError(f"{name} {values} outside the {n_meta} metadata columns")
    return values


@keras.saving.register_keras_serializable(package="careless_online")
class PositionalEncoding(keras.layers.Layer):
    """Replace metadata columns by their Fourier features (see the module docstring).

    Parameters
    ----------
    n_meta : int
        Metadata columns of the input.
    encoded : list of int
        Columns to encode.
    kept : list of int
        Columns passed through unchanged (first in the output, in this order).
    low, high : list of float
        Range of each encoded column (``high > low``; equal values are widened by one).
    frequencies : int
        ``L``: number of frequencies per column.
    """

    def __init__(self, n_meta, encoded, kept, low, high, frequencies=4, **kwargs):
        super().__init__(**kwargs)
        self.n_meta = integer_at_least("n_meta", n_meta, 1)
        self.encoded = _columns("encoded columns", encoded, self.n_meta)
        self.kept = _columns("kept columns", kept, self.n_meta)
        if not self.encoded:
            raise ValueError("a positional encoding needs at least one column to encode")
        self.frequencies = integer_at_least("frequencies", frequencies, 1)
        low, high = np.asarray(low, dtype=np.float64), np.asarray(high, dtype=np.float64)
        if low.shape != (len(self.encoded),) or high.shape != low.shape or not np.all(np.isfinite([low, high])):
            raise ValueError("low and high need one finite value per encoded column")
        self.low, self.high = low.tolist(), np.where(high > low, high, low + 1.0).tolist()
        self.built = True

    @property
    def n_features(self):
        """Width of the output: kept columns plus ``2 L`` per encoded column."""
        return len(self.kept) + 2 * self.frequencies * len(self.encoded)

    def call(self, meta):
        """``[n, n_meta]`` metadata -> ``[n, n_features]`` network inputs."""
        low = tf.constant(self.low, tf.float32)
        span = tf.constant(self.high, tf.float32) - low
        p = 2.0 * (tf.gather(meta, self.encoded, axis=1) - low) / span - 1.0
        angles = p[:, :, None] * tf.constant(np.pi * 2.0 ** np.arange(self.frequencies), tf.float32)
        angles = tf.reshape(angles, [-1, len(self.encoded) * self.frequencies])
        return tf.concat([tf.gather(meta, self.kept, axis=1), tf.cos(angles), tf.sin(angles)], axis=1)

    def get_config(self):
        config = super().get_config()
        config.update(n_meta=self.n_meta, encoded=self.encoded, kept=self.kept, low=self.low, high=self.high,
                      frequencies=self.frequencies)
        return config
