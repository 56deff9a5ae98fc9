"""One merge job: files -> cache -> model -> trained posterior -> output files.

:func:`run_merge` is what ``careless_online mono`` runs for each group of
input files (all files jointly, or each alone with ``--separate-files``).
"""

import os
from dataclasses import dataclass, field

import numpy as np

from careless_online.errors import InputError
from careless_online.io import writers
from careless_online.io.cache import build_cache
from careless_online.io.pipeline import ImageBatches, Standardizer, is_test_image
from careless_online.model.build import load_model, model_index, new_model
from careless_online.model.naive import french_wilson, naive_merge
from careless_online.training.loop import Trainer, TrainConfig


@dataclass
class MergeSettings:
    """Everything a merge job needs besides its input files.

    Attributes
    ----------
    base : str
        Output prefix (``out/base``); files are ``<base>_<i>.mtz`` etc.
    metadata_keys : list of str
    table_options : careless_online.io.table.TableOptions
    train : TrainConfig
    model_options : dict
        Passed to :class:`~careless_online.model.MergingModel`.
    batch_images : int
    test_fraction : float
    seed : int
    standardize : bool
    half_datasets : bool
    half_repeats : int
    naive : bool
    resume : bool
    model_in : str or None
    cache_dir : str or None
    workers : int or None
        Processes parsing streams into the cache (None: the usable cores, at most 8).
    predictions : bool
    log : callable
    """

    base: str
    metadata_keys: list
    table_options: object
    train: TrainConfig = field(default_factory=TrainConfig)
    model_options: dict = field(default_factory=dict)
    batch_images: int = 8
    test_fraction: float = 0.1
    seed: int = 1234
    standardize: bool = True
    half_datasets: bool = False
    half_repeats: int = 1
    naive: bool = False
    resume: bool = False
    model_in: str = None
    cache_dir: str = None
    workers: int = None
    predictions: bool = True
    log: object = print


def half_filter(repeat, half, seed):
    """Image filter selecting one random half of the images for a repeat."""
    def select(image_ids):
        return is_test_image(image_ids, 0.5, seed + 7919 * (repeat + 1)) == bool(half)
    return select


def _posterior(model):
    q = model.structure_factors
    return q.mean().numpy(), q.stddev().numpy()


def _train_model(manifest, standardizer, settings, history_path, checkpoint_path, image_filter=None,
                 test_fraction=None, model=None):
    test_fraction = settings.test_fraction if test_fraction is None else test_fraction
    common = dict(batch_images=settings.batch_images, test_fraction=test_fraction, seed=settings.seed,
                  image_filter=image_filter)
    train = ImageBatches(manifest, standardizer, split="train", **common)
    if train.n_images == 0:
        raise InputError("no training images (check --test-fraction and the data)", manifest.files()[0])
    test = ImageBatches(manifest, standardizer, split="test", shuffle=False, **common) if test_fraction > 0 else None
    monitor = ImageBatches(manifest, standardizer, split="train", shuffle=False, **common)
    start_step, elapsed = 0, 0.0
    if model is None:
        if settings.resume and checkpoint_path and os.path.exists(checkpoint_path):
            model = load_model(checkpoint_path)
            state = _read_state(checkpoint_path)
            start_step, elapsed = state["step"], state.get("elapsed_s", 0.0)
            settings.log(f"resuming {checkpoint_path} at step {start_step}")
        elif settings.model_in:
            model = load_model(settings.model_in)
        else:
            model = new_model(manifest, standardizer, **settings.model_options)
    model.set_reflection_counts(train.reflection_counts())
    trainer = Trainer(model, train, test, settings.train, history_path, checkpoint_path, monitor=monitor,
                      seed=settings.seed)
    trainer.run(start_step=start_step, elapsed=elapsed)
    return model, trainer


def _read_state(checkpoint_path):
    import json

    try:
        with open(checkpoint_path + ".json") as handle:
            return json.load(handle)
    except (OSError, ValueError) as err:
        raise InputError(f"checkpoint state unreadable ({type(err).__name__})", checkpoint_path + ".json") from None


def _predictions(trainer, manifest, standardizer, settings):
    """Predicted intensities of every observation, batch by batch (a generator of column dicts)."""
    batches = ImageBatches(manifest, standardizer, batch_images=max(settings.batch_images, 32),
                           split="all", shuffle=False, seed=settings.seed)
    for number, batch in enumerate(batches.epoch(0)):
        ipred, sigipred, _ = trainer.predict(batch, number)
        yield {
            "refl_id": batch["refl_id"], "image_id": batch["image_id"], "file_id": batch["file_id"],
            "test": is_test_image(batch["image_id"], settings.test_fraction, settings.seed),
            "Iobs": batch["I"], "SigIobs": batch["SigI"], "Ipred": ipred.numpy(), "SigIpred": sigipred.numpy(),
        }


def _standardizer(manifest, settings, model_path):
    if model_path and os.path.exists(model_path):
        model = load_model(model_path)
        standardizer = Standardizer.from_config(model.standardizer_config)
        if standardizer.keys != list(settings.metadata_keys):
            raise InputError(
                f"the model was trained with metadata keys {','.join(standardizer.keys)}, "
                f"not {','.join(settings.metadata_keys)}", model_path)
        return standardizer
    return Standardizer.fit(manifest, settings.metadata_keys, settings.standardize)


def run_merge(files, settings, output_id=0):
    """Merge ``files`` jointly and write all outputs with number ``output_id``.

    Parameters
    ----------
    files : list of str
    settings : MergeSettings
    output_id : int

    Returns
    -------
    dict
        Paths written, keyed by kind (``merged``, ``predictions``, ``history``,
        ``model``, ``xval``).
    """
    base = settings.base
    outdir = os.path.dirname(os.path.abspath(base))
    os.makedirs(outdir, exist_ok=True)
    cache_dir = settings.cache_dir or os.path.join(outdir, ".careless_online_cache")
    checkpoint = f"{base}_{output_id}.keras"
    index = None
    if settings.model_in:
        index = model_index(load_model(settings.model_in))
    elif settings.resume and os.path.exists(checkpoint):
        index = model_index(load_model(checkpoint))
    manifest = build_cache(files, settings.table_options, cache_dir, index=index, log=settings.log,
                           workers=settings.workers)
    settings.log(f"{manifest.n_images} images, {manifest.n_obs} observations, "
                 f"{len(manifest.index)} unique reflections to {manifest.index.dmin:.2f} A")
    index = manifest.index
    counts = manifest.counts()
    written = {}
    history = f"{base}_history.csv" if output_id == 0 else f"{base}_history_{output_id}.csv"
    if settings.naive:
        batches = ImageBatches(manifest, Standardizer([], [], []), split="all", shuffle=False)
        intensity, sigma, _ = naive_merge(batches, len(index), manifest.n_images)
        f, sigf = french_wilson(index, intensity, sigma)
        written["merged"] = writers.write_mtz(writers.merged_table(index, f, sigf, counts), f"{base}_{output_id}.mtz")
        return written
    model_source = settings.model_in if settings.model_in else (checkpoint if settings.resume else None)
    standardizer = _standardizer(manifest, settings, model_source)
    model, trainer = _train_model(manifest, standardizer, settings, history, checkpoint)
    f, sigf = _posterior(model)
    written["merged"] = writers.write_mtz(writers.merged_table(index, f, sigf, counts), f"{base}_{output_id}.mtz")
    written["history"] = history
    written["model"] = checkpoint
    if settings.predictions:
        written["predictions"] = writers.write_predictions(
            index, manifest.n_obs, _predictions(trainer, manifest, standardizer, settings),
            f"{base}_predictions_{output_id}.mtz")
    if settings.half_datasets:
        tables = []
        for repeat in range(settings.half_repeats):
            for half in (0, 1):
                settings.log(f"half-dataset merge: repeat {repeat}, half {half}")
                image_filter = half_filter(repeat, half, settings.seed)
                sub = ImageBatches(manifest, standardizer, split="all", image_filter=image_filter)
                half_counts = sub.reflection_counts()
                half_model, _ = _train_model(manifest, standardizer, _quiet(settings), None, None,
                                             image_filter=image_filter, test_fraction=0.0)
                hf, hsig = _posterior(half_model)
                tables.append((repeat, half, writers.merged_table(index, hf, hsig, half_counts)))
        written["xval"] = writers.write_mtz(writers.xval_table(tables), f"{base}_xval_{output_id}.mtz")
    return written


def _quiet(settings):
    from dataclasses import replace

    return replace(settings, resume=False, model_in=None)
