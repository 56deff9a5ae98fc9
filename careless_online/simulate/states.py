"""Two states of one crystal (dark and light) with the true differences kept.

The light state is the dark model with ``n_changed`` atoms of the
asymmetric unit (chosen at random, each with all its symmetry copies)
moved by ``shift`` Å in a random direction with occupancy ``occupancy``,
the rest of each such atom staying at its old place (occupancy
``1 - occupancy``): a partially occupied moved side chain.  Both states
are simulated with the same instrument; their images are independent
(the light images use the seed ``seed + 1``).  The truth of the difference
is ``DF = |F_light| - |F_dark|`` of the reflections without ``f''``.
"""

from dataclasses import dataclass

import gemmi
import numpy as np
import pandas as pd
import reciprocalspaceship as rs

from careless_online.errors import InputError
from careless_online.simulate import structure
from careless_online.simulate.api import SimulatedData, _check_n_images, _config, make_crystal, solvent_terms, write
from careless_online.simulate.images import ImageSimulator


@dataclass
class StateChange:
    """How the light state differs from the dark one.

    Attributes
    ----------
    n_changed : int
        Atoms of the asymmetric unit that move (>= 1).
    shift : float
        Distance (Å) they move (> 0).
    occupancy : float
        Fraction in (0, 1] at the new place.
    """

    n_changed: int = 3
    shift: float = 1.5
    occupancy: float = 0.6

    def validated(self):
        """This change, checked (InputError for a bad value)."""
        if int(self.n_changed) != self.n_changed or self.n_changed < 1:
            raise InputError(f"the number of changed atoms must be a whole number >= 1, got {self.n_changed}")
        if not self.shift > 0:
            raise InputError(f"the shift must be > 0 Å, got {self.shift}")
        if not 0 < self.occupancy <= 1:
            raise InputError(f"the occupancy must lie in (0, 1], got {self.occupancy}")
        return self


def changed_model(model, change, rng):
    """The light model and the fractional coordinates of the moved atoms' new places.

    Parameters
    ----------
    model : structure.AtomModel
        The dark model (all atoms of the cell, operation-major).
    change : StateChange
    rng : numpy.random.Generator

    Returns
    -------
    (structure.AtomModel, numpy.ndarray, numpy.ndarray)
        The light model, the ASU indices of the changed atoms and their new
        fractional positions ``[n_changed, 3]``.
    """
    n_ops = len(model.spacegroup.operations())
    n_asu = len(model.frac) // n_ops
    if change.n_changed > n_asu:
        raise InputError(f"cannot change {change.n_changed} atoms of a model with {n_asu}")
    chosen = np.sort(rng.choice(n_asu, size=change.n_changed, replace=False))
    direction = rng.standard_normal((change.n_changed, 3))
    direction *= change.shift / np.linalg.norm(direction, axis=1, keepdims=True)
    frac = model.frac[:n_asu]
    moved = frac[chosen] + direction @ np.array(model.cell.frac.mat.tolist()).T
    occ = model.occ[:n_asu].copy()
    occ[chosen] *= 1.0 - change.occupancy
    asu_frac = np.concatenate([frac, moved])
    asu_occ = np.concatenate([occ, model.occ[chosen] * change.occupancy])
    asu_elements = np.concatenate([model.elements[:n_asu], model.elements[chosen]])
    asu_b = np.concatenate([model.b[:n_asu], model.b[chosen]])
    light = structure.AtomModel(model.cell, model.spacegroup, structure.expand_to_cell(asu_frac, model.spacegroup),
                                np.tile(asu_elements, n_ops), np.tile(asu_b, n_ops), np.tile(asu_occ, n_ops))
    return light, chosen, moved % 1.0


def true_difference(dark, light):
    """``DF = F_light - F_dark`` (without ``f''``) of the dark truth's reflections, with both phases."""
    out = dark[["F", "PHI"]].rename(columns={"F": "F_DARK", "PHI": "PHI_DARK"})
    out["F_LIGHT"] = light["F"].reindex(out.index)
    out["PHI_LIGHT"] = light["PHI"].reindex(out.index)
    out["DF"] = rs.DataSeries(out["F_LIGHT"].to_numpy(float) - out["F_DARK"].to_numpy(float),
                              index=out.index, dtype="F")
    return out


def implied_r(difference, bins=10):
    """The double-Wilson ``r`` of the light state given the dark one that the truth implies.

    ``r = <Re(E_dark conj(E_light))>`` over the reflections, with
    ``E = F / sqrt(<|F|^2>_shell)`` normalized in equal-count resolution
    shells of each state.

    Parameters
    ----------
    difference : rs.DataSet
        As :func:`true_difference` returns.
    bins : int

    Returns
    -------
    float
    """
    groups = np.array_split(np.argsort(_inverse_d2(difference)), max(1, int(bins)))
    return float(np.mean(_normalized_products(difference, groups)))


def implied_r_per_shell(difference, n_shells, bins=10):
    """:func:`implied_r` in each of ``n_shells`` equal-count shells of ``1/d^2`` (lowest resolution first).

    The shells are cut as the model cuts its ``r`` shells
    (:func:`careless_online.distributions.double_wilson.resolution_shells`);
    ``E`` is normalized in ``bins // n_shells`` (at least one) equal-count
    parts of each shell, so that each shell's value is a mean of
    correlations (at most 1).

    Returns
    -------
    numpy.ndarray
        ``[n_shells]``.
    """
    shells = np.array_split(np.argsort(_inverse_d2(difference), kind="stable"), max(1, int(n_shells)))
    parts = max(1, int(bins) // len(shells))
    return np.array([np.mean(_normalized_products(difference, np.array_split(rows, parts))) for rows in shells])


def _inverse_d2(difference):
    return 1.0 / np.square(difference.compute_dHKL()["dHKL"].to_numpy())


def _normalized_products(difference, groups):
    """``Re(E_dark conj(E_light))`` of the reflections of ``groups`` (row arrays), ``E`` normalized in each group."""
    dark_all, light_all = _complex(difference, "DARK"), _complex(difference, "LIGHT")
    products = []
    for rows in groups:
        dark, light = dark_all[rows], light_all[rows]
        norm = np.sqrt(np.mean(np.abs(dark) ** 2) * np.mean(np.abs(light) ** 2))
        products.append(np.real(dark * np.conj(light)) / norm)
    return np.concatenate(products)


def _complex(difference, state):
    return difference[f"F_{state}"].to_numpy(float) * np.exp(1j * np.deg2rad(difference[f"PHI_{state}"].to_numpy(float)))


@dataclass
class States:
    """A dark and a light simulation and what tells them apart.

    Attributes
    ----------
    dark, light : SimulatedData
    difference : rs.DataSet
        ``F_DARK, PHI_DARK, F_LIGHT, PHI_LIGHT, DF`` per ASU reflection.
    changed : numpy.ndarray
        ASU indices of the changed atoms.
    moved : numpy.ndarray
        Fractional coordinates of their new places.
    change : StateChange
    """

    dark: SimulatedData
    light: SimulatedData
    difference: rs.DataSet
    changed: np.ndarray
    moved: np.ndarray
    change: StateChange


def _simulate_crystal(crystal, config, n_images):
    block = ImageSimulator(crystal.truth, config).block(0, int(n_images))
    return SimulatedData(block.observations(crystal.cell, crystal.spacegroup), crystal.truth,
                         block.image_table(), config, crystal.anomalous, crystal.model)


def light_state(dark_crystal, config, change):
    """The light crystal of a dark one: :func:`changed_model` with the seed's own generator, its truth.

    Parameters
    ----------
    dark_crystal : careless_online.simulate.api.Crystal
    config : careless_online.simulate.SimulationConfig
    change : StateChange

    Returns
    -------
    (Crystal, numpy.ndarray, numpy.ndarray)
        The light crystal, the changed atoms and their new fractional positions.
    """
    rng = np.random.default_rng([config.seed, 2 ** 32 - 2])
    light_model, chosen, moved = changed_model(dark_crystal.model, change, rng)
    light_truth = structure.truth_table(light_model, config.dmin, dark_crystal.anomalous,
                                         solvent_terms(config))
    return type(dark_crystal)(light_truth, config, dark_crystal.anomalous, light_model), chosen, moved


def simulate_states(n_images=100, seed=None, config=None, change=None, **params):
    """Simulate a dark and a light dataset of one crystal.

    Parameters
    ----------
    n_images : int
        Images of each state.
    seed : int, optional
    config : SimulationConfig, optional
    change : StateChange, optional
    **params
        :class:`~careless_online.simulate.SimulationConfig` fields.

    Returns
    -------
    States
    """
    config = _config(config, seed, params)
    _check_n_images(n_images)
    change = (change or StateChange()).validated()
    dark_crystal = make_crystal(config)
    light_crystal, chosen, moved = light_state(dark_crystal, config, change)
    dark = _simulate_crystal(dark_crystal, config, n_images)
    light = _simulate_crystal(light_crystal, config.replace(seed=config.seed + 1), n_images)
    return States(dark, light, true_difference(dark.truth, light.truth), chosen, moved, change)


def write_states(states, base, formats=("stream",)):
    """Write ``<base>_dark.*``, ``<base>_light.*`` and ``<base>_difference.csv``.

    The dark model (``<base>_dark_model.pdb``) is the one to phase the
    difference map with; ``<base>_changed.csv`` lists the changed atoms'
    old and new Cartesian positions (Å).

    Returns
    -------
    dict
        ``{"dark": paths, "light": paths, "difference": path, "changed": path}``.
    """
    paths = {"dark": write(states.dark, f"{base}_dark", formats),
             "light": write(states.light, f"{base}_light", formats)}
    paths["difference"] = f"{base}_difference.csv"
    states.difference.reset_index().to_csv(paths["difference"], index=False)
    paths["changed"] = f"{base}_changed.csv"
    _changed_table(states).to_csv(paths["changed"], index=False)
    return paths


def _changed_table(states):
    model, cell = states.dark.model, states.dark.cell
    rows = []
    for i, new in zip(states.changed, states.moved):
        old = cell.orthogonalize(_fractional(model.frac[i]))
        pos = cell.orthogonalize(_fractional(new))
        rows.append({"atom": int(i), "element": str(model.elements[i]), "x_old": old.x, "y_old": old.y,
                     "z_old": old.z, "x_new": pos.x, "y_new": pos.y, "z_new": pos.z})
    return pd.DataFrame(rows)


def _fractional(values):
    return gemmi.Fractional(*map(float, values))
