"""Merging quality of ``poly`` on small simulated Laue sets with known truth."""

import pytest
import reciprocalspaceship as rs

from careless_online.cli.main import main
from careless_online.simulate.laue import simulate_laue, write_laue
from careless_online.simulate.laue_scores import cc_f

#: Small sets: 16 images to 3 A (about 600 spots per image in the wide band).
SIM = dict(n_images=16, dmin=3.0, seed=3)
TRAIN = ["--iterations", "200", "--batch-size", "8", "--disable-progress-bar", "--no-predictions",
         "--no-sigf-calibration", "--seed", "1"]


def _merge(command, keys, spots, out):
    main([command, *TRAIN, keys, spots, str(out)])
    return rs.read_mtz(f"{out}_0.mtz")


@pytest.fixture(scope="module")
def wide(tmp_path_factory):
    folder = tmp_path_factory.mktemp("wide")
    data = simulate_laue(band=(0.6, 1.3), **SIM)
    spots, _, _ = write_laue(data, str(folder / "laue"))
    return data, spots, folder


def test_simulated_wide_band_has_harmonic_spots(wide):
    data, _, _ = wide
    multiple = (data.spots["n_harmonics"] > 1).mean()
    assert 0.01 < multiple < 0.1  # a few % of all spots, as in a 0.6-1.3 A band


def test_poly_beats_a_wavelength_and_harmonic_blind_merge_on_a_wide_band(wide):
    data, spots, folder = wide
    poly, _ = cc_f(_merge("poly", "dHKL,Wavelength", spots, folder / "poly" / "m"), data.truth)
    blind, _ = cc_f(_merge("mono", "dHKL", spots, folder / "mono" / "m"), data.truth)
    print(f"CC(F) poly {poly:.3f}, blind {blind:.3f}")
    assert poly > blind + 0.03, (poly, blind)


def test_poly_merges_a_narrow_band(tmp_path):
    data = simulate_laue(band=(1.0, 1.2), **SIM)
    spots, _, _ = write_laue(data, str(tmp_path / "laue"))
    cc, n = cc_f(_merge("poly", "dHKL,Wavelength", spots, tmp_path / "poly" / "m"), data.truth)
    print(f"CC(F) narrow {cc:.3f} ({n})")
    assert n > 500 and cc > 0.6, (cc, n)
