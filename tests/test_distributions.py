"""Tests of the Wilson prior and the structure factor surrogate posterior."""

import keras
import numpy as np
import pytest
import tensorflow as tf
import tensorflow_probability as tfp
from scipy import integrate, stats

from careless_online.distributions import StructureFactorPosterior, WilsonPrior
from careless_online.distributions.structure_factors import MIN_STANDARDIZED_LOC

CENTRIC = np.array([False, True, False, True])
EPSILON = np.array([1.0, 1.0, 2.0, 4.0])
SIGMA = 1.7


def wilson_density(F, centric, eps, sigma):
    """Textbook Wilson densities, written out independently of tfp."""
    s2 = eps * sigma
    if centric:
        return np.sqrt(2.0 / (np.pi * s2)) * np.exp(-(F**2) / (2.0 * s2))
    return 2.0 * F / s2 * np.exp(-(F**2) / s2)


def test_wilson_log_prob_matches_formula():
    prior = WilsonPrior(CENTRIC, EPSILON, SIGMA)
    F = np.linspace(0.01, 6.0, 50)[:, None] * np.ones(4)
    got = prior.prob(F.astype(np.float32)).numpy()
    for j in range(4):
        want = wilson_density(F[:, j], CENTRIC[j], EPSILON[j], SIGMA)
        np.testing.assert_allclose(got[:, j], want, rtol=1e-4)


def test_wilson_normalized_and_moments():
    prior = WilsonPrior(CENTRIC, EPSILON, SIGMA)
    scale = np.sqrt(EPSILON * SIGMA)
    F = np.linspace(0.0, 12.0, 100001)[:, None] * scale  # [grid, 4]
    density = prior.prob(F.astype(np.float32)).numpy().astype(np.float64)
    norm, first, second = (integrate.trapezoid(F**k * density, F, axis=0) for k in range(3))
    np.testing.assert_allclose(norm, 1.0, rtol=1e-4)
    np.testing.assert_allclose(second, EPSILON * SIGMA, rtol=1e-4)
    np.testing.assert_allclose(prior.mean().numpy(), first, rtol=1e-4)
    np.testing.assert_allclose(prior.stddev().numpy(), np.sqrt(second - first**2), rtol=1e-4)


def test_wilson_sample_moments():
    prior = WilsonPrior(CENTRIC, EPSILON, SIGMA)
    F = prior.sample(40000, seed=(1, 2)).numpy()
    assert F.shape == (40000, 4)
    assert F.min() >= 0.0
    np.testing.assert_allclose((F**2).mean(0), EPSILON * SIGMA, rtol=0.03)
    np.testing.assert_allclose(F.mean(0), prior.mean().numpy(), rtol=0.02)


def test_wilson_gradient_finite_at_zero_for_centric():
    prior = WilsonPrior([True], [1.0])
    F = tf.Variable([[0.0]])
    with tf.GradientTape() as tape:
        lp = tf.reduce_sum(prior.log_prob(F))
    assert np.isfinite(lp.numpy())
    assert np.isfinite(tape.gradient(lp, F).numpy()).all()


def test_posterior_starts_from_prior_and_stores_flags():
    q = StructureFactorPosterior(4, centric=CENTRIC, epsilon=EPSILON, sigma=SIGMA)
    prior = WilsonPrior(CENTRIC, EPSILON, SIGMA)
    dist = q.distribution()
    np.testing.assert_allclose(dist.loc.numpy(), prior.mean().numpy(), rtol=1e-5)
    np.testing.assert_allclose(dist.scale.numpy(), prior.stddev().numpy(), rtol=1e-5)
    np.testing.assert_array_equal(q.centric.numpy() > 0.5, CENTRIC)
    np.testing.assert_array_equal(q.epsilon.numpy(), EPSILON)
    assert {w.name for w in q.trainable_weights} == {"loc", "scale_raw"}
    with pytest.raises(ValueError):
        StructureFactorPosterior(3, centric=CENTRIC)


def test_posterior_moments_match_scipy_truncnorm():
    loc = np.array([1.0, 0.0, -2.0, 30.0])
    scale = np.array([0.5, 2.0, 1.0, 0.1])
    q = StructureFactorPosterior(4)
    q.set_initial(loc, scale)
    ref = stats.truncnorm(-loc / scale, np.inf, loc=loc, scale=scale)
    np.testing.assert_allclose(q.mean().numpy(), ref.mean(), rtol=1e-4)
    np.testing.assert_allclose(q.stddev().numpy(), ref.std(), rtol=1e-3)
    ids = tf.constant([3, 0], tf.int32)
    np.testing.assert_allclose(q.distribution(ids).mean().numpy(), ref.mean()[[3, 0]], rtol=1e-4)
    samples = q.sample(ids, 5)
    assert samples.shape == (5, 2)


def test_posterior_finite_in_extreme_regimes():
    loc = np.array([-1e4, -50.0, -10.0, 0.0, 5.0, 1e4, -1e-3, 300.0])
    scale = np.array([1.0, 1e-3, 1e3, 1e-4, 1e-3, 1.0, 1e-4, 1e3])
    q = StructureFactorPosterior(8)
    q.set_initial(loc, scale)
    ids = tf.range(8)
    with tf.GradientTape() as tape:
        F = q.sample(ids, 64, seed=(3, 4))
        kl = q.kl_to_prior(ids, F)
        loss = tf.reduce_sum(kl) + tf.reduce_sum(F) + tf.reduce_sum(q.stddev())
    grads = tape.gradient(loss, q.trainable_weights)
    for value in [F, kl, q.mean(), q.stddev(), *grads]:
        assert np.isfinite(value.numpy()).all()
    assert (F.numpy() >= 0).all()
    # Clamped: the mean stays positive, about scale / |MIN_STANDARDIZED_LOC|.
    assert 0 < q.mean().numpy()[0] < 2.0 / abs(MIN_STANDARDIZED_LOC)


def test_kl_to_prior_matches_numerical_integral():
    loc = np.array([1.2, 0.4])
    scale = np.array([0.3, 0.8])
    centric = np.array([False, True])
    eps = np.array([1.0, 2.0])
    q = StructureFactorPosterior(2, centric=centric, epsilon=eps)
    q.set_initial(loc, scale)
    ids = tf.constant([0, 1])
    F = q.sample(ids, 100000, seed=(5, 6))
    got = q.kl_to_prior(ids, F).numpy()
    for j in range(2):
        qj = stats.truncnorm(-loc[j] / scale[j], np.inf, loc=loc[j], scale=scale[j])

        def integrand(f):
            return qj.pdf(f) * (qj.logpdf(f) - np.log(wilson_density(f, centric[j], eps[j], 1.0)))

        want = integrate.quad(integrand, 1e-12, loc[j] + 12 * scale[j])[0]
        assert got[j] == pytest.approx(want, abs=0.02)


def test_posterior_fits_noisy_targets():
    rng = np.random.default_rng(0)
    truth = np.array([0.3, 1.0, 2.0, 0.8, 1.5], np.float32)
    n_obs = 20
    obs = truth + 0.1 * rng.standard_normal((n_obs, truth.size)).astype(np.float32)
    q = StructureFactorPosterior(truth.size, centric=[0, 1, 0, 0, 1])
    optimizer = keras.optimizers.Adam(learning_rate=0.05)
    ids = tf.range(truth.size)

    @tf.function
    def step():
        with tf.GradientTape() as tape:
            F, kl = q(ids, mc_samples=8)
            nll = -tf.reduce_mean(
                tf.reduce_sum(
                    -0.5 * ((obs[None, :, :] - F[:, None, :]) / 0.1) ** 2, axis=1
                )
            )
            loss = nll + tf.reduce_sum(kl)
        optimizer.apply_gradients(zip(tape.gradient(loss, q.trainable_weights), q.trainable_weights))
        return loss

    for _ in range(300):
        step()
    np.testing.assert_allclose(q.mean().numpy(), obs.mean(0), atol=0.06)
    assert (q.stddev().numpy() < 0.1).all()


@pytest.mark.parametrize("loc, scale", [(1.0, 1.0), (-1.0, 1.0), (-3.0, 0.5), (0.2, 0.1)])
def test_sample_gradients_are_those_of_the_truncated_distribution(loc, scale):
    """Issue 14: the mean gradient of samples equals the gradient of the exact mean.

    tfp's own samples (TensorFlow's registered gradient) give d x / d loc = 1
    for a normal truncated at a constant 0, e.g. 1 instead of 0.199 at
    (-1, 1), which pushed weak reflections' posteriors astray.
    """
    from careless_online.distributions.truncated_normal import sample

    tfd = tfp.distributions
    loc, scale = tf.Variable(loc), tf.Variable(scale)
    with tf.GradientTape(persistent=True) as tape:
        q = tfd.TruncatedNormal(loc, scale, low=0.0, high=tf.stop_gradient(tf.maximum(loc, 0.0) + 20.0 * scale))
        x = sample(q, 50000, seed=(3, 4))
        mc_mean, mc_square = tf.reduce_mean(x), tf.reduce_mean(x * x)
        mean, square = q.mean(), q.variance() + q.mean() ** 2
    np.testing.assert_allclose(x.numpy(), q.sample(50000, seed=(3, 4)).numpy())  # the same values
    for mc, exact in ((mc_mean, mean), (mc_square, square)):
        got = [g.numpy() for g in tape.gradient(mc, [loc, scale])]
        want = [g.numpy() for g in tape.gradient(exact, [loc, scale])]
        np.testing.assert_allclose(got, want, rtol=0.03, atol=0.01)


@pytest.mark.parametrize("make", [
    lambda: StructureFactorPosterior(0),
    lambda: StructureFactorPosterior(3, sigma=0.0),
    lambda: StructureFactorPosterior(3, min_scale=-1e-4),
    lambda: StructureFactorPosterior(3, init_scale_fraction=float("nan")),
    lambda: StructureFactorPosterior(3, epsilon=[1.0, 0.0, 2.0]),
    lambda: StructureFactorPosterior(3, centric=[True, False]),
    lambda: WilsonPrior([True, False], [1.0, -2.0]),
    lambda: WilsonPrior([True, False], [1.0, 1.0], sigma=0.0),
])
def test_distributions_validate_their_parameters(make):
    with pytest.raises(ValueError):
        make()


def test_samples_at_a_bound_get_finite_zero_gradients():
    """A sample float32 cannot tell from the bound (log C = -inf) must not turn into NaN.

    Found in a 3,000-step merge: x = 7.45e-9 from TruncatedNormal(0.063, 0.094, 0, 1.95)
    made one step's loss NaN (the guard skipped it).
    """
    from careless_online.distributions.truncated_normal import sample

    tfd = tfp.distributions
    loc, scale = tf.Variable([0.0633287, 0.0633287, 1.0]), tf.Variable([0.094111, 0.094111, 0.5])
    drawn = tf.constant([[7.450581e-09, 0.0, 0.8]])
    with tf.GradientTape() as tape:
        q = tfd.TruncatedNormal(loc, scale, low=0.0, high=tf.stop_gradient(loc + 20.0 * scale))
        q.sample = lambda n, seed=None: drawn  # what the sampling op returned
        x = sample(q, 1)
        total = tf.reduce_sum(x)
    np.testing.assert_array_equal(x.numpy(), drawn.numpy())
    gradients = [g.numpy() for g in tape.gradient(total, [loc, scale])]
    assert all(np.isfinite(g).all() for g in gradients)
    assert gradients[0][0] == gradients[0][1] == 0.0 and gradients[0][2] > 0.0
