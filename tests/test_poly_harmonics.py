"""Harmonic bookkeeping of Laue spots, spot segments of batches and the likelihood that sums harmonics."""

import gemmi
import numpy as np
import pandas as pd
import pytest

from careless_online.errors import InputError
from careless_online.io.harmonics import expand_harmonics, order_range, primary_rays
from careless_online.io.laue import LaueOptions, expand_spots, spot_numbers
from careless_online.io.readers import RawReflections
from careless_online.io.spots import SpotSegments

CELL = gemmi.UnitCell(40.0, 40.0, 40.0, 90, 90, 90)
P1 = gemmi.SpaceGroup("P 1")


def test_primary_ray_divides_by_gcd_and_multiplies_wavelength():
    primary, longest, order = primary_rays([[2, 4, -6], [3, 0, 0], [1, 2, 3], [0, 0, -4]], [0.5, 0.4, 1.1, 0.3])
    assert primary.tolist() == [[1, 2, -3], [1, 0, 0], [1, 2, 3], [0, 0, -1]]
    assert np.allclose(longest, [1.0, 1.2, 1.1, 1.2])
    assert order.tolist() == [2, 3, 1, 4]


def test_primary_ray_refuses_000():
    with pytest.raises(ValueError, match="0,0,0"):
        primary_rays([[0, 0, 0]], [1.0])


def test_orders_inside_band_and_resolution():
    # lambda_1 = 3.3: only n = 3 (1.1 A) lies in 1.0-1.2; d_1 = 5 with dmin 2 allows n <= 2, so that ray has none
    first, last = order_range(np.array([3.3, 3.3]), np.array([40.0, 5.0]), (1.0, 1.2), 2.0)
    assert first.tolist() == [3, 3] and last.tolist() == [3, 2]
    first, last = order_range(np.array([6.0]), np.array([40.0]), (0.6, 1.3), 2.0)
    assert (first[0], last[0]) == (5, 10)  # 6/5 = 1.2 ... 6/10 = 0.6


def test_expansion_lists_every_harmonic_of_a_wide_band():
    out = expand_harmonics([[1, 0, 0]], [1.2], CELL, P1, (0.6, 1.3), 1.0)
    assert out["hkl"].tolist() == [[1, 0, 0], [2, 0, 0]]  # 1.2/n >= 0.6: n <= 2
    assert np.allclose(out["wavelength"], [1.2, 0.6]) and out["order"].tolist() == [1, 2]
    out = expand_harmonics([[1, 0, 0]], [1.2], CELL, P1, (0.6, 1.3), 30.0)
    assert out["hkl"].tolist() == [[1, 0, 0]]  # d(2,0,0) = 20 A is beyond dmin 30 A


def test_expansion_narrow_band_keeps_only_the_written_order():
    out = expand_harmonics([[2, 2, 0], [1, 2, 3]], [1.1, 1.1], CELL, P1, (1.0, 1.2), 1.0)
    assert out["hkl"].tolist() == [[2, 2, 0], [1, 2, 3]] and out["spot"].tolist() == [0, 1]


def test_expansion_respects_dmin():
    out = expand_harmonics([[5, 0, 0]], [0.2], CELL, P1, (0.1, 1.3), 40.0 / 12)
    # ray (1,0,0), lambda_1 = 1.0: band allows n = 1..10, d = 40/n >= 3.33 allows n <= 12 -> n = 1..10
    assert out["order"].tolist() == list(range(1, 11))
    out = expand_harmonics([[5, 0, 0]], [0.2], CELL, P1, (0.1, 1.3), 40.0 / 6)
    assert out["order"].tolist() == list(range(1, 7))


def test_expansion_drops_systematic_absences():
    p43 = gemmi.SpaceGroup("P 43 21 2")  # 00l present only for l = 4n
    out = expand_harmonics([[0, 0, 1]], [4.4], CELL, p43, (0.5, 1.2), 1.0)
    assert out["hkl"].tolist() == [[0, 0, 4], [0, 0, 8]]
    assert np.allclose(out["wavelength"], [1.1, 0.55])


def _raw(rows, images=None):
    frame = pd.DataFrame(rows, columns=["H", "K", "L", "I", "SigI", "Wavelength"])
    frame["image"] = images if images is not None else np.zeros(len(frame), dtype=np.int64)
    return RawReflections(frame.astype({"H": np.int32, "K": np.int32, "L": np.int32}), CELL, P1, {}, "spots.mtz")


def test_expand_spots_writes_harmonic_rows_with_the_spots_values():
    raw = _raw([[2, 0, 0, 10.0, 1.0, 0.62], [1, 1, 1, 5.0, 2.0, 1.1]], images=[3, 3])
    out, dropped = expand_spots(raw, CELL, P1, 2.0, LaueOptions("Wavelength", (0.6, 1.3)))
    data = out.data
    # ray (1,0,0) with lambda_1 = 1.24: n = 1 (1.24 A) and n = 2 (0.62 A) in the band, n = 3 (0.41 A) not
    assert data[["H", "K", "L"]].to_numpy().tolist() == [[1, 0, 0], [2, 0, 0], [1, 1, 1]]
    assert np.allclose(data["Wavelength"], [1.24, 0.62, 1.1])
    assert data["I"].tolist() == [10.0, 10.0, 5.0] and data["SigI"].tolist() == [1.0, 1.0, 2.0]
    assert data["spot"].tolist() == [0, 0, 1] and data["harmonic"].tolist() == [1, 2, 1]
    assert sum(dropped.values()) == 0


def test_expand_spots_drops_out_of_band_orders():
    raw = _raw([[2, 0, 0, 10.0, 1.0, 0.7]])
    out, _ = expand_spots(raw, CELL, P1, 2.0, LaueOptions("Wavelength", (0.6, 1.3)))
    # lambda_1 = 1.4 is outside the band: only n = 2 (0.7) remains
    assert out.data[["H", "K", "L"]].to_numpy().tolist() == [[2, 0, 0]]
    assert np.allclose(out.data["Wavelength"], [0.7])


def test_spots_outside_the_band_are_refused_or_dropped():
    raw = _raw([[1, 1, 1, 5.0, 2.0, 1.1], [1, 2, 1, 5.0, 2.0, 1.5]])
    with pytest.raises(InputError, match="1 of 2 spots have a wavelength outside --wavelength-range 1 1.2"):
        expand_spots(raw, CELL, P1, 2.0, LaueOptions("Wavelength", (1.0, 1.2)))
    out, dropped = expand_spots(raw, CELL, P1, 2.0, LaueOptions("Wavelength", (1.0, 1.2)), drop_invalid=True)
    assert len(out.data) == 1 and dropped["wavelength outside the band"] == 1


def test_missing_wavelength_column_names_file_and_flag():
    raw = _raw([[1, 1, 1, 5.0, 2.0, 1.1]])
    with pytest.raises(InputError, match="spots.mtz: no wavelength column 'LAMBDA'.*--wavelength-key"):
        expand_spots(raw, CELL, P1, 2.0, LaueOptions("LAMBDA", (1.0, 1.2)))


@pytest.mark.parametrize("band", [(0.0, 1.0), (1.2, 1.0), (-1.0, 1.0), (1.0, 1.0)])
def test_laue_options_refuse_bad_bands(band):
    with pytest.raises(InputError, match="--wavelength-range needs 0 < LO < HI"):
        LaueOptions("Wavelength", band)


def test_spot_numbers_count_within_each_image_in_file_order():
    assert spot_numbers([5, 5, 2, 5, 2]).tolist() == [0, 1, 0, 2, 1]


def test_spot_segments_start_at_new_spot_or_image():
    part = {"image_id": np.array([0, 0, 0, 4, 4, 4]), "spot": np.array([0, 0, 1, 0, 1, 1], np.float32)}
    entries = SpotSegments.entries(part)
    assert entries["spot"].tolist() == [0, 0, 1, 2, 3, 3] and int(entries["n_spots"]) == 4


def _laue_batch():
    import tensorflow as tf

    return {"refl_id": tf.constant([0, 1, 2, 3], tf.int32), "image": tf.constant([0, 0, 0, 1], tf.int32),
            "n_images": tf.constant(2, tf.int32), "I": tf.constant([3.0, 3.0, 1.0, 2.0]),
            "SigI": tf.constant([0.5, 0.5, 0.2, 0.4]), "meta": tf.zeros([4, 0]),
            "dataset": tf.zeros([4], tf.int32), "spot": tf.constant([0, 0, 1, 2], tf.int32),
            "n_spots": tf.constant(3, tf.int32)}


def test_harmonic_sum_adds_rows_of_a_spot_and_shares_back():
    import tensorflow as tf

    from careless_online.layers import HarmonicSum

    layer = HarmonicSum()
    spot, n = tf.constant([0, 0, 1, 2], tf.int32), tf.constant(3, tf.int32)
    values = np.array([[1.0, 2.0, 3.0, 4.0], [10.0, 20.0, 30.0, 40.0]], np.float32)
    assert layer(values, spot, n).numpy().tolist() == [[3.0, 3.0, 4.0], [30.0, 30.0, 40.0]]
    assert layer.share(np.array([6.0, 1.0, 2.0], np.float32), spot, n).numpy().tolist() == [3.0, 3.0, 1.0, 2.0]
    assert HarmonicSum.from_config(layer.get_config()).name == layer.name


def test_laue_likelihood_compares_each_spot_with_its_harmonics_sum():
    import tensorflow as tf

    from careless_online.distributions.likelihood import intensity_log_likelihood
    from careless_online.model.laue import LaueMergingModel

    model = LaueMergingModel(4, 0, d_model=4, encoder_layers=0, scale_layers=0)
    batch = _laue_batch()
    prediction = tf.constant([[1.0, 1.5, 0.9, 2.5]])
    per_row = model.log_likelihood(prediction, batch).numpy()
    k = model.k
    expected = intensity_log_likelihood(tf.constant([[2.5, 0.9, 2.5]]), tf.constant([3.0, 1.0, 2.0]),
                                        k * tf.constant([0.5, 0.2, 0.4]), k).numpy()
    assert np.allclose(per_row[0, :2], expected[0, 0] / 2) and np.allclose(per_row[0, 2:], expected[0, 1:])
    assert np.isclose(per_row.sum(), expected.sum(), rtol=1e-6)


def test_laue_predictions_are_the_spot_sums_on_every_row():
    from careless_online.model.laue import LaueMergingModel
    from careless_online.model.merging import MergingModel

    model = LaueMergingModel(4, 0, d_model=4, encoder_layers=0, scale_layers=0)
    batch = _laue_batch()
    rows_mean, rows_std = MergingModel.predict_intensities(model, batch)
    mean, std = (t.numpy() for t in model.predict_intensities(batch))
    assert np.allclose(mean[:2], rows_mean[0] + rows_mean[1]) and np.allclose(mean[2:], rows_mean.numpy()[2:])
    assert np.allclose(std[:2], np.hypot(rows_std[0], rows_std[1]))


def test_laue_model_survives_a_config_round_trip():
    from careless_online.model.laue import LaueMergingModel

    model = LaueMergingModel(4, 0, d_model=4, encoder_layers=0, scale_layers=0)
    again = LaueMergingModel.from_config(model.get_config())
    assert isinstance(again, LaueMergingModel) and again.n_reflections == 4


def test_laue_model_refuses_indexing_settings():
    from careless_online.model.laue import LaueMergingModel

    with pytest.raises(ValueError, match="indexing settings"):
        LaueMergingModel(4, 0, d_model=4, reindexing_ops=["h,k,l", "k,h,-l"])
