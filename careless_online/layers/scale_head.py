"""Per-observation scale posterior parameters from image vectors and metadata.

The distribution itself and its KL are in :mod:`careless_online.distributions.scales`.
"""

import keras
import numpy as np
import tensorflow as tf
import tensorflow_probability as tfp

from careless_online.checks import integer_at_least
from careless_online.layers.resnet import ResNet, widths

_PACKAGE = "careless_online"


@keras.saving.register_keras_serializable(package=_PACKAGE)
class ScaleHead(keras.layers.Layer):
    """Map image vectors and observation metadata to a LogNormal scale posterior.

    Each observation's image vector is concatenated with its metadata and sent
    through a :class:`~careless_online.layers.resnet.ResNet` with two outputs:
    ``loc = out[:, 0]`` and ``scale = softplus(out[:, 1] + offset) +
    min_scale``. The output kernel starts at zero and the output bias at
    zero, so at the start every observation has ``loc = 0`` (the prior's
    median) and ``scale = initial_scale`` whatever its inputs; ``offset`` is
    the constant that makes this so.

    Parameters
    ----------
    d_model : int
        Width of the residual stream.
    d_ff : int, optional
        Hidden width of the residual blocks; defaults to ``2 * d_model``.
    n_blocks : int
        Number of residual blocks.
    activation : str
        Any keras activation name.
    min_scale : float
        Lower bound of the LogNormal scale.
    initial_scale : float
        LogNormal scale of every observation before training; must exceed
        ``min_scale``. A narrow start (0.1 by default, against the prior's 1)
        keeps the first Monte Carlo gradients from being swamped by factors
        of ``exp(+-2)``.
    d_image, n_meta : int, optional
        Widths of the image vectors and of the metadata. When both are given,
        all weights are created at construction (so a model holding the layer
        can load weights before any call); otherwise on the first call.
    """

    def __init__(
        self,
        d_model,
        d_ff=None,
        n_blocks=2,
        activation="relu",
        min_scale=1e-3,
        initial_scale=0.1,
        d_image=None,
        n_meta=None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if not initial_scale > min_scale > 0:
            raise ValueError(
                f"need initial_scale > min_scale > 0, got {initial_scale} and {min_scale}"
            )
        self.d_model, self.d_ff, self.n_blocks = widths(d_model, d_ff, n_blocks)
        self.activation = activation
        self.min_scale = float(min_scale)
        self.initial_scale = float(initial_scale)
        # softplus(offset) = initial_scale - min_scale
        gap = self.initial_scale - self.min_scale
        self._offset = float(tfp.math.softplus_inverse(np.float64(gap)))
        self.resnet = ResNet(
            self.d_model,
            self.d_ff,
            n_blocks=self.n_blocks,
            activation=activation,
            d_out=2,
            output_kernel_initializer="zeros",
            name="resnet",
        )
        self.d_image = self.n_meta = None
        if d_image is not None and n_meta is not None:
            self.build((None, d_image), None, (None, n_meta))

    def build(self, image_vectors_shape, image_index_shape=None, meta_shape=None):
        self.d_image = integer_at_least("d_image", image_vectors_shape[-1], 1)
        self.n_meta = integer_at_least("n_meta", meta_shape[-1], 0)
        self.resnet.build((None, self.d_image + self.n_meta))
        self.built = True

    def call(self, image_vectors, image_index, meta):
        """Scale posterior parameters of each observation.

        Parameters
        ----------
        image_vectors : tf.Tensor
            float32 ``[n_images, d]`` image vectors.
        image_index : tf.Tensor
            int32 ``[n]`` image of each observation.
        meta : tf.Tensor
            float32 ``[n, m]`` standardized metadata.

        Returns
        -------
        loc, scale : tf.Tensor
            float32 ``[n]`` each; parameters of ``LogNormal(loc, scale)``.
        """
        x = tf.concat([tf.gather(image_vectors, image_index), meta], axis=-1)
        out = self.resnet(x)
        loc = out[:, 0]
        scale = tf.nn.softplus(out[:, 1] + self._offset) + self.min_scale
        return loc, scale

    def get_config(self):
        config = super().get_config()
        config.update(
            d_model=self.d_model,
            d_ff=self.d_ff,
            n_blocks=self.n_blocks,
            activation=self.activation,
            min_scale=self.min_scale,
            initial_scale=self.initial_scale,
            d_image=self.d_image,
            n_meta=self.n_meta,
        )
        return config
