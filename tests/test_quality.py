"""Merging quality against the simulator's truth: the oracle ceiling, the prior's fall-off, honest SIGF."""

import math

import numpy as np
import pandas as pd
import pytest
import reciprocalspaceship as rs

from careless_online.cli.main import main
from careless_online.distributions.wilson_scale import WilsonSigma
from careless_online.errors import InputError
from careless_online.io.layout import to_internal
from careless_online.model.build import load_model
from careless_online.model.error_model import INITIAL
from careless_online.simulate import simulate, simulate_to_files
from careless_online.simulate.geometry import partiality, profile_width
from careless_online.simulate.oracle import main as oracle_main
from careless_online.simulate.oracle import oracle_merge, true_correction
from careless_online.stats import binning
from careless_online.stats.reference import cc_to_reference
from careless_online.stats.truth import fall_off, sigf_calibration
from careless_online.training.merge import epoch_steps

#: A small, demanding simulation: partiality, energy jitter, image scales and B, Poisson noise, Se anomalous signal.
SIM = dict(n_images=80, seed=21, dmin=3.5, mosaicity=0.27, energy_jitter=0.002)
DMIN = SIM["dmin"]
META = "dHKL,XDET,YDET,ewald_offset"


@pytest.fixture(scope="module")
def sim(tmp_path_factory):
    base = tmp_path_factory.mktemp("quality") / "s"
    return simulate_to_files(str(base), formats=("stream", "mtz"), truth_columns=True, **SIM)


def _merge(sim, out, *flags):
    assert main(["mono", "--disable-progress-bar", "--anomalous", "--spacegroups", "P 43 21 2", "--dmin", str(DMIN),
                 "--no-predictions",
                 *flags, META, sim["stream"], str(out)]) == 0
    return to_internal(rs.read_mtz(f"{out}_0.mtz"))


def _cc(merged, truth):
    table = cc_to_reference(merged, truth, column="F", anomalous=True, bins=4)
    return table.loc[binning.OVERALL, "CC"], table.loc[binning.OVERALL, "CCanom"]


def test_oracle_correction_is_the_simulators_factor(sim):
    obs = rs.read_mtz(sim["mtz"])
    ratio = true_correction(obs) * obs["FTRUE"].to_numpy(float) ** 2 / obs["IEXPECTED"].to_numpy(float)
    np.testing.assert_allclose(ratio, np.median(ratio), rtol=1e-3)


def test_oracle_merge_beats_naive(sim, tmp_path):
    truth = rs.read_mtz(sim["truth"])
    assert oracle_main([sim["mtz"], str(tmp_path / "oracle.mtz"), "--dmin", str(DMIN)]) in (0, None)
    oracle = rs.read_mtz(str(tmp_path / "oracle.mtz"))
    naive = _merge(sim, tmp_path / "naive", "--naive")
    cc_oracle, anom_oracle = _cc(oracle, truth)
    cc_naive, anom_naive = _cc(naive, truth)
    assert cc_oracle > 0.99 and cc_oracle > cc_naive
    assert anom_oracle > anom_naive + 0.1
    assert fall_off(oracle, truth, [60.0, 6.0, 4.5, DMIN])["ratio_flat_pct"] < 2.0
    assert 0.7 < sigf_calibration(oracle, truth)["rms_z"] < 1.6


def test_oracle_refuses_data_without_truth_columns(sim):
    obs = rs.read_mtz(sim["mtz"])[["BATCH", "I", "SIGI"]]
    with pytest.raises(InputError, match="truth columns"):
        oracle_merge(obs, DMIN)


def test_energy_jitter_moves_partiality_away_from_the_recorded_offset():
    def mismatch(jitter):
        sim = simulate(10, seed=4, dmin=4.0, energy_jitter=jitter)
        obs, c = sim.observations, sim.config
        q2 = 1.0 / np.asarray(sim.cell.calculate_d_array(obs.get_hkls().astype(float))) ** 2
        width = profile_width(q2, c.wavelength, c.profile_radius, c.mosaicity, c.bandwidth)
        implied = partiality(obs["ewald_offset"].to_numpy(float), width)
        return np.abs(implied - obs["PARTIALITY"].to_numpy(float)).mean(), sim.images["wavelength"].std()

    error, spread = mismatch(0.0)
    assert error < 0.01 and spread < 1e-12
    error, spread = mismatch(0.005)
    assert error > 0.02 and spread > 0.002 * 0.97


def test_wilson_sigma_moments_recover_a_b_factor():
    rng = np.random.default_rng(0)
    b, x = 30.0, np.linspace(0.0, 0.11, 4000)
    intensity = np.exp(-b * x / 2) * rng.exponential(size=len(x))
    layer = WilsonSigma(len(x), x.max(), knots=6)
    layer.set_resolution(x)
    layer.fit_moments(x, intensity, np.ones(len(x)))
    curve = layer.curve(np.array([0.02, 0.09]))
    assert curve[1] / curve[0] == pytest.approx(np.exp(-b * 0.07 / 2), rel=0.15)
    assert np.mean(layer(np.arange(len(x), dtype=np.int32)).numpy()) == pytest.approx(1.0, rel=1e-4)


def test_wilson_sigma_fixed_b_and_flat():
    x = np.linspace(0.0, 0.1, 11)
    flat = WilsonSigma(11, 0.1, b_factor=0.0)
    flat.set_resolution(x)
    np.testing.assert_allclose(flat(np.arange(11)).numpy(), 1.0, rtol=1e-6)
    fixed = WilsonSigma(11, 0.1, b_factor=20.0)
    fixed.set_resolution(x)
    sigma = fixed(np.arange(11)).numpy()
    assert sigma[-1] / sigma[0] == pytest.approx(np.exp(-20.0 * 0.1 / 2), rel=1e-4)
    with pytest.raises(ValueError):
        WilsonSigma(11, 0.1, knots=1)


@pytest.fixture(scope="module")
def merges(sim, tmp_path_factory):
    """Short merges of the simulation: default flags, a flat prior, and the learned error model."""
    out = tmp_path_factory.mktemp("merges")
    flags = {"default": ["--iterations", "200"], "flat": ["--iterations", "200", "--wilson-prior-b", "0"],
             "refine": ["--iterations", "100", "--refine-uncertainties"]}
    merged = {name: _merge(sim, out / name, "--validation-frequency", "50", *extra) for name, extra in flags.items()}
    return {**merged, "paths": {name: out / name for name in flags}}


def test_learned_wilson_prior_keeps_the_fall_off(sim, merges):
    """--wilson-prior-b 0 (flat prior) flattens F's fall-off; the learned default keeps it."""
    truth = rs.read_mtz(sim["truth"])
    edges = [60.0, 6.0, 4.5, 4.0, DMIN]
    flat = fall_off(merges["flat"], truth, edges)
    learned = fall_off(merges["default"], truth, edges)
    assert learned["ratio_flat_pct"] < 0.5 * flat["ratio_flat_pct"]
    assert learned["ratio_flat_pct"] < 4.0


def test_default_sigf_are_within_twice_the_oracles_honesty(sim, merges, tmp_path):
    """rms((F - k F_true)/SIGF) of the default merge is within 2x the oracle's (issue 13's calibration target)."""
    truth = rs.read_mtz(sim["truth"])
    assert oracle_main([sim["mtz"], str(tmp_path / "oracle.mtz"), "--dmin", str(DMIN)]) in (0, None)
    oracle = sigf_calibration(rs.read_mtz(str(tmp_path / "oracle.mtz")), truth)["rms_z"]
    merged = sigf_calibration(merges["default"], truth)["rms_z"]
    assert 0.3 < merged < 2.0 * oracle


def test_refine_uncertainties_learns_an_error_model(merges):
    """--refine-uncertainties learns a, b, c of SigI' (its a or c grow from their starts) and changes the merge."""
    refine = load_model(str(merges["paths"]["refine"]) + "_0.keras")
    default = load_model(str(merges["paths"]["default"]) + "_0.keras")
    assert default.error_model is None
    a, _, c = (float(v) for v in refine.error_model.parameters())
    assert a > 1.05 or c > 2 * INITIAL["c"]
    sigf = merges["refine"]["SIGF"].to_numpy(float) / merges["default"].loc[merges["refine"].index, "SIGF"].to_numpy(float)
    assert np.nanmedian(np.abs(np.log(sigf))) > 0.02


def test_epochs_set_the_number_of_steps(sim, tmp_path):
    """--epochs 2 takes ceil(2 x training images / batch size) steps instead of --iterations."""
    _merge(sim, tmp_path / "m", "--epochs", "2", "--batch-size", "8", "--iterations", "5000",
           "--validation-frequency", "5")
    history = pd.read_csv(f"{tmp_path / 'm'}_history.csv")
    n_train = 0.9 * SIM["n_images"]
    assert history["step"].max() == pytest.approx(math.ceil(2 * n_train / 8), abs=3)
    assert epoch_steps(2, 72, 8) == 18 and epoch_steps(0.01, 10, 8) == 1
