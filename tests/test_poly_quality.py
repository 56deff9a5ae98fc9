"""Merging quality of ``poly`` on small simulated Laue sets, against the truth and the Laue oracle.

One wide-band dark/light pair (16 images per state to 3 A, 0.6-1.3 A, about
600 spots per image, 3 % of them with several harmonics; 8 of 400 atoms
moved 1.5 A in the light state) is simulated once and merged once by
``poly --separate-files`` (module fixtures).  The dark set and its merge
serve the quality assertions, the pair the difference map, against
``poly --naive`` (per-image scales, each harmonic row taken at its spot's
intensity).  The oracle (:mod:`careless_online.simulate.laue_oracle`)
takes under a second.  Measured with these settings: oracle CC(F) 0.995
(1,842 reflections, 56 of them peeled from shared spots) and 0.998 with
single spots only (1,786); poly (dark, 300 joint steps) 0.868 on the
oracle's reflections.  The 114 reflections recorded only as harmonics of
shared spots: poly CC(F) 0.634; poly on single-spot reflections of the same
spot count and resolution 0.903; the oracle 0.933 on the 56 it can peel.
Difference-map signal at the changed atoms: poly 9.90 σ, naive 4.14 σ.
"""

import numpy as np
import pytest
import reciprocalspaceship as rs

from careless_online.cli.difference import main as difference
from careless_online.cli.main import main
from careless_online.simulate.laue import simulate_laue, write_laue
from careless_online.simulate.laue_oracle import laue_oracle_merge, reflection_spots
from careless_online.simulate.laue_scores import cc_f, resolution_matched
from careless_online.simulate.laue_states import map_heights, simulate_laue_states
from careless_online.simulate.states import StateChange

#: Small sets: 16 images to 3 A.
SIM = dict(n_images=16, dmin=3.0, seed=3)
#: Steps of the joint dark/light merge (16 images each: 75 passes over every image).
PAIR_STEPS = 300
TRAIN = ["--batch-size", "8", "--disable-progress-bar", "--no-predictions",
         "--no-sigf-calibration", "--seed", "1", "--anomalous", "--output-columns", "ccp4"]


def _merge(spots, out, steps=200, flags=()):
    main(["poly", "--iterations", str(steps), *TRAIN, *flags, "dHKL,Wavelength", *spots, str(out)])
    return rs.read_mtz(f"{out}_0.mtz")


@pytest.fixture(scope="module")
def wide(tmp_path_factory):
    """The wide-band pair (dark is the quality set), its joint poly merge and the dark set's oracle merges."""
    folder = tmp_path_factory.mktemp("wide")
    states = simulate_laue_states(change=StateChange(n_changed=8, shift=1.5, occupancy=1.0), band=(0.6, 1.3), **SIM)
    spots = [write_laue(state, str(folder / name))[0] for name, state in (("dark", states.dark),
                                                                             ("light", states.light))]
    poly = _merge(spots, folder / "poly", steps=PAIR_STEPS, flags=["--separate-files"])
    return {"data": states.dark, "states": states, "spots": spots, "folder": folder, "poly": poly,
            "oracle": laue_oracle_merge(states.dark), "single": laue_oracle_merge(states.dark, single_only=True)}


def _cc(merged, truth, index=None):
    return cc_f(merged if index is None else merged.loc[merged.index.intersection(index)], truth)


def test_simulated_wide_band_has_harmonic_spots(wide):
    multiple = (wide["data"].spots["n_harmonics"] > 1).mean()
    assert 0.01 < multiple < 0.1  # a few % of all spots, as in a 0.6-1.3 A band


def test_oracle_divides_out_the_corrections_and_deconvolves(wide):
    truth = wide["data"].truth
    single, n_single = _cc(wide["single"], truth)
    oracle, n_oracle = _cc(wide["oracle"], truth)
    assert single > 0.99 and oracle > 0.99  # every hidden correction known: only counting noise is left
    table = reflection_spots(wide["data"])
    peeled, n_peeled = _cc(wide["oracle"], truth, table.index[table["single"] == 0])
    assert n_oracle >= n_single + 40 and n_peeled >= 40 and peeled > 0.9  # harmonics peeled off shared spots


def test_poly_reaches_most_of_the_oracle(wide):
    truth, oracle_table = wide["data"].truth, wide["oracle"]
    (poly, n), (oracle, n_oracle) = _cc(wide["poly"], truth, oracle_table.index), _cc(oracle_table, truth)
    print(f"CC(F) poly {poly:.3f}, oracle {oracle:.3f}")
    assert n == n_oracle and poly >= 0.8 * oracle, (poly, oracle)


def test_reflections_recorded_only_as_harmonics_are_recovered(wide):
    truth, table = wide["data"].truth, reflection_spots(wide["data"])
    only = table[table["single"] == 0]
    alike = resolution_matched(only, table[table["single"] == table["spots"]])
    (poly, n), (singles, _) = _cc(wide["poly"], truth, only.index), _cc(wide["poly"], truth, alike)
    print(f"harmonic-only CC(F): poly {poly:.3f} ({n}); single spots alike {singles:.3f}")
    assert n == len(only) >= 100  # all estimated: a harmonic-blind merge has none of them
    assert poly > 0.5 and poly >= 0.6 * singles, (poly, singles)


def test_poly_merges_a_narrow_band(tmp_path):
    data = simulate_laue(band=(1.0, 1.2), **SIM)
    spots, _, _ = write_laue(data, str(tmp_path / "laue"))
    cc, n = cc_f(_merge([spots], tmp_path / "poly" / "m", steps=100), data.truth)
    print(f"CC(F) narrow {cc:.3f} ({n})")
    assert n > 500 and cc > 0.6, (cc, n)


def _signal(states, folder, name):
    """Difference map of ``<name>_1`` minus ``<name>_0``: mean height at the new places minus the old ones (σ)."""
    base = folder / name
    difference([f"{base}_1.mtz", f"{base}_0.mtz", f"{base}_diff.mtz", "--phases", str(folder / "dark_model.pdb"),
                "-n", "1"])
    old, new = states.positions()
    return float(np.mean(map_heights(f"{base}_diff.ccp4", new)) - np.mean(map_heights(f"{base}_diff.ccp4", old)))


def test_light_minus_dark_map_peaks_at_the_changed_atoms(wide, capsys):
    folder = wide["folder"]
    main(["poly", *TRAIN, "--naive", "--separate-files", "dHKL,Wavelength", *wide["spots"], str(folder / "naive")])
    poly, naive = _signal(wide["states"], folder, "poly"), _signal(wide["states"], folder, "naive")
    with capsys.disabled():
        print(f"difference-map signal at the changed atoms: poly {poly:.2f} sigma, naive {naive:.2f} sigma")
    assert poly > 3.0 and poly >= 1.5 * naive, (poly, naive)
