"""Permutation-invariant encoder of the observations of each image."""

import keras
import tensorflow as tf

from careless_online.layers.resnet import ResNet, widths

_PACKAGE = "careless_online"


def segment_softmax(logits, segment_ids, num_segments):
    """Softmax of ``logits`` over the elements sharing a segment id.

    Parameters
    ----------
    logits : tf.Tensor
        Float tensor ``[n]``.
    segment_ids : tf.Tensor
        Int tensor ``[n]`` with values in ``[0, num_segments)``; need not be
        sorted.
    num_segments : int or tf.Tensor
        Number of segments.

    Returns
    -------
    tf.Tensor
        ``[n]`` weights, positive, summing to one within each segment. The
        per-segment maximum is subtracted first, so large logits are safe.
    """
    seg_max = tf.math.unsorted_segment_max(logits, segment_ids, num_segments)
    shifted = logits - tf.stop_gradient(tf.gather(seg_max, segment_ids))
    unnormalized = tf.exp(shifted)
    total = tf.math.unsorted_segment_sum(unnormalized, segment_ids, num_segments)
    return unnormalized / tf.gather(total, segment_ids)


@keras.saving.register_keras_serializable(package=_PACKAGE)
class ImageEncoder(keras.layers.Layer):
    """Pool the observations of each image into one image vector.

    A :class:`~careless_online.layers.resnet.ResNet` maps the features of
    each observation to a candidate vector ``v_i`` (``d_model``) and a logit
    ``a_i``; the image vector is ``sum_i p_i v_i`` where ``p`` is the softmax
    of ``a`` over the observations of that image only. An image's vector does
    not depend on the other images of the batch, nor on the order of its
    observations.

    Parameters
    ----------
    d_model : int
        Width of the image vectors and of the residual stream.
    d_ff : int, optional
        Hidden width of the residual blocks; defaults to ``2 * d_model``.
    n_blocks : int
        Number of residual blocks.
    activation : str
        Any keras activation name.
    n_features : int, optional
        Width of the features. When given, all weights are created at
        construction (so a model holding the layer can load weights before
        any call); otherwise on the first call.
    """

    def __init__(
        self, d_model, d_ff=None, n_blocks=2, activation="relu", n_features=None, **kwargs
    ):
        super().__init__(**kwargs)
        self.d_model, self.d_ff, self.n_blocks = widths(d_model, d_ff, n_blocks)
        self.activation = activation
        self.resnet = ResNet(
            self.d_model,
            self.d_ff,
            n_blocks=self.n_blocks,
            activation=activation,
            d_out=self.d_model + 1,
            d_in=n_features,
            name="resnet",
        )
        self.built = self.resnet.built

    def build(self, features_shape, image_index_shape=None, n_images_shape=None):
        self.resnet.build(features_shape)
        self.built = True

    def call(self, features, image_index, n_images):
        """Encode the images of a batch.

        Parameters
        ----------
        features : tf.Tensor
            float32 ``[n, f]`` per-observation features.
        image_index : tf.Tensor
            int32 ``[n]`` image of each observation, in ``[0, n_images)``.
        n_images : tf.Tensor
            int32 scalar, number of images in the batch.

        Returns
        -------
        tf.Tensor
            float32 ``[n_images, d_model]`` image vectors (zeros for an image
            without observations).
        """
        out = self.resnet(features)
        vectors, logits = out[:, : self.d_model], out[:, self.d_model]
        weights = segment_softmax(logits, image_index, n_images)
        return tf.math.unsorted_segment_sum(
            weights[:, None] * vectors, image_index, n_images
        )

    def get_config(self):
        config = super().get_config()
        config.update(
            d_model=self.d_model,
            d_ff=self.d_ff,
            n_blocks=self.n_blocks,
            activation=self.activation,
            n_features=self.resnet.d_in,
        )
        return config
