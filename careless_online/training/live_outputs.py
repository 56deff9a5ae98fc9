"""What a live merge writes after each round: one merged MTZ per dataset, and the report's inputs.

One dataset: ``<out>_0.mtz``.  Several datasets (``--separate-files``,
``--groups``, ``--groups-file``; :mod:`careless_online.io.live_groups`):
``<out>_<i>.mtz`` for dataset ``i``, careless's numbering, as offline.  Each
is replaced atomically (:func:`careless_online.io.writers.write_merged`), so the
current answer is always on disk; a dataset's file appears with the round
that first merges some of its images.
"""

from careless_online.io import writers
from careless_online.io.layout import DEFAULT_LAYOUT, check_layout
from careless_online.io.pipeline import ImageBatches, Standardizer
from careless_online.model.datasets import dataset_block
from careless_online.model.settings import output_counts
from careless_online.report.datasets import DatasetRound
from careless_online.training.merge import dataset_output_counts, output_path


def merged_paths(base, n_datasets):
    """``<base>_<i>.mtz`` of each dataset."""
    return [output_path(base, "merged", d) for d in range(int(n_datasets))]


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
    columns : str, optional
        Column layout of the files (:data:`careless_online.io.layout.LAYOUTS`).
    """

    def __init__(self, base, index, wavelength, names, columns=DEFAULT_LAYOUT):
        if len(names) < 1:
            raise ValueError("a merge has at least one dataset")
        self.index, self.wavelength, self.names = index, wavelength, list(names)
        self.columns = check_layout(columns)
        self.paths = merged_paths(base, len(names))

    def write(self, model, trainer, manifest, datasets, standardizer, batch_images, seed):
        """Write each dataset's merge; returns a :class:`~careless_online.report.datasets.DatasetRound` per dataset.

        Each round's ``images_converted`` is its ``images`` (the caller knows
        what else has been converted).

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
        all_counts = _merged_counts(model, manifest, datasets)
        images_of = [manifest.n_images] if datasets is None else datasets.image_counts().tolist()
        states = []
        for d, (name, counts, images) in enumerate(zip(self.names, all_counts, images_of)):
            keep = None if datasets is None else datasets.only(d)
            mean, std = (dataset_block(v, d, model.n_reflections) for v in (f_mean, f_std))
            merged = writers.merged_table(self.index, mean, std, counts)
            if len(merged):  # a dataset whose first images have not come yet has no file
                writers.write_merged(merged, self.paths[d], self.wavelength, self.columns)
            view = ImageBatches(manifest, standardizer, batch_images=max(batch_images, 32), split="all",
                                shuffle=False, seed=seed, image_filter=keep, datasets=datasets)
            states.append(DatasetRound(name, images, images, mean, std, counts, merged, _observations(trainer, view)))
        return states


def counts_by_dataset(manifest, datasets):
    """Observations of each reflection in each dataset, from one pass over the cache (list of ``[n_hkl]``)."""
    combined = ImageBatches(manifest, Standardizer.without_metadata(), split="all",
                            datasets=datasets).reflection_counts()
    n_hkl = manifest.info["index"]["n_reflections"]
    return [dataset_block(combined, d, n_hkl) for d in range(datasets.n)]


def _merged_counts(model, manifest, datasets):
    """Counts of each dataset's merged reflections, in the reference setting when the model chooses settings."""
    if datasets is None:
        return [output_counts(model, manifest)]
    if model.setting_choice is None:
        return counts_by_dataset(manifest, datasets)
    return [dataset_output_counts(model, manifest, datasets, d) for d in range(datasets.n)]


def _observations(trainer, view):
    """A function that yields every observation of ``view`` with the model's predicted intensity."""
    def batches():
        for number, batch in enumerate(view.epoch(0)):
            ipred, _, _ = trainer.predict(batch, number)
            yield {"refl_id": batch["refl_id"], "image_id": batch["image_id"], "I": batch["I"],
                   "SigI": batch["SigI"], "Ipred": ipred.numpy()}
    return batches
