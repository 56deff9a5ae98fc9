"""What a live merge writes after each round: one merged MTZ per dataset, and the report's inputs.

One dataset: ``<out>_0.mtz``.  Several datasets (``--separate-files``,
``--groups``, ``--groups-file``; :mod:`careless_online.io.live_groups`):
``<out>_<i>.mtz`` for dataset ``i``, careless's numbering, as offline.  Each
is replaced atomically (:func:`careless_online.io.writers.write_mtz`), so the
current answer is always on disk; a dataset's file appears with the round
that first merges some of its images.
"""

from dataclasses import dataclass

import numpy as np

from careless_online.io import writers
from careless_online.io.pipeline import ImageBatches
from careless_online.model.datasets import dataset_block
from careless_online.model.settings import output_counts
from careless_online.training.merge import dataset_output_counts


@dataclass
class DatasetState:
    """One dataset after a round (what the live report is drawn from).

    Attributes
    ----------
    name : str
    images : int
        Images of the dataset merged.
    f_mean, f_std : numpy.ndarray
        ``[n_hkl]`` posterior mean and standard deviation of ``F``.
    counts : numpy.ndarray
        ``[n_hkl]`` observations merged per reflection.
    merged : reciprocalspaceship.DataSet
        The merged table written.
    observations : callable
        Yields batches of the dataset's observations with the model's
        predicted intensity (``refl_id``, ``image_id``, ``I``, ``SigI``, ``Ipred``).
    """

    name: str
    images: int
    f_mean: np.ndarray
    f_std: np.ndarray
    counts: np.ndarray
    merged: object
    observations: object


def merged_paths(base, n_datasets):
    """``<base>_<i>.mtz`` of each dataset."""
    return [f"{base}_{d}.mtz" for d in range(int(n_datasets))]


class RoundWriter:
    """Writes every dataset's merged MTZ after a round.

    Parameters
    ----------
    base : str
        Output base (``<out>``).
    index : careless_online.io.reflections.ReflectionIndex
    wavelength : float or None
        Recorded in the MTZ files.
    names : list of str
        Dataset names (one entry: the usual one-dataset merge).
    """

    def __init__(self, base, index, wavelength, names):
        if len(names) < 1:
            raise ValueError("a merge has at least one dataset")
        self.index, self.wavelength, self.names = index, wavelength, list(names)
        self.paths = merged_paths(base, len(names))

    def write(self, model, trainer, manifest, datasets, standardizer, batch_images, seed):
        """Write each dataset's merge; returns a :class:`DatasetState` per dataset.

        Parameters
        ----------
        model : careless_online.model.MergingModel
        trainer : careless_online.training.loop.Trainer
            Predicts intensities for the report's half-dataset merges.
        manifest : careless_online.io.cache.Manifest
            The images merged.
        datasets : careless_online.io.groups.Datasets or None
            None: one dataset holding every image.
        standardizer : careless_online.io.pipeline.Standardizer
        batch_images : int
        seed : int
        """
        q = model.structure_factors
        f_mean, f_std = q.mean().numpy(), q.stddev().numpy()
        states = []
        for d, name in enumerate(self.names):
            keep = None if datasets is None else datasets.only(d)
            counts = output_counts(model, manifest) if datasets is None else dataset_output_counts(model, manifest,
                                                                                            datasets, d)
            mean, std = (dataset_block(v, d, model.n_reflections) for v in (f_mean, f_std))
            merged = writers.merged_table(self.index, mean, std, counts)
            if len(merged):  # a dataset whose first images have not come yet has no file
                writers.write_mtz(merged, self.paths[d], self.wavelength)
            images = manifest.n_images if datasets is None else int((datasets.of_image == d).sum())
            view = ImageBatches(manifest, standardizer, batch_images=max(batch_images, 32), split="all",
                                shuffle=False, seed=seed, image_filter=keep, datasets=datasets)
            states.append(DatasetState(name, images, mean, std, counts, merged, _observations(trainer, view)))
        return states


def _observations(trainer, view):
    """A function that yields every observation of ``view`` with the model's predicted intensity."""
    def batches():
        for number, batch in enumerate(view.epoch(0)):
            ipred, _, _ = trainer.predict(batch, number)
            yield {"refl_id": batch["refl_id"], "image_id": batch["image_id"], "I": batch["I"],
                   "SigI": batch["SigI"], "Ipred": ipred.numpy()}
    return batches
