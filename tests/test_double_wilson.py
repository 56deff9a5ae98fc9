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
