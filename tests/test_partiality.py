"""The physical partiality of a still as the mean of the scales' prior (``--partiality-prior ewald``)."""

import numpy as np
import pytest
import reciprocalspaceship as rs
import tensorflow as tf

from careless_online.cli.main import main
from careless_online.distributions.scales import scale_kl
from careless_online.io.ewald import EwaldOffsets
from careless_online.io.spots import batch_extras
from careless_online.layers import PartialityPrior
from careless_online.layers.partiality import initial_widths, log_partiality
from careless_online.model.build import load_model, partiality_prior_config
from careless_online.model.merging import MergingModel
from careless_online.simulate import simulate_to_files

INVERSE_D2 = np.array([0.01, 0.05, 0.10, 0.20], dtype=np.float32)
WIDTHS = dict(r=6e-4, eta=2e-3, tau=4e-4, offset=-0.5)


def _numpy_p(e, q2, r, eta, tau):
    sigma2 = r ** 2 + (eta ** 2) * q2
    return tau / np.sqrt(sigma2 + tau ** 2) * np.exp(-e ** 2 / (2 * (sigma2 + tau ** 2)))


def test_log_partiality_is_the_overlap_of_profile_and_shell():
    rng = np.random.default_rng(0)
    e, q2 = rng.normal(0, 1e-3, 50), rng.uniform(0, 0.25, 50)
    got = log_partiality(e, q2, 6e-4, 2e-3, 4e-4).numpy()
    np.testing.assert_allclose(np.exp(got), _numpy_p(e, q2, 6e-4, 2e-3, 4e-4), rtol=1e-10)
    # a thick shell: height 1, no dependence on e; a thin one: height tau / sigma (the Lorentz-like tie)
    np.testing.assert_allclose(np.exp(log_partiality(e, q2, 6e-4, 2e-3, 1e3).numpy()), 1.0, rtol=1e-6)
    thin = np.exp(log_partiality(np.zeros(3), np.array([0.0, 0.1, 0.2]), 6e-4, 2e-3, 1e-8).numpy())
    np.testing.assert_allclose(thin, 1e-8 / np.sqrt(6e-4 ** 2 + 4e-6 * np.array([0.0, 0.1, 0.2])), rtol=1e-6)


def test_layer_subtracts_its_offset_and_round_trips_its_config():
    layer = PartialityPrior(**WIDTHS)
    e, q2 = np.array([0.0, 5e-4, -1e-3], np.float32), INVERSE_D2[:3]
    expected = np.log(_numpy_p(e.astype(float), q2.astype(float), 6e-4, 2e-3, 4e-4)) + 0.5
    np.testing.assert_allclose(layer(e, q2).numpy(), expected, rtol=1e-5)
    again = PartialityPrior.from_config(layer.get_config())
    np.testing.assert_allclose(again(e, q2).numpy(), expected, rtol=1e-5)


@pytest.mark.parametrize("bad", [dict(r=0.0), dict(eta=-1e-3), dict(tau=float("inf")), dict(offset=float("nan"))])
def test_layer_refuses_bad_parameters(bad):
    with pytest.raises(ValueError):
        PartialityPrior(**{**WIDTHS, **bad})


def test_initial_widths_follow_the_spread_of_the_offsets():
    rng = np.random.default_rng(1)
    q2 = rng.uniform(0, 0.25, 20000)
    w = np.sqrt(5e-4 ** 2 + (2e-3) ** 2 * q2)
    e = rng.normal(0, 1, len(q2)) * w
    r, eta, tau = initial_widths(e, q2)
    assert r == tau and abs(np.hypot(r, tau) / 5e-4 - 1) < 0.15 and abs(eta / 2e-3 - 1) < 0.1
    with pytest.raises(ValueError, match="all zero"):
        initial_widths(np.zeros(4), q2[:4])


def _batch():
    return {"refl_id": tf.constant([3, 0, 2, 1]), "image": tf.constant([0, 0, 1, 1]), "n_images": tf.constant(2),
            "I": tf.constant([1.0, 2.0, 0.5, 3.0]), "SigI": tf.constant([0.5, 0.5, 0.5, 0.5]),
            "meta": tf.constant(np.arange(8, dtype=np.float32).reshape(4, 2)),
            "ewald_offset": tf.constant([0.0, 4e-4, -8e-4, 1e-3])}


def _model(**options):
    return MergingModel(4, 2, d_model=4, inverse_d2=INVERSE_D2, **options)


def test_prior_mean_is_log_p_and_the_kl_is_that_of_the_residual():
    model, plain = _model(partiality_prior=WIDTHS), _model()
    batch = _batch()
    mean = model.scale_prior_mean(batch).numpy()
    expected = PartialityPrior(**WIDTHS)(batch["ewald_offset"], tf.gather(INVERSE_D2, batch["refl_id"])).numpy()
    np.testing.assert_allclose(mean, expected, rtol=1e-6)
    loc, scale = model.scale_parameters(batch)
    np.testing.assert_allclose(loc.numpy(), mean, atol=1e-6)  # the network starts at 0: q starts at the prior mean
    terms = model.loss_terms(batch, seed=tf.constant([1, 2]))
    np.testing.assert_allclose(terms["KL_Sigma"].numpy(), np.sum(scale_kl(loc - mean, scale).numpy()), rtol=1e-6)
    # the residual at the start is the plain model's loc: the same KL
    np.testing.assert_allclose(terms["KL_Sigma"].numpy(), plain.loss_terms(batch, seed=tf.constant([1, 2]))["KL_Sigma"].numpy(),
                               rtol=1e-6)
    np.testing.assert_array_equal(plain.scale_prior_mean(batch).numpy(), 0.0)
    with pytest.raises(ValueError, match="Ewald offset"):
        model.scale_prior_mean({k: v for k, v in batch.items() if k != "ewald_offset"})


def test_save_and_load_keep_the_term_and_old_configs_load_without_it(tmp_path):
    model = _model(partiality_prior=WIDTHS)
    model.partiality.log_eta.assign(np.log(3e-3))  # a learned value, not the config's start
    model.save(str(tmp_path / "p.keras"))
    loaded = load_model(str(tmp_path / "p.keras"))
    batch = _batch()
    np.testing.assert_allclose(loaded.scale_prior_mean(batch).numpy(), model.scale_prior_mean(batch).numpy(), rtol=1e-6)
    assert np.isclose(float(loaded.partiality.widths[1]), 3e-3)
    config = _model().get_config()
    assert config["partiality_prior"] is None
    del config["partiality_prior"]  # saved before the term existed
    assert MergingModel.from_config(config).partiality is None
    with pytest.raises(ValueError, match="partiality_prior"):
        _model(partiality_prior="ewald")


class _Manifest:
    def __init__(self, columns, arrays=None):
        self.columns, self._arrays = columns, arrays
        self.shards = [{}] if arrays else []

    def load_shard(self, i, keys):
        return {k: self._arrays[k] for k in keys}


def test_off_without_an_ewald_offset_column():
    manifest = _Manifest(["image_id", "refl_id", "I", "SigI", "XDET"])
    assert partiality_prior_config(manifest, INVERSE_D2) is None
    assert not any(isinstance(extra, EwaldOffsets) for extra in batch_extras(manifest))
    with_column = _Manifest(["refl_id", "ewald_offset"], {"refl_id": np.array([0, 1, 2, 3, 3]),
                                                          "ewald_offset": np.array([1e-4, -3e-4, 5e-4, 0.0, 2e-4])})
    config = partiality_prior_config(with_column, INVERSE_D2.astype(np.float64))
    assert set(config) == {"r", "eta", "tau", "offset"}
    # scale-neutral at the start: the mean of log P - c over the data is 0
    layer = PartialityPrior(**config)
    e = with_column._arrays["ewald_offset"].astype(np.float32)
    assert abs(float(np.mean(layer(e, INVERSE_D2[with_column._arrays["refl_id"]]).numpy()))) < 1e-5
    assert any(isinstance(extra, EwaldOffsets) for extra in batch_extras(with_column))


def test_the_flag_changes_the_merge(tmp_path):
    paths = simulate_to_files(str(tmp_path / "s"), n_images=24, seed=5, formats=("mtz",))
    common = ["mono", "--disable-progress-bar", "--iterations", "30", "--validation-frequency", "30",
              "--test-fraction", "0", "--no-predictions", "--cache-dir", str(tmp_path / "cache"), "dHKL,XDET"]
    assert main([*common, paths["mtz"], str(tmp_path / "off")]) == 0
    assert main([*common[:-1], "--partiality-prior", "ewald", "dHKL,XDET", paths["mtz"], str(tmp_path / "on")]) == 0
    off, on = (rs.read_mtz(str(tmp_path / f"{name}_0.mtz")) for name in ("off", "on"))
    assert load_model(str(tmp_path / "off_0.keras")).partiality is None
    assert load_model(str(tmp_path / "on_0.keras")).partiality is not None
    assert off.index.equals(on.index) and not np.allclose(off["F"].to_numpy(), on["F"].to_numpy())


def test_per_image_widths_start_at_the_global_ones_and_move_each_image():
    model = _model(partiality_prior=dict(WIDTHS, per_image=True))
    batch = _batch()
    np.testing.assert_allclose(model.scale_prior_mean(batch).numpy(),
                               _model(partiality_prior=WIDTHS).scale_prior_mean(batch).numpy(), rtol=1e-6)
    model.partiality_width.bias.assign([np.log(2.0)])  # every image twice the mosaic spread
    wider = PartialityPrior(**dict(WIDTHS, eta=2 * WIDTHS["eta"]))
    expected = wider(batch["ewald_offset"], tf.gather(INVERSE_D2, batch["refl_id"])).numpy()
    np.testing.assert_allclose(model.scale_prior_mean(batch).numpy(), expected, rtol=1e-5)
    assert MergingModel.from_config(model.get_config()).partiality.per_image


def test_the_data_start_divides_by_the_starting_scales():
    from careless_online.model.start import normalized_intensity, reflection_exposure

    model = _model(partiality_prior=WIDTHS)
    arrays = {"refl_id": np.array([0, 1, 1, 3]), "ewald_offset": np.array([0.0, 4e-4, -8e-4, 1e-3], np.float32)}
    exposure = reflection_exposure(model, _Manifest(["refl_id", "ewald_offset"], arrays), 4)
    scales = np.exp(model.partiality(arrays["ewald_offset"], INVERSE_D2[arrays["refl_id"]]).numpy())
    np.testing.assert_allclose(exposure, np.bincount(arrays["refl_id"], scales, minlength=4), rtol=1e-6)
    assert reflection_exposure(_model(), _Manifest([], arrays), 4) is None
    # exposure equal to the counts: the plain start
    sums, counts = np.array([2.0, 6.0, 0.0, 1.0]), np.array([1.0, 2.0, 0.0, 1.0])
    plain = normalized_intensity(model.wilson_sigma, sums, counts)
    np.testing.assert_allclose(normalized_intensity(model.wilson_sigma, sums, counts, counts), plain)


def test_frozen_scales_freeze_the_widths_and_a_scale_file_brings_them(tmp_path):
    from careless_online.model.reference import copy_scales, freeze

    model = _model(partiality_prior=dict(WIDTHS, per_image=True))
    freeze(model, scales=True)
    assert not model.partiality.trainable and not model.partiality_width.trainable
    saved = _model(partiality_prior=dict(WIDTHS, per_image=True))
    saved.partiality.log_tau.assign(np.log(7e-4))
    saved.save(str(tmp_path / "s.keras"))
    fresh = _model(partiality_prior=dict(WIDTHS, per_image=True))
    copy_scales(fresh, str(tmp_path / "s.keras"))
    assert np.isclose(float(fresh.partiality.widths[2]), 7e-4)
