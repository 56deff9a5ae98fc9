"""Tests of the residual MLP, image encoder and scale head layers."""

import keras
import numpy as np
import pytest
import tensorflow as tf
from scipy import stats

from careless_online.distributions import StructureFactorPosterior
from careless_online.distributions.scales import scale_distribution, scale_kl
from careless_online.layers import (
    FeedForward,
    ImageEncoder,
    ResNet,
    ScaleHead,
    resnet_initializer,
    segment_softmax,
)

# Standard deviation of a unit normal truncated at +-2.
TRUNC_STD = stats.truncnorm(-2, 2).std()


def relu(x):
    return np.maximum(x, 0.0)


def dense(layer, x):
    kernel, bias = (w.numpy() for w in layer.weights)
    return x @ kernel + bias


def resnet_reference(net, x):
    """Numpy forward pass of a relu ResNet from its weights."""
    h = dense(net.input_dense, x)
    for block in net.blocks:
        h = h + dense(block.w2, relu(dense(block.w1, relu(h))))
    return dense(net.output_dense, relu(h))


def batch(rng, sizes, n_features=5, n_meta=3):
    """Random observations of images with ``sizes[i]`` observations, shuffled."""
    image_index = np.repeat(np.arange(len(sizes)), sizes).astype(np.int32)
    order = rng.permutation(image_index.size)
    n = image_index.size
    features = rng.normal(size=(n, n_features)).astype(np.float32)
    meta = rng.normal(size=(n, n_meta)).astype(np.float32)
    return features[order], image_index[order], meta[order]


def test_resnet_initializer_stddev():
    d_in, d_out, n_blocks = 300, 500, 3
    s = np.sqrt(2.0 / (5 * n_blocks * (d_in + d_out)))
    kernel = resnet_initializer(d_in, d_out, n_blocks)(shape=(d_in, d_out)).numpy()
    assert kernel.std() == pytest.approx(TRUNC_STD * s, rel=0.01)
    assert abs(kernel.mean()) < 0.01 * s
    assert np.abs(kernel).max() <= 2 * s * (1 + 1e-6)
    net = ResNet(64, n_blocks=n_blocks, d_out=4, d_in=200)
    s_in = np.sqrt(2.0 / (5 * n_blocks * (200 + 64)))
    assert net.input_dense.kernel.numpy().std() == pytest.approx(TRUNC_STD * s_in, rel=0.05)
    assert not np.any(net.blocks[0].w1.bias.numpy())


@pytest.mark.parametrize("activation", ["relu", "swish"])
def test_feedforward_formula(activation):
    act = relu if activation == "relu" else (lambda x: x / (1 + np.exp(-x)))
    block = FeedForward(6, 10, activation=activation, n_blocks=2)
    for w in block.weights:  # non-zero biases, so they are tested too
        w.assign(w + 0.1)
    x = np.random.default_rng(1).normal(size=(7, 6)).astype(np.float32)
    want = x + dense(block.w2, act(dense(block.w1, act(x))))
    np.testing.assert_allclose(block(x).numpy(), want, rtol=1e-5, atol=1e-6)


def test_resnet_matches_reference():
    net = ResNet(8, 12, n_blocks=2, d_out=3)
    x = np.random.default_rng(2).normal(size=(9, 4)).astype(np.float32)
    out = net(x).numpy()
    assert out.shape == (9, 3)
    np.testing.assert_allclose(out, resnet_reference(net, x), rtol=1e-5, atol=1e-6)
    assert ResNet(8, n_blocks=1)(x).shape == (9, 8)


def test_segment_softmax_stable_and_matches_numpy():
    logits = np.array([1000.0, 998.0, -5.0, 3.0, 1e4, 1e4 - 1.0], np.float32)
    ids = np.array([0, 0, 1, 1, 2, 2], np.int32)[[4, 0, 2, 5, 1, 3]]
    logits = logits[[4, 0, 2, 5, 1, 3]]
    got = segment_softmax(logits, ids, 3).numpy()
    want = np.empty_like(logits)
    for k in range(3):
        z = logits[ids == k].astype(np.float64)
        want[ids == k] = np.exp(z - z.max()) / np.exp(z - z.max()).sum()
    assert np.isfinite(got).all()
    np.testing.assert_allclose(got, want, rtol=1e-5)


def test_encoder_matches_numpy_pooling():
    rng = np.random.default_rng(3)
    features, image_index, _ = batch(rng, [4, 1, 6])
    enc = ImageEncoder(5, n_blocks=2)
    vectors = enc(features, image_index, tf.constant(3)).numpy()
    assert vectors.shape == (3, 5)
    out = resnet_reference(enc.resnet, features)
    want = np.zeros((3, 5))
    for k in range(3):
        v, a = out[image_index == k, :5], out[image_index == k, 5]
        p = np.exp(a - a.max()) / np.exp(a - a.max()).sum()
        want[k] = p @ v
    np.testing.assert_allclose(vectors, want, rtol=1e-4, atol=1e-6)


def test_encoder_images_do_not_leak():
    rng = np.random.default_rng(4)
    features, image_index, _ = batch(rng, [5, 8])
    enc = ImageEncoder(6, n_blocks=1, activation="gelu", n_features=5)
    both = enc(features, image_index, tf.constant(2)).numpy()
    for k in range(2):
        alone = enc(features[image_index == k], np.zeros((image_index == k).sum(), np.int32), tf.constant(1))
        np.testing.assert_allclose(both[k], alone.numpy()[0], rtol=1e-5, atol=1e-6)


def test_no_retracing_with_dynamic_shapes():
    enc = ImageEncoder(4, n_blocks=1, n_features=5)
    head = ScaleHead(4, n_blocks=1, d_image=4, n_meta=3)
    traces = []

    @tf.function(
        input_signature=[
            tf.TensorSpec([None, 5], tf.float32),
            tf.TensorSpec([None], tf.int32),
            tf.TensorSpec([], tf.int32),
            tf.TensorSpec([None, 3], tf.float32),
        ]
    )
    def forward(features, image_index, n_images, meta):
        traces.append(1)
        loc, scale = head(enc(features, image_index, n_images), image_index, meta)
        return loc, scale

    rng = np.random.default_rng(5)
    for sizes in ([3, 2], [1, 7, 4, 2], [9]):
        features, image_index, meta = batch(rng, sizes)
        loc, scale = forward(features, image_index, tf.constant(len(sizes)), meta)
        assert loc.shape == scale.shape == (sum(sizes),)
    assert len(traces) == 1


def test_scale_head_start_and_positivity():
    rng = np.random.default_rng(6)
    features, image_index, meta = batch(rng, [3, 4])
    vectors = rng.normal(size=(2, 7)).astype(np.float32)
    head = ScaleHead(8, n_blocks=2, min_scale=1e-3, initial_scale=0.2)
    loc, scale = head(vectors, image_index, meta)
    np.testing.assert_allclose(loc.numpy(), 0.0, atol=1e-7)
    np.testing.assert_allclose(scale.numpy(), 0.2, rtol=1e-5)
    for w in head.weights:
        w.assign(w - 3.0 + rng.normal(size=w.shape).astype(np.float32))
    loc, scale = head(vectors, image_index, meta)
    assert (scale.numpy() >= 1e-3).all() and np.isfinite(loc.numpy()).all()
    assert np.ptp(loc.numpy()) > 0  # outputs now depend on the inputs


def test_scale_kl_matches_closed_form():
    m = np.array([0.0, 0.5, -1.0, 2.0], np.float32)
    s = np.array([1.0, 0.1, 2.0, 0.5], np.float32)
    want = np.log(1.0 / s) + (s**2 + m**2) / 2.0 - 0.5
    np.testing.assert_allclose(scale_kl(m, s).numpy(), want, rtol=1e-5, atol=1e-6)
    assert float(scale_kl(m, s)[0]) == pytest.approx(0.0, abs=1e-7)
    dist = scale_distribution(m, s)
    np.testing.assert_allclose(dist.mean().numpy(), np.exp(m + s**2 / 2), rtol=1e-5)


@keras.saving.register_keras_serializable(package="careless_online_tests")
class TinyModel(keras.Model):
    """Small model holding one of each layer, for save/load tests."""

    def __init__(self, n_reflections, n_features, n_meta, **kwargs):
        super().__init__(**kwargs)
        self.n_reflections, self.n_features, self.n_meta = n_reflections, n_features, n_meta
        self.encoder = ImageEncoder(6, n_blocks=2, activation="gelu", n_features=n_features)
        self.head = ScaleHead(5, n_blocks=1, d_image=6, n_meta=n_meta)
        self.stack = ResNet(4, n_blocks=1, d_out=2, d_in=n_features)
        self.posterior = StructureFactorPosterior(
            n_reflections,
            centric=np.arange(n_reflections) % 2,
            epsilon=1.0 + np.arange(n_reflections) % 3,
            sigma=2.0,
        )

    def call(self, features, image_index, n_images, meta, ids):
        loc, scale = self.head(self.encoder(features, image_index, n_images), image_index, meta)
        q = self.posterior.distribution(ids)
        prior = self.posterior.prior(ids)
        return loc, scale, self.stack(features), q.mean(), q.stddev(), prior.mean()

    def build_from_config(self, config):
        """Nothing to do: every layer creates its weights at construction."""

    def get_config(self):
        return dict(
            super().get_config(),
            n_reflections=self.n_reflections,
            n_features=self.n_features,
            n_meta=self.n_meta,
        )


def test_keras_save_load_round_trip(tmp_path):
    rng = np.random.default_rng(7)
    features, image_index, meta = batch(rng, [4, 2, 5])
    args = (features, image_index, tf.constant(3), meta, tf.constant([0, 6, 3], tf.int32))
    model = TinyModel(7, 5, 3)
    for w in model.trainable_weights:  # move every weight off its initial value
        w.assign(w + 0.1 * rng.normal(size=w.shape).astype(np.float32))
    before = model(*args)
    path = tmp_path / "tiny.keras"
    model.save(path)
    loaded = keras.saving.load_model(path)
    after = loaded(*args)
    for x, y in zip(before, after):
        np.testing.assert_array_equal(x.numpy(), y.numpy())
    np.testing.assert_array_equal(loaded.posterior.epsilon.numpy(), model.posterior.epsilon.numpy())


@pytest.mark.parametrize(
    "make",
    [
        lambda: ResNet(4, n_blocks=2, d_out=3, activation="swish"),
        lambda: FeedForward(5, activation="gelu", n_blocks=3),
    ],
)
def test_lazily_built_layer_serializes(make):
    layer = make()
    x = np.random.default_rng(8).normal(size=(6, 5)).astype(np.float32)
    y = layer(x)
    clone = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(layer))
    assert clone.built  # the input width went into the config
    clone.set_weights(layer.get_weights())
    np.testing.assert_array_equal(clone(x).numpy(), y.numpy())


@pytest.mark.parametrize("make, message", [
    (lambda: ResNet(0), "d_model"),
    (lambda: ResNet(4, n_blocks=-1), "n_blocks"),
    (lambda: ResNet(4, d_out=0), "d_out"),
    (lambda: ResNet(4, d_in=0), "input width"),
    (lambda: FeedForward(4, n_blocks=0), "n_blocks"),
    (lambda: ImageEncoder(4, d_ff=0), "d_ff"),
    (lambda: ImageEncoder(2.5), "d_model"),
    (lambda: ScaleHead(4, min_scale=0.0), "min_scale"),
    (lambda: ScaleHead(4, n_blocks=-3), "n_blocks"),
    (lambda: ScaleHead(4, activation="no-such-activation"), "activation"),
])
def test_layers_validate_their_parameters(make, message):
    with pytest.raises(ValueError, match=message):
        make()
