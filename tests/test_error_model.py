"""The observation error model starts at its documented values."""

import numpy as np

from careless_online.model.error_model import INITIAL, ErrorModel


def test_error_model_starts_at_its_initial_parameters():
    a, b, c = (float(v) for v in ErrorModel().parameters())
    np.testing.assert_allclose([a, b, c], [INITIAL["a"], INITIAL["b"], INITIAL["c"]], rtol=1e-5)
