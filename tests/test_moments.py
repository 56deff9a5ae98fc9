"""One accumulator of column moments serves the cache statistics and metadata standardization."""

import numpy as np

from careless_online.io.moments import accumulate, mean_std


def test_blockwise_moments_equal_numpy_mean_and_std():
    rng = np.random.default_rng(0)
    data = rng.normal(3.0, 2.0, size=(1000, 3))
    moments = (0, np.zeros(3), np.zeros(3))
    for block in np.array_split(data, 7):
        moments = accumulate(moments, block)
    mean, std = mean_std(moments)
    assert moments[0] == 1000
    assert np.allclose(mean, data.mean(axis=0)) and np.allclose(std, data.std(axis=0))


def test_one_column_moments_are_plain_numbers_and_a_constant_has_zero_std():
    moments = accumulate(accumulate((0, 0.0, 0.0), np.full(5, 2.0)), np.full(3, 2.0))
    assert moments == (8, 16.0, 32.0) and all(type(v) in (int, float) for v in moments)
    mean, std = mean_std(moments)
    assert mean == 2.0 and std == 0.0
