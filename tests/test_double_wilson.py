"""Tests of the double-Wilson conditional prior p(F_child | F_parent, r)."""

import numpy as np
import pytest
from scipy import integrate, stats

from careless_online.distributions import WilsonPrior
from careless_online.distributions.double_wilson import (
    MAX_R, DoubleWilsonPrior, logit_from_r, r_from_logit)

CENTRIC = np.array([False, True, False, True])
EPSILON = np.array([1.0, 1.0, 2.0, 4.0])
PARENT = np.array([0.3, 1.2, 2.5, 0.8])
SIGMA_C, SIGMA_P = 1.7, 0.9


def prior(r):
    return DoubleWilsonPrior(CENTRIC, EPSILON, PARENT, r, SIGMA_C, SIGMA_P)


@pytest.mark.parametrize("r", [0.0, 0.5, 0.95])
def test_normalized_with_the_conditional_second_moment(r):
    p = prior(r)
    s_c = np.sqrt(EPSILON * SIGMA_C)
    F = np.linspace(0.0, 10.0, 200001)[:, None] * s_c
    density = p.prob(F.astype(np.float32)).numpy().astype(np.float64)
    norm = integrate.trapezoid(density, F, axis=0)
    second = integrate.trapezoid(F**2 * density, F, axis=0)
    nu = r * s_c / np.sqrt(EPSILON * SIGMA_P) * PARENT
    np.testing.assert_allclose(norm, 1.0, atol=2e-3)
    np.testing.assert_allclose(second, nu**2 + s_c**2 * (1 - r**2), rtol=3e-3)
    np.testing.assert_allclose(p.second_moment().numpy(), nu**2 + s_c**2 * (1 - r**2), rtol=1e-5)


def test_matches_rice_and_folded_normal_of_scipy():
    r = 0.7
    p = prior(r)
    s_c = np.sqrt(EPSILON * SIGMA_C)
    nu = r * s_c / np.sqrt(EPSILON * SIGMA_P) * PARENT
    F = np.linspace(0.05, 5.0, 40)[:, None] * np.ones(4)
    got = p.log_prob(F.astype(np.float32)).numpy()
    for j in range(4):
        if CENTRIC[j]:
            s = s_c[j] * np.sqrt(1 - r**2)
            want = stats.foldnorm.logpdf(F[:, j], nu[j] / s, scale=s)
        else:
            sigma = s_c[j] * np.sqrt((1 - r**2) / 2)
            want = stats.rice.logpdf(F[:, j], nu[j] / sigma, scale=sigma)
        np.testing.assert_allclose(got[:, j], want, rtol=1e-4, atol=1e-4)


def test_r_zero_is_the_child_wilson_prior():
    F = np.linspace(0.05, 5.0, 30)[:, None] * np.ones(4)
    got = prior(0.0).log_prob(F.astype(np.float32)).numpy()
    want = WilsonPrior(CENTRIC, EPSILON, SIGMA_C).log_prob(F.astype(np.float32)).numpy()
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)


def test_marginal_over_a_wilson_parent_is_the_child_wilson():
    """<F_c^2> over parents drawn from their Wilson prior equals eps * Sigma_child for any r."""
    n = 200000
    centric = np.tile(CENTRIC, n // 4)
    epsilon = np.tile(EPSILON, n // 4)
    parents = WilsonPrior(centric, epsilon, SIGMA_P).sample(1, seed=(1, 2)).numpy()[0]
    p = DoubleWilsonPrior(centric, epsilon, parents, 0.8, SIGMA_C, SIGMA_P)
    mean_square = p.second_moment().numpy() / (epsilon * SIGMA_C)
    assert abs(mean_square.mean() - 1.0) < 0.01


def test_high_r_concentrates_on_the_scaled_parent():
    """The log density at the scaled parent grows as r approaches 1 (and is finite for large arguments)."""
    big_parent = np.array([0.3, 1.2, 40.0, 0.8])
    s_ratio = np.sqrt(SIGMA_C / SIGMA_P)
    values = [DoubleWilsonPrior(CENTRIC, EPSILON, big_parent, r, SIGMA_C, SIGMA_P)
              .log_prob((r * s_ratio * big_parent).astype(np.float32)).numpy() for r in (0.5, 0.9, 0.99)]
    assert np.all(np.isfinite(values))
    assert np.all(np.diff(np.array(values)[:, [1, 2]], axis=0) > 0)


@pytest.mark.parametrize("r", [-0.1, 1.0])
def test_r_outside_the_range_is_refused(r):
    with pytest.raises(ValueError, match="r must lie"):
        prior(r)


def test_non_positive_sigma_is_refused():
    with pytest.raises(ValueError, match="sigma_child"):
        DoubleWilsonPrior(CENTRIC, EPSILON, PARENT, 0.5, 0.0, 1.0)


def test_logit_round_trip_stays_inside_the_range():
    r = np.array([0.0, 0.3, 0.9, MAX_R])
    back = r_from_logit(logit_from_r(r).astype(np.float32)).numpy()
    np.testing.assert_allclose(back, r, atol=1e-5)
    assert np.all((back >= 0) & (back <= MAX_R))


# ----------------------------------------------------------------------------- coupling of datasets
import tensorflow as tf  # noqa: E402
import reciprocalspaceship as rs  # noqa: E402

from careless_online.distributions import StructureFactorPosterior  # noqa: E402
from careless_online.distributions.double_wilson import DoubleWilsonCoupling, check_parents  # noqa: E402

N_HKL = 6


def two_datasets(learn_r=False, r=0.8):
    q = StructureFactorPosterior(2 * N_HKL, centric=np.tile([False, True, False, False, True, False], 2),
                                 epsilon=np.tile([1.0, 2.0, 1.0, 4.0, 1.0, 1.0], 2))
    q.set_initial(np.linspace(0.5, 2.0, 2 * N_HKL), np.full(2 * N_HKL, 0.2))
    return q, DoubleWilsonCoupling(N_HKL, [None, 0], [0.0, r], learn_r)


def test_coupling_of_roots_is_the_wilson_kl():
    q, _ = two_datasets()
    roots = DoubleWilsonCoupling(N_HKL, [None, None])
    ids = tf.range(2 * N_HKL)
    F = q.sample(ids, 3, seed=(1, 2))
    sigma = tf.fill([2 * N_HKL], 1.3)
    np.testing.assert_allclose(roots.kl(q, ids, F, sigma).numpy(), q.kl_to_prior(ids, F, sigma).numpy(), rtol=1e-5)


def test_child_kl_uses_the_conditional_prior_given_a_parent_draw():
    q, coupling = two_datasets()
    ids = tf.constant([N_HKL + 2, 1, N_HKL + 4], tf.int32)  # child, root, child
    F = q.sample(ids, 2, seed=(3, 4))
    sigma = tf.fill([3], 0.9)
    got = coupling.kl(q, ids, F, sigma, seed=(5, 6)).numpy()
    parents = q.sample(tf.constant([2, 4]), 2, seed=(5, 6))
    children = tf.gather(F, [0, 2], axis=1)
    prior = DoubleWilsonPrior([False, True], [1.0, 1.0], parents, 0.8, 0.9, 0.9)
    want = tf.reduce_mean(q.distribution(tf.constant([N_HKL + 2, N_HKL + 4])).log_prob(children)
                          - prior.log_prob(children), axis=0).numpy()
    np.testing.assert_allclose(got[[0, 2]], want, rtol=1e-5)
    np.testing.assert_allclose(got[1], q.kl_to_prior(ids[1:2], F[:, 1:2], sigma[1:2]).numpy()[0], rtol=1e-5)


def test_child_kl_reaches_the_parent_posterior_and_a_learned_r():
    q, coupling = two_datasets(learn_r=True)
    ids = tf.constant([N_HKL + 3], tf.int32)
    with tf.GradientTape() as tape:
        F = q.sample(ids, 2, seed=(1, 1))
        kl = tf.reduce_sum(coupling.kl(q, ids, F, tf.ones([1]), seed=(2, 2)))
    grad_loc, _, grad_r = tape.gradient(kl, q.trainable_variables + coupling.trainable_variables)
    grad_loc = tf.convert_to_tensor(grad_loc).numpy()
    assert grad_loc[3] != 0 and grad_loc[N_HKL + 3] != 0 and grad_r.numpy()[1] != 0
    assert not two_datasets(learn_r=False)[1].trainable_variables


def test_learned_r_lands_on_the_simulation_value():
    """Empirical Bayes: with q pinned at the true amplitudes, maximizing the ELBO over r gives the implied r."""
    from careless_online.simulate.states import StateChange, implied_r, simulate_states

    states = simulate_states(n_images=1, seed=5, dmin=4.5, n_atoms=60,
                             change=StateChange(n_changed=6, shift=1.5, occupancy=0.8))
    truth = states.difference
    n = len(truth)
    centric = rs.utils.is_centric(truth.get_hkls(), truth.spacegroup)
    eps = rs.utils.compute_structurefactor_multiplicity(truth.get_hkls(), truth.spacegroup)
    F = np.concatenate([truth["F_DARK"].to_numpy(float), truth["F_LIGHT"].to_numpy(float)])
    s2 = 1 / np.square(truth.compute_dHKL()["dHKL"].to_numpy())
    sigma = np.empty(n)
    for rows in np.array_split(np.argsort(s2), 5):
        sigma[rows] = np.mean(F[:n][rows] ** 2 / eps[rows])
    q = StructureFactorPosterior(2 * n, centric=np.tile(centric, 2), epsilon=np.tile(eps, 2))
    q.set_initial(F, np.full(2 * n, 1e-3 * np.sqrt(np.mean(F**2))))
    coupling = DoubleWilsonCoupling(n, [None, 0], 0.5, learn_r=True)
    ids, sig = tf.range(2 * n), tf.constant(np.tile(sigma, 2), tf.float32)
    optimizer = tf.keras.optimizers.Adam(0.1)

    @tf.function
    def step(seed):
        with tf.GradientTape() as tape:
            loss = tf.reduce_sum(coupling.kl(q, ids, q.sample(ids, 1, seed=seed), sig, seed=seed + 1))
        optimizer.apply_gradients(zip(tape.gradient(loss, coupling.trainable_variables), coupling.trainable_variables))

    for i in range(150):
        step(tf.constant([i, 3]))
    want = implied_r(truth)
    assert 0.5 < want < 0.99
    assert abs(float(coupling.r()[1]) - want) < 0.03


@pytest.mark.parametrize("parents", [[0], [None, 1], [None, 0.5], [None, 2, 0]])
def test_parents_must_be_earlier_datasets(parents):
    with pytest.raises(ValueError, match="earlier dataset"):
        check_parents(parents)


def test_coupling_config_round_trip():
    _, coupling = two_datasets(learn_r=True, r=0.6)
    again = DoubleWilsonCoupling.from_config(coupling.get_config())
    assert again.parents == (-1, 0) and again.learn_r
    np.testing.assert_allclose(again.r().numpy()[1], 0.6, atol=1e-5)
