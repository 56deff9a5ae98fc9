"""A dark/light Laue pair: ``poly --separate-files`` and ``careless_online.difference`` find the changed atoms.

The pair (:func:`careless_online.simulate.laue_states.simulate_laue_states`:
16 pink-beam images per state to 3 A in a 0.6-1.3 A band, 8 of 400 atoms
moved 1.5 A at full occupancy) is merged by one poly model over both files
and, as the baseline, by ``poly --naive --separate-files`` (per-image scales,
each harmonic row taken as its spot's intensity, no spectrum or Lorentz
model).  The signal of a difference map (σ) is its mean at the new places
minus its mean at the old places of the changed atoms.
"""

import numpy as np
import pytest

from careless_online.cli.difference import main as difference
from careless_online.cli.main import main
from careless_online.simulate.laue import write_laue
from careless_online.simulate.laue_states import map_heights, simulate_laue_states
from careless_online.simulate.states import StateChange

FLAGS = ["--separate-files", "--disable-progress-bar", "--no-predictions", "--seed", "1"]


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    folder = tmp_path_factory.mktemp("laue_pair")
    states = simulate_laue_states(change=StateChange(n_changed=8, shift=1.5, occupancy=1.0), n_images=16,
                                  dmin=3.0, band=(0.6, 1.3), seed=5)
    dark, _, _ = write_laue(states.dark, str(folder / "dark"))
    light, _, _ = write_laue(states.light, str(folder / "light"))
    return states, dark, light, folder


def _signal(states, folder, name):
    """Difference map of ``<name>_1`` minus ``<name>_0``: mean height at the new places minus the old ones."""
    base = folder / name
    difference([f"{base}_1.mtz", f"{base}_0.mtz", f"{base}_diff.mtz", "--phases", str(folder / "dark_model.pdb"),
                "-n", "1"])
    old, new = states.positions()
    return float(np.mean(map_heights(f"{base}_diff.ccp4", new)) - np.mean(map_heights(f"{base}_diff.ccp4", old)))


def test_light_minus_dark_map_peaks_at_the_changed_atoms(pair, capsys):
    states, dark, light, folder = pair
    main(["poly", *FLAGS, "--iterations", "200", "--batch-size", "8", "dHKL,Wavelength", dark, light,
          str(folder / "poly")])
    main(["poly", *FLAGS, "--naive", "dHKL,Wavelength", dark, light, str(folder / "naive")])
    poly, naive = _signal(states, folder, "poly"), _signal(states, folder, "naive")
    with capsys.disabled():
        print(f"difference-map signal at the changed atoms: poly {poly:.2f} sigma, naive {naive:.2f} sigma")
    assert poly > 3.0 and poly >= 1.5 * naive, (poly, naive)
