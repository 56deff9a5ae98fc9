r"""Isomorphous differences of a live merge with several datasets, followed over the run.

For a state dataset and its reference (e.g. light and dark), each drawing of
the live report computes

* the differences ``DF`` of the two merged tables on a common scale, with
  their q-weights (:func:`careless_online.stats.difference.difference_table`),
  and their size: the number of reflections in both and

  .. math::

      \mathrm{rms}\,\Delta F = \sqrt{\langle DF^2\rangle}, \qquad
      \mathrm{rms}\,\sigma_{\Delta F} = \sqrt{\langle SIGDF^2\rangle},

  whose ratio says whether the difference signal stands above its noise;
* with a model of the reference state, the weighted difference map ``WDF``
  with the model's phases (:func:`careless_online.stats.difference_map.difference_map`,
  in units of its standard deviation), its highest positive and deepest
  negative peaks with their nearest atoms, and the map height at *every*
  atom of the model (tricubic interpolation, cheap).

The heights at all atoms are kept for every drawing, so the atoms followed in
the figure — those with the largest ``|height|`` at the latest drawing, where
a moving group leaves its negative peak — can be shown over the whole run
even though they were only picked at the end.  Keeping them costs
``4 n_atoms`` bytes per drawing.

The phases depend only on the model and the reflections, so they are computed
once for every reflection of the index (:class:`ModelPhases`).
"""

import numpy as np
import pandas as pd
import reciprocalspaceship as rs

from careless_online.errors import DataError, InputError
from careless_online.report.shells import MIN_REFLECTIONS
from careless_online.stats.difference import difference_table
from careless_online.stats.difference_map import difference_map, difference_peaks
from careless_online.stats.maps import atom_peaks, model_phases

#: Peaks of each sign reported per difference map.
N_PEAKS = 5
#: Atoms followed in the figure and in ``status.json``.
N_FOLLOWED = 5


def model_atoms(structure):
    """The non-hydrogen atoms of a model's first model.

    Parameters
    ----------
    structure : gemmi.Structure

    Returns
    -------
    list of gemmi.CRA

    Raises
    ------
    InputError
        If the model has no such atom.
    """
    atoms = [cra for cra in structure[0].all() if not cra.atom.is_hydrogen()] if len(structure) else []
    if not atoms:
        raise InputError("the model (--model-pdb) has no atoms to follow difference peaks at")
    return atoms


class ModelPhases:
    """Phases of a model at the reflections of an index, computed on first use.

    Parameters
    ----------
    structure : gemmi.Structure
    index : careless_online.io.reflections.ReflectionIndex
    """

    def __init__(self, structure, index):
        self.structure = structure
        self.index = index
        self._phases = None

    def __call__(self, table):
        """Phases (degrees) at the rows of ``table`` (indexed by ASU H, K, L of the index)."""
        if self._phases is None:
            hkl = np.unique(self.index.hkl, axis=0)
            reflections = rs.DataSet({"H": hkl[:, 0], "K": hkl[:, 1], "L": hkl[:, 2]}, cell=self.index.cell,
                                     spacegroup=self.index.spacegroup, merged=True).set_index(["H", "K", "L"])
            self._phases = pd.Series(model_phases(self.structure, reflections), index=reflections.index)
        return self._phases.reindex(table.index).to_numpy(dtype=float)


class DifferenceFollower:
    """The differences of one state against its reference over the run.

    Parameters
    ----------
    dataset, reference : int
        Numbers of the state and reference datasets.
    structure : gemmi.Structure, optional
        Model of the reference state: without it only the size of the
        differences is followed.
    phases : ModelPhases, optional
        Shared phase cache (needed with ``structure``).
    n_peaks, n_followed : int
        Peaks of each sign reported; atoms followed.
    """

    def __init__(self, dataset, reference, structure=None, phases=None, n_peaks=N_PEAKS, n_followed=N_FOLLOWED):
        if structure is not None and phases is None:
            raise ValueError("a model needs its phase cache")
        if int(n_peaks) < 1 or int(n_followed) < 1:
            raise ValueError(f"n_peaks and n_followed must be at least 1, got {n_peaks}, {n_followed}")
        self.dataset, self.reference = int(dataset), int(reference)
        self.structure, self.phases = structure, phases
        self.n_peaks, self.n_followed = int(n_peaks), int(n_followed)
        self.atoms = model_atoms(structure) if structure is not None else []
        self.labels = []
        self.images = []
        self.heights = []
        self.extremes = []
        self.rms = []
        self.record = self._empty(0)

    def _empty(self, images):
        return {"dataset": self.dataset, "reference": self.reference, "images": int(images), "n_reflections": 0,
                "rms_df": float("nan"), "rms_sigdf": float("nan"), "scale": {}, "peaks": [], "atoms": []}

    def update(self, images, state, reference):
        """Compute the differences of a drawing and add them to the history.

        Parameters
        ----------
        images : int
            Images of the state merged so far.
        state, reference : reciprocalspaceship.DataSet
            The merged tables (``F``, ``SIGF``).

        Returns
        -------
        dict
            ``dataset``, ``reference``, ``images``, ``n_reflections``,
            ``rms_df``, ``rms_sigdf``, ``scale`` (``k``, ``B`` applied to the
            state) and, with a model, ``peaks`` (``peak``, ``height_sigma``,
            ``nearest_atom``, ``distance``) and ``atoms`` (``atom``,
            ``height_sigma`` of the followed atoms); empty lists without.
        """
        record = self._empty(images)
        try:
            table, scale = difference_table(state, reference)
        except DataError:  # no reflection in both yet
            table = None
        if table is not None and len(table) >= MIN_REFLECTIONS:
            df, sigdf = table["DF"].to_numpy(dtype=float), table["SIGDF"].to_numpy(dtype=float)
            record.update(n_reflections=len(table), rms_df=float(np.sqrt(np.mean(df**2))),
                          rms_sigdf=float(np.sqrt(np.mean(sigdf**2))), scale=scale)
            self.images.append(int(images))
            self.rms.append((record["rms_df"], record["rms_sigdf"]))
            if self.structure is not None:
                self._map(record, table)
        self.record = record
        return record

    def _map(self, record, table):
        """Add the map's peaks and heights to ``record`` and to the history."""
        phases = self.phases(table)
        known = np.isfinite(phases)
        grid = difference_map(table[known], phases[known], column="WDF")
        peaks = difference_peaks(grid, self.structure, n_peaks=self.n_peaks)
        at_atoms = atom_peaks(grid, self.atoms)
        self.labels = list(at_atoms["atom"])
        heights = at_atoms["height_sigma"].to_numpy(dtype=np.float32)
        self.heights.append(heights)
        self.extremes.append((float(peaks["height_sigma"].max()) if len(peaks) else float("nan"),
                              float(peaks["height_sigma"].min()) if len(peaks) else float("nan")))
        record["peaks"] = peaks[["peak", "height_sigma", "nearest_atom", "distance"]].to_dict("records")
        record["atoms"] = [{"atom": self.labels[i], "height_sigma": float(heights[i])} for i in self.followed()]

    def followed(self):
        """Indices of the atoms with the largest ``|height|`` at the latest map, largest first."""
        if not self.heights:
            return []
        latest = np.abs(self.heights[-1])
        return list(np.argsort(-latest, kind="stable")[: self.n_followed])

    def height_series(self):
        """{atom label: heights (σ) at every map} of the followed atoms, and the images of the maps.

        Returns
        -------
        (numpy.ndarray, dict)
        """
        images = np.array(self.images, dtype=float)  # with a model, every drawing with differences has a map
        stacked = np.array(self.heights, dtype=float).reshape(len(self.heights), len(self.labels))
        return images, {self.labels[i]: stacked[:, i] for i in self.followed()}

    def extreme_series(self):
        """(images, largest positive, largest negative peak height) of every map."""
        images, _ = self.height_series()
        values = np.array(self.extremes, dtype=float).reshape(len(self.extremes), 2)
        return images, values[:, 0], values[:, 1]

    def rms_series(self):
        """(images, rms DF, rms SIGDF) of every drawing with differences."""
        values = np.array(self.rms, dtype=float).reshape(len(self.rms), 2)
        return np.array(self.images, dtype=float), values[:, 0], values[:, 1]
