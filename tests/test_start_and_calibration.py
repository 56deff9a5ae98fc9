"""Where q(F) starts (--f-start) and the SIGF calibration after training (--no-sigf-calibration)."""

import numpy as np
import pandas as pd
import pytest
import reciprocalspaceship as rs

from careless_online.io.cache import build_cache
from careless_online.io.layout import to_internal
from careless_online.io.pipeline import Standardizer
from careless_online.io.table import TableOptions
from careless_online.model.build import new_model
from careless_online.model.sigf_calibration import ScatterTally
from careless_online.simulate import simulate_to_files

KEYS = ["dHKL", "XDET", "YDET", "ewald_offset"]


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    folder = tmp_path_factory.mktemp("start")
    paths = simulate_to_files(str(folder / "s"), n_images=60, seed=5, dmin=3.0, formats=("mtz",),
                              truth_columns=True)
    manifest = build_cache([paths["mtz"]], TableOptions(anomalous=False), str(folder / "cache"), shard_images=30)
    return paths, manifest, Standardizer.fit(manifest, KEYS)


def test_data_start_puts_each_amplitude_near_the_truth(data):
    """--f-start data (default) starts q(F) correlated with the true F; the prior start is flat within a shell."""
    paths, manifest, standardizer = data
    truth = rs.read_mtz(paths["truth"])
    counts = manifest.counts()
    observed = counts >= 5
    ccs = {}
    for mode in ("data", "prior"):
        model = new_model(manifest, standardizer, d_model=8, f_start=mode)
        loc = model.structure_factors.distribution().mean().numpy()
        f_true = truth["F"].reindex(pd.MultiIndex.from_arrays(manifest.index.hkl.T, names=["H", "K", "L"]))
        ok = observed & np.isfinite(f_true.to_numpy(float))
        ccs[mode] = np.corrcoef(loc[ok], f_true.to_numpy(float)[ok])[0, 1]
    assert ccs["data"] > 0.8
    assert ccs["data"] > ccs["prior"] + 0.3


def test_data_start_scale_shrinks_with_observations(data):
    """A reflection's start scale is narrower the more observations it has, within [prior/20, prior]."""
    _, manifest, standardizer = data
    model = new_model(manifest, standardizer, d_model=8, f_start="data")
    prior = new_model(manifest, standardizer, d_model=8, f_start="prior")
    scale = model.structure_factors.distribution().scale.numpy()
    prior_scale = prior.structure_factors.distribution().scale.numpy()
    counts = manifest.counts()
    assert np.all(scale <= prior_scale * (1 + 1e-4))
    assert np.all(scale >= 0.05 * prior_scale * (1 - 1e-3))
    many, few = counts >= np.quantile(counts, 0.9), (counts >= 1) & (counts <= 2)
    assert np.median(scale[many] / prior_scale[many]) < np.median(scale[few] / prior_scale[few])


def test_new_model_refuses_an_unknown_start(data):
    _, manifest, standardizer = data
    with pytest.raises(ValueError, match="mode"):
        new_model(manifest, standardizer, d_model=8, f_start="zero")


def _tally(a, c, n=200_000, seed=0):
    """Observations of 100 reflections with scatter a^2 SigI^2 + (c mu)^2 about their predictions."""
    rng = np.random.default_rng(seed)
    ids = rng.integers(0, 100, n)
    mu = np.exp(rng.uniform(np.log(0.1), np.log(1e4), 100))[ids]
    sigma = np.sqrt(mu + 10.0)
    observed = mu + rng.normal(size=n) * np.sqrt((a * sigma) ** 2 + (c * mu) ** 2)
    tally = ScatterTally(100)
    tally.add(ids, observed, sigma, mu, np.ones(n, bool))
    return tally, ids, mu, sigma


@pytest.mark.parametrize("a,c", [(1.0, 0.0), (1.3, 0.05), (1.0, 0.2)])
def test_error_model_recovers_the_scatter(a, c):
    """The fitted (a, c) of <z^2> = a^2 + c^2 x are those the observations were drawn with."""
    tally, *_ = _tally(a, c)
    fit_a, fit_c = tally.error_model()
    assert fit_a == pytest.approx(a, rel=0.05)
    assert fit_c == pytest.approx(c, abs=0.01)


def test_sigf_factors_widen_strong_reflections_only():
    """With a fractional error, strong reflections' SIGF widen by about c mu / SigI, weak ones stay (factor >= 1)."""
    tally, ids, mu, sigma = _tally(1.0, 0.1)
    factors = tally.sigf_factors(*tally.error_model())
    per_reflection_x = np.bincount(ids, (mu / sigma) ** 2) / np.bincount(ids)
    strong, weak = per_reflection_x > 1e3, per_reflection_x < 0.1
    assert np.all(factors >= 1.0)
    assert np.all(factors[weak] < 1.05)
    expected = np.sqrt(1 + 0.01 * per_reflection_x[strong])
    np.testing.assert_allclose(factors[strong], expected, rtol=0.1)


def test_test_images_do_not_count_towards_information():
    tally = ScatterTally(2)
    tally.add([0, 1], [10.0, 10.0], [1.0, 1.0], [10.0, 10.0], [True, False])
    assert tally.information[0, 0] > 0 and tally.information[0, 1] == 0
    assert tally.sigf_factors(1.0, 0.0)[1] == 1.0


def _mono(sim_files, out, *flags):
    from careless_online.cli.main import main

    assert main(["mono", "--disable-progress-bar", "--no-predictions", "--spacegroups", "P 43 21 2",
                 "--validation-frequency", "10", *flags, ",".join(KEYS), sim_files["stream"], str(out)]) == 0
    return to_internal(rs.read_mtz(f"{out}_0.mtz"))


def _cc_to_truth(merged, sim_files):
    truth = rs.read_mtz(sim_files["truth"])
    joined = merged[["F"]].join(truth[["F"]].rename(columns={"F": "FT"}), how="inner").dropna()
    return np.corrcoef(joined["F"], joined["FT"])[0, 1]


@pytest.fixture(scope="module")
def short_merges(sim_files, tmp_path_factory):
    """Ten-step merges of the shared simulation: default, --f-start prior, --no-sigf-calibration."""
    out = tmp_path_factory.mktemp("short")
    flags = {"default": [], "prior": ["--f-start", "prior"], "raw": ["--no-sigf-calibration"]}
    return {name: _mono(sim_files, out / name, "--iterations", "10", *extra) for name, extra in flags.items()}


def test_f_start_flag_decides_where_a_short_merge_ends(short_merges, sim_files):
    """After 10 steps the default data start is far closer to the truth than --f-start prior."""
    data, prior = (_cc_to_truth(short_merges[k], sim_files) for k in ("default", "prior"))
    assert data > 0.9
    assert data > prior + 0.1


def test_sigf_calibration_widens_and_never_narrows(short_merges):
    """The default merge's SIGF are its posterior's (--no-sigf-calibration) times factors >= 1, F unchanged."""
    calibrated, raw = short_merges["default"], short_merges["raw"]
    np.testing.assert_allclose(calibrated["F"], raw.loc[calibrated.index, "F"], rtol=1e-5)
    ratio = calibrated["SIGF"].to_numpy(float) / raw.loc[calibrated.index, "SIGF"].to_numpy(float)
    assert np.all(ratio >= 1 - 1e-5)
    assert np.max(ratio) > 1.01
