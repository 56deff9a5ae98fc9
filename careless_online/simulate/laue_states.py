"""A dark and a light Laue data set of one crystal (:mod:`careless_online.simulate.states` for pink beam).

The light crystal is the dark one with atoms moved
(:func:`~careless_online.simulate.states.light_state`); both are recorded
with the same beam and detector (:func:`~careless_online.simulate.laue.simulate_laue`),
the light images with the seed ``seed + 1``.
"""

from dataclasses import dataclass

import gemmi
import numpy as np

from careless_online.simulate.api import make_crystal
from careless_online.simulate.laue import LaueConfig, simulate_laue
from careless_online.simulate.states import StateChange, light_state


@dataclass
class LaueStates:
    """Dark and light :class:`~careless_online.simulate.laue.LaueData`, the changed atoms and their new places."""

    dark: object
    light: object
    changed: np.ndarray
    moved: np.ndarray

    def positions(self):
        """Cartesian (Å) ``(old, new)`` positions of the changed atoms, lists of ``gemmi.Position``."""
        model = self.dark.model
        old = [model.cell.orthogonalize(gemmi.Fractional(*map(float, model.frac[i]))) for i in self.changed]
        new = [model.cell.orthogonalize(gemmi.Fractional(*map(float, f))) for f in self.moved]
        return old, new


def simulate_laue_states(change=None, **params):
    """Simulate a dark and a light Laue set.

    Parameters
    ----------
    change : careless_online.simulate.states.StateChange, optional
    **params
        :class:`~careless_online.simulate.laue.LaueConfig` fields.

    Returns
    -------
    LaueStates
    """
    config = LaueConfig(**params)
    dark_crystal = make_crystal(config.crystal_config())
    light_crystal, chosen, moved = light_state(dark_crystal, config.crystal_config(),
                                               (change or StateChange()).validated())
    return LaueStates(simulate_laue(config, crystal=dark_crystal),
                      simulate_laue(config, crystal=light_crystal, seed=config.seed + 1), chosen, moved)


def map_heights(path, positions):
    """Values of a CCP4 map (e.g. ``careless_online.difference``'s, in σ) at Cartesian positions."""
    grid = gemmi.read_ccp4_map(str(path)).grid
    return np.array([grid.interpolate_value(p) for p in positions])
