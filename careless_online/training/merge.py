"""One merge job: files -> cache -> model -> trained posterior -> output files.

:func:`run_merge` is what ``careless_online mono`` runs.  With groups
(``--separate-files``, ``--groups``, ``--groups-file``) one model is trained
on all images with one posterior over F per dataset, and the per-dataset
outputs are numbered ``<base>_<d>.mtz``, ``<base>_predictions_<d>.mtz``,
``<base>_xval_<d>.mtz`` (the model and history are the run's, one each).
Per-dataset files an earlier run left under the same prefix that this run
does not rewrite are removed once its outputs are written
(:mod:`careless_online.training.stale`), so the files of a prefix are one
run's.
"""

import math
import os
from dataclasses import dataclass, field, replace
from functools import partial

import gemmi
import numpy as np

from careless_online.ambiguity.operators import candidate_operators
from careless_online.errors import InputError
from careless_online.io import writers
from careless_online.io.cache import build_cache
from careless_online.io.cache_location import default_cache_dir
from careless_online.io.groups import GroupSpec, assign as assign_datasets
from careless_online.io.identity import input_contents
from careless_online.io.layout import DEFAULT_LAYOUT, check_layout
from careless_online.io.wavelength import input_wavelength
from careless_online.io.pipeline import ImageBatches, Standardizer, is_test_image, training_views
from careless_online.io.laue import prediction_columns
from careless_online.model.build import load_model, model_index, new_model
from careless_online.model.reference import StartingPoint, prepare
from careless_online.model.datasets import dataset_block
from careless_online.model.naive import french_wilson, naive_merge
from careless_online.ambiguity.outputs import SETTING_COLUMNS, history_line
from careless_online.model.settings import (check_model_operators, reference_counts, to_majority_setting,
                                            with_setting_columns)
from careless_online.training.calibration import calibrated, sigf_factors
from careless_online.training.checkpoint import folder as checkpoint_folder, latest as latest_checkpoint, write_model
from careless_online.training.distribute import (WORKER_TIMEOUT, cache_share, is_chief, trainer_class,
                                                 variable_scope, worker_settings)
from careless_online.training import resume, run_config
from careless_online.training.loop import TrainConfig
from careless_online.training.data_range import warn_batch_above_images, warn_dmin_beyond_data
from careless_online.training.stale import remove_stale_outputs


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
        Its ``steps`` are replaced by :func:`epoch_steps` when ``epochs`` is given.
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
    epochs : float or None
        Passes over the training images instead of ``train.steps``.
    strategy : tf.distribute.Strategy or None
        Data-parallel training (:mod:`careless_online.training.distribute`;
        models are built under its scope); None: one device.  Only the chief
        writes outputs.
    worker_timeout : float
        Multi-worker: seconds a worker waits for the others (``--worker-timeout``).
    groups : careless_online.io.groups.GroupSpec
        How images form datasets (default: one dataset).
    calibrate_sigf : bool
        Widen SIGF by the error model fitted to the observations' scatter
        after training (:mod:`careless_online.model.sigf_calibration`).
    start : careless_online.model.reference.StartingPoint
        Structure-factor and scale files to start from, parts to freeze.
    stop : careless_online.training.interrupt.SignalStop or None
        Where training looks for SIGINT/SIGTERM after every step.
    output_columns : str
        Column layout of the merged and half-dataset files,
        :data:`careless_online.io.layout.LAYOUTS` (careless's by default).
    inspect : callable or None
        Called once the outputs are written with a dict of the run's objects
        (``model``, ``trainer``, ``manifest``, ``settings``, ``written``),
        by the chief only: ``--embed``'s shell.
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
    epochs: float = None
    strategy: object = None
    worker_timeout: float = WORKER_TIMEOUT
    groups: GroupSpec = field(default_factory=GroupSpec)
    calibrate_sigf: bool = True
    start: StartingPoint = field(default_factory=StartingPoint)
    stop: object = None
    output_columns: str = DEFAULT_LAYOUT
    inspect: object = None

    def __post_init__(self):
        check_layout(self.output_columns)


def half_filter(repeat, half, seed):
    """Image filter selecting one random half of the images for a repeat."""
    def select(image_ids):
        return is_test_image(image_ids, 0.5, seed + 7919 * (repeat + 1)) == bool(half)
    return select


def _posterior(model, dataset=0):
    """``F``, ``SIGF``, ``I``, ``SIGI`` of every reflection of a dataset (exact truncated-normal moments)."""
    moments = writers.posterior_moments(model.structure_factors.distribution())
    return {k: dataset_block(v, dataset, model.n_reflections) for k, v in moments.items()}


def dataset_filter(datasets, dataset):
    """Image filter of one dataset, or None when it holds every image (the usual one-dataset merge)."""
    if datasets.n == 1 and (datasets.of_image >= 0).all():
        return None
    return datasets.only(dataset)


def dataset_counts(manifest, datasets, dataset, image_filter=None):
    """Observations of each unique reflection in one dataset (and in the images ``image_filter`` keeps)."""
    keep = dataset_filter(datasets, dataset)
    if keep is None and image_filter is None:
        return manifest.counts()
    both = _both(keep, image_filter)
    return ImageBatches(manifest, Standardizer.without_metadata(), split="all", image_filter=both).reflection_counts()


def _both(first, second):
    """An image filter keeping what both filters (None: all images) keep."""
    if first is None or second is None:
        return second if first is None else first
    return lambda image_ids: first(image_ids) & second(image_ids)


def check_coupling(model_options, datasets, source=None):
    """Refuse ``--double-wilson-parents``/``-r`` that do not name one entry per dataset."""
    parents = model_options.get("double_wilson_parents")
    if parents is None:
        return
    r = model_options.get("double_wilson_r")
    for flag, values in (("--double-wilson-parents", parents), ("--double-wilson-r", r)):
        if isinstance(values, (list, tuple)) and len(values) != datasets.n:
            raise InputError(f"{flag} names {len(values)} datasets, the images form {datasets.n} "
                             f"({datasets.describe()})", source)


def _merged(index, moments, counts):
    return writers.merged_table(index, moments["F"], moments["SIGF"], counts, moments["I"], moments["SIGI"])


def log_reindexing_operators(index, spec, log):
    """Name the indexing settings the model chooses each image's among, and why (docs/ambiguity.md).

    When the merge takes every image as indexed (``spec`` ``none``, or the
    naive merge) although the lattice allows other settings, a warning.

    Parameters
    ----------
    index : careless_online.io.reflections.ReflectionIndex
    spec : str
        The ``--reindexing-ops`` value.
    log : callable

    Returns
    -------
    careless_online.ambiguity.operators.ReindexingOperators
    """
    operators = candidate_operators(spec, index.cell, index.spacegroup)
    if len(operators) > 1:
        log(f"indexing settings {'; '.join(operators.triplets)}: the model chooses each image's ({operators.reason})")
        return operators
    lattice = candidate_operators("auto", index.cell, index.spacegroup)
    if len(lattice) > 1:
        log(f"WARNING the lattice allows {len(lattice)} indexing settings ({lattice.reason}); this merge takes "
            "every image as indexed, which is right only for consistently indexed data; see docs/ambiguity.md")
    return operators


def reindexing_spec(settings):
    """The ``--reindexing-ops`` value of a merge (``model_options["reindexing_ops"]``, default ``auto``)."""
    return settings.model_options.get("reindexing_ops", "auto")


def dataset_output_counts(model, manifest, datasets, dataset, image_filter=None):
    """Observations of each reflection of a dataset, in the reference setting when the model chooses settings."""
    if model.setting_choice is None:
        return dataset_counts(manifest, datasets, dataset, image_filter=image_filter)
    keep = _both(dataset_filter(datasets, dataset), image_filter)
    return reference_counts(model, ImageBatches(manifest, Standardizer.without_metadata(), batch_images=64, split="all",
                                                shuffle=False, image_filter=keep))


def _to_majority_setting(model, manifest, path, log):
    """Write the merge in the setting most images chose (:func:`~careless_online.model.settings.to_majority_setting`).

    The output model ``path`` is written again, relabelled (the checkpoint
    unit keeps the state of training).
    """
    if model.setting_choice is None:
        return
    moved = to_majority_setting(model, ImageBatches(manifest, Standardizer.without_metadata(), batch_images=64,
                                                    split="all", shuffle=False))
    if moved:
        log(f"most images chose the setting {model.reindexing_ops[moved]} of the reference: the merge is relabelled "
            "by it, so that it is written in the setting most images were indexed in")
        write_model(model, path)


def log_learned_r(model, log):
    """Say the double-Wilson correlations learned by empirical Bayes (``--optimize-double-wilson-r``), per shell."""
    coupling = model.coupling
    if coupling is None or not coupling.learn_r:
        return
    table = coupling.r_per_shell().numpy()
    for child, parent in enumerate(coupling.parents):
        if parent >= 0:
            shells = "" if table.shape[1] == 1 else " (shells, low to high resolution: " + \
                ", ".join(f"{r:.3f}" for r in table[child]) + ")"
            log(f"learned double-Wilson r of dataset {child} with its parent {parent}: "
                f"{float(table[child].mean()):.3f}{shells}")


def _prediction_extras(model, manifest):
    """Further columns and history of the predictions file.

    The chosen indexing setting of each image; for Laue data each row's
    spot, harmonic order and wavelength (:func:`careless_online.io.laue.prediction_columns`).
    """
    laue = prediction_columns(manifest.info["options"])
    if model.setting_choice is None:
        return {"extra_types": laue} if laue else {}
    return {"extra_types": {**SETTING_COLUMNS, **laue}, "history": [history_line(model.reindexing_ops)]}


def epoch_steps(epochs, n_images, batch_images):
    """Gradient steps of ``epochs`` passes over ``n_images`` training images, ``batch_images`` per step.

    ``steps = ceil(epochs * n_images / batch_images)``, at least 1.
    """
    return max(1, math.ceil(float(epochs) * int(n_images) / int(batch_images)))


def _train_model(manifest, standardizer, settings, history_path, checkpoint_path, datasets, image_filter=None,
                 test_fraction=None, model=None, start=(0, 0.0, 0, None), reference=None):
    """Train ``model`` (a new one if None) from ``start`` = (step, elapsed seconds, skipped steps, pending sums).

    ``reference``: a setting choice whose reference a new model starts from
    (half-dataset merges choose in the full merge's reference setting).
    """
    test_fraction = settings.test_fraction if test_fraction is None else test_fraction
    train, test, monitor = training_views(manifest, standardizer, settings.batch_images, test_fraction,
                                          settings.seed, image_filter, datasets)
    if train.n_images == 0:
        raise InputError("no training images (check --test-fraction and the data)", manifest.files()[0])
    if image_filter is None:
        warn_batch_above_images(settings.batch_images, train.n_images, settings.log)
    if model is None:
        with variable_scope(settings.strategy):
            model = new_model(manifest, standardizer, n_datasets=datasets.n, **settings.model_options)
        if reference is not None and model.setting_choice is not None:
            model.setting_choice.start_from(reference)
    prepare(model, manifest.index, settings.start, new=start[0] == 0, log=settings.log)
    model.set_reflection_counts(train.reflection_counts())
    config = settings.train
    if settings.epochs is not None:
        config = replace(config, steps=epoch_steps(settings.epochs, train.n_images, settings.batch_images))
    trainer = trainer_class(settings.strategy, settings.worker_timeout, settings.log)(
        model, train, test, config, history_path, checkpoint_path, monitor=monitor, seed=settings.seed,
        log=settings.log, run_record=run_config.record(settings) if checkpoint_path else None, stop=settings.stop)
    trainer.run(start_step=start[0], elapsed=start[1], skipped_steps=start[2], pending=start[3])
    return model, trainer


#: Where a run starts when nothing is restored: (step, elapsed seconds, skipped steps, pending loss sums).
_FRESH = (0, 0.0, 0, None)


def _initial_model(settings, checkpoint_path):
    """The model a run starts from, loaded once.

    Returns ``(model or None, (step, elapsed, skipped, pending), source path, inputs)``,
    ``inputs`` being what a resumed checkpoint recorded of its input files
    (None unless resuming).

    ``--resume`` with an existing checkpoint continues it, after comparing
    the command with the configuration the checkpoint recorded
    (:mod:`careless_online.training.run_config`); with no checkpoint yet (a
    run killed before its first one, a requeued job) it starts from step 0
    (:func:`careless_online.training.resume.nothing_to_resume`).  Without
    ``--resume``, a checkpoint of an unfinished run is never overwritten
    (:func:`careless_online.training.resume.refuse_to_start_over`).
    ``--model-in`` starts from a trained model at step 0; otherwise a new
    model is built later (None).
    """
    folder = checkpoint_folder(checkpoint_path)
    if settings.resume:
        unit = latest_checkpoint(folder)
        if unit is None:
            resume.nothing_to_resume(folder, checkpoint_path, settings.log)
            return _start_without_checkpoint(settings)
        run_config.compare(unit.state.get("run"), run_config.record(settings), unit.path, settings.log)
        model = load_model(unit.model_path, restore_optimizer=True)
        settings.log(f"resuming {unit.path} at step {unit.step}")
        state = unit.state
        start = (unit.step, state.get("elapsed_s", 0.0), state.get("skipped_steps", 0), state.get("pending"))
        return model, start, unit.model_path, state.get("inputs")
    resume.refuse_to_start_over(latest_checkpoint(folder))
    return _start_without_checkpoint(settings)


def _start_without_checkpoint(settings):
    """A run from step 0: from the ``--model-in`` model (the flags it overrides said), or a new model (None)."""
    if not settings.model_in:
        return None, _FRESH, None, None
    model = load_model(settings.model_in)
    overridden = run_config.model_in_differences(model, settings.model_options, settings.table_options)
    if overridden:
        settings.log(f"--model-in: taken from the model, not from the command: {'; '.join(overridden)}")
    return model, _FRESH, settings.model_in, None


def _check_model_fits(model, source, saved_inputs, manifest, settings, datasets):
    """Refuse a ``--model-in`` model of another space group or number of datasets, and ``--resume`` on changed inputs.

    ``saved_inputs`` are the inputs a resumed checkpoint recorded (None otherwise).
    """
    if model is None:
        return
    if model.n_datasets != datasets.n:
        raise InputError(f"the model merges {model.n_datasets} dataset(s), the images form {datasets.n}", source)
    wanted = settings.table_options.spacegroup
    trained = model_index(model).spacegroup
    if wanted and gemmi.SpaceGroup(wanted).xhm() != trained.xhm():
        raise InputError(f"the model was trained in space group {trained.xhm()}, not {wanted}", source)
    check_model_operators(model.reindexing_ops, reindexing_spec(settings), manifest.index, source)
    current = input_contents(manifest)
    if saved_inputs is not None and current is not None and saved_inputs != current:
            raise InputError("--resume: the input files changed since this checkpoint was written "
                             "(start a new run, or start from its model with --model-in)", source)


#: Observed Miller indices, kept in the cache beside the ASU index.
OBSERVED = ["Hobs", "Kobs", "Lobs"]


class _RowsInFileOrder:
    """The cache's rows in file order, handed out in consecutive pieces (one shard in memory at a time).

    With ``image_filter``, only the rows of the images it keeps.
    """

    def __init__(self, manifest, columns, image_filter=None):
        self.shards = (_kept_rows(manifest.load_shard(i, [*columns, "image_id"]), columns, image_filter)
                       for i in range(len(manifest.shards)))
        self.pending = []

    def take(self, n):
        """The next ``n`` rows, as a dict of arrays."""
        pieces, have = [], 0
        while have < n:
            chunk = self.pending.pop(0) if self.pending else next(self.shards)
            need = n - have
            first = {k: v[:need] for k, v in chunk.items()}
            rest = {k: v[need:] for k, v in chunk.items()}
            if len(next(iter(rest.values()))):
                self.pending.insert(0, rest)
            pieces.append(first)
            have += len(next(iter(first.values())))
        return {k: np.concatenate([p[k] for p in pieces]) for k in pieces[0]}


def _kept_rows(part, columns, image_filter):
    keep = slice(None) if image_filter is None else image_filter(part["image_id"])
    return {k: part[k][keep] for k in columns}


def _predictions(trainer, manifest, standardizer, settings, datasets, image_filter=None):
    """Predicted intensities of every observation, batch by batch (a generator of column dicts).

    The batches serve every image (that ``image_filter`` keeps) in file
    order, so the observed indices are read from the cache alongside them
    (and checked to be the same rows).
    """
    batches = ImageBatches(manifest, standardizer, batch_images=max(settings.batch_images, 32),
                           split="all", shuffle=False, seed=settings.seed, image_filter=image_filter,
                           datasets=datasets)
    rows = _RowsInFileOrder(manifest, ["refl_id", *OBSERVED, *prediction_columns(manifest.info["options"])],
                            image_filter)
    for number, batch in enumerate(batches.epoch(0)):
        ipred, sigipred, _ = trainer.predict(batch, number)
        observed = rows.take(len(batch["refl_id"]))
        if not np.array_equal(observed.pop("refl_id"), batch["refl_id"]):
            raise RuntimeError("prediction batches are not in the cache's row order")
        yield with_setting_columns(trainer.model, batch, {
            "refl_id": batch["refl_id"], "image_id": batch["image_id"], "file_id": batch["file_id"],
            "test": is_test_image(batch["image_id"], settings.test_fraction, settings.seed),
            "Iobs": batch["I"], "SigIobs": batch["SigI"], "Ipred": ipred.numpy(), "SigIpred": sigipred.numpy(),
            **observed,
        })


def _standardizer(manifest, settings, model, model_path):
    """The metadata standardizer: the loaded model's, or fitted to the data."""
    if model is not None:
        standardizer = Standardizer.from_config(model.standardizer_config)
        if standardizer.keys != list(settings.metadata_keys):
            raise InputError(
                f"the model was trained with metadata keys {','.join(standardizer.keys)}, "
                f"not {','.join(settings.metadata_keys)}", model_path)
        return standardizer
    return Standardizer.fit(manifest, settings.metadata_keys, settings.standardize)


def run_merge(files, settings, output_id=0):
    """Merge ``files`` jointly and write all outputs, numbered from ``output_id`` (then remove stale ones).

    Parameters
    ----------
    files : list of str
    settings : MergeSettings
    output_id : int
        Number of the first dataset's outputs (dataset ``d`` writes ``output_id + d``).

    Returns
    -------
    dict
        Paths written, keyed by kind (``merged``, ``predictions``, ``history``,
        ``model``, ``xval``); with several datasets the per-dataset kinds are
        numbered (``merged_0``, ``merged_1``, ...).
    """
    settings = worker_settings(settings)
    base = settings.base
    outdir = os.path.dirname(os.path.abspath(base))
    os.makedirs(outdir, exist_ok=True)
    cache_dir = default_cache_dir(base, settings.cache_dir)
    checkpoint = f"{base}_{output_id}.keras"
    with variable_scope(settings.strategy):
        loaded, start, source, saved_inputs = \
            (None, _FRESH, None, None) if settings.naive else _initial_model(settings, checkpoint)
    index = model_index(loaded) if loaded is not None else None
    manifest = build_cache(files, settings.table_options, cache_dir, index=index, log=settings.log,
                           workers=settings.workers, progress=settings.train.progress,
                           share=cache_share(settings.strategy, settings.worker_timeout))
    _describe_data(manifest, settings)
    datasets = assign_datasets(manifest, settings.groups, settings.log)
    check_coupling(settings.model_options, datasets)
    _check_model_fits(loaded, source, saved_inputs, manifest, settings, datasets)
    wavelength = input_wavelength(files)
    outputs = _DatasetOutputs(base, output_id, datasets)
    if settings.naive:
        return _run_naive(manifest, settings, outputs, wavelength)
    index = manifest.index
    standardizer = _standardizer(manifest, settings, loaded, source)
    model, trainer = _train_model(manifest, standardizer, settings, outputs.history, checkpoint, datasets,
                                  model=loaded, start=start)
    _to_majority_setting(model, manifest, checkpoint, settings.log)
    log_learned_r(model, settings.log)
    written = {"history": outputs.history, "model": checkpoint}
    # one device only: a pass of predictions outside training is not a step the cluster's workers share
    factors = (sigf_factors(trainer, manifest, standardizer, settings, datasets, settings.log)
               if settings.calibrate_sigf else None)
    for d in range(datasets.n):
        counts = dataset_output_counts(model, manifest, datasets, d)
        moments = _posterior(model, d)
        if factors is not None:
            moments = calibrated(moments, dataset_block(factors, d, model.n_reflections))
        written[outputs.key("merged", d)] = writers.write_merged(
            _merged(index, moments, counts), outputs.path("merged", d), wavelength, settings.output_columns)
        if settings.predictions:
            written[outputs.key("predictions", d)] = writers.write_predictions(
                index, int(counts.sum()),
                _predictions(trainer, manifest, standardizer, settings, datasets, dataset_filter(datasets, d)),
                outputs.path("predictions", d), wavelength, asu_id=d, **_prediction_extras(model, manifest))
    if settings.half_datasets:
        merge_half = partial(_model_half, manifest, standardizer, settings, datasets, reference=model.setting_choice)
        written.update(_write_halves(settings, merge_half, outputs, wavelength))
    remove_stale_outputs(base, written.values(), settings.log)
    if settings.inspect is not None and (settings.strategy is None or is_chief(settings.strategy)):
        settings.inspect({"model": model, "trainer": trainer, "manifest": manifest, "settings": settings,
                          "written": written})
    return written


def _describe_data(manifest, settings):
    """Log what was read, a ``--dmin`` beyond the data, and the indexing settings the merge chooses among."""
    settings.log(f"{manifest.n_observed_images} images, {manifest.n_obs} observations, "
                 f"{len(manifest.index)} unique reflections to {manifest.index.dmin:.2f} A")
    warn_dmin_beyond_data(manifest, settings.table_options.dmin, settings.log)
    log_reindexing_operators(manifest.index, "none" if settings.naive else reindexing_spec(settings), settings.log)


#: File name of each per-dataset output (careless's numbering).
OUTPUT_FORMS = {"merged": "{base}_{i}.mtz", "predictions": "{base}_predictions_{i}.mtz",
                "xval": "{base}_xval_{i}.mtz"}


def output_path(base, kind, number):
    """Path of output ``kind`` (a key of :data:`OUTPUT_FORMS`) of dataset ``number`` of a run writing ``<base>_*``."""
    return OUTPUT_FORMS[kind].format(base=base, i=int(number))


class _DatasetOutputs:
    """Output paths of a run: per dataset ``<base>_<kind>_<i>.mtz`` (careless's numbering), one history."""

    def __init__(self, base, first, datasets):
        self.base, self.first, self.datasets = base, int(first), datasets
        self.history = f"{base}_history.csv" if self.first == 0 else f"{base}_history_{self.first}.csv"

    def path(self, kind, dataset):
        """Path of a per-dataset output."""
        return output_path(self.base, kind, self.first + int(dataset))

    def key(self, kind, dataset):
        """Key of a per-dataset output in the ``written`` dict (the plain kind for one dataset)."""
        return kind if self.datasets.n == 1 else f"{kind}_{self.first + int(dataset)}"


def _model_half(manifest, standardizer, settings, datasets, image_filter, reference=None):
    """The merged table of each dataset of a model trained on the images ``image_filter`` keeps.

    ``reference``: the full merge's setting choice (the half starts from its reference).
    """
    half_model, _ = _train_model(manifest, standardizer, _half_settings(settings), None, None, datasets,
                                 image_filter=image_filter, test_fraction=0.0, reference=reference)
    return [_merged(manifest.index, _posterior(half_model, d),
                    dataset_output_counts(half_model, manifest, datasets, d, image_filter=image_filter))
            for d in range(datasets.n)]


def _write_halves(settings, merge_half, outputs, wavelength):
    """Run each half-dataset merge (logged as it starts) and write each dataset's halves to its xval file.

    ``merge_half(image_filter)`` gives the merged table of each dataset of the images the filter keeps.
    """
    tables = []
    for repeat in range(settings.half_repeats):
        for half in (0, 1):
            settings.log(f"half-dataset merge: repeat {repeat}, half {half}")
            tables.append((repeat, half, merge_half(half_filter(repeat, half, settings.seed))))
    return {outputs.key("xval", d): writers.write_merged(writers.xval_table([(r, h, t[d]) for r, h, t in tables]),
                                                         outputs.path("xval", d), wavelength, settings.output_columns)
            for d in range(outputs.datasets.n)}


def _run_naive(manifest, settings, outputs, wavelength):
    """The ``--naive`` job: the baseline merge, its predictions and its half-dataset merges, per dataset.

    The metadata keys are checked against the data (a typo is an error) but
    the naive model uses none.  Each dataset is merged on its own.  Outputs
    an earlier run left under the prefix and this one did not rewrite are
    removed, as after a trained merge.
    """
    Standardizer.fit(manifest, settings.metadata_keys, False)
    index = manifest.index
    datasets = outputs.datasets
    written = {}
    for d in range(datasets.n):
        keep = dataset_filter(datasets, d)
        batches = ImageBatches(manifest, Standardizer.without_metadata(), split="all", shuffle=False, image_filter=keep)
        intensity, sigma, scales = naive_merge(batches, len(index), manifest.n_images)
        counts = dataset_counts(manifest, datasets, d)
        written[outputs.key("merged", d)] = writers.write_merged(
            _naive_table(index, intensity, sigma, counts), outputs.path("merged", d), wavelength,
            settings.output_columns)
        if settings.predictions:
            written[outputs.key("predictions", d)] = writers.write_predictions(
                index, int(counts.sum()), naive_predictions(manifest, intensity, sigma, scales, keep),
                outputs.path("predictions", d), wavelength, asu_id=d)
    if settings.half_datasets:
        written.update(_write_halves(settings, partial(_naive_half, manifest, datasets), outputs, wavelength))
    remove_stale_outputs(outputs.base, written.values(), settings.log)
    return written


def _naive_half(manifest, datasets, image_filter):
    """The naive merged table of each dataset of the images ``image_filter`` keeps."""
    tables = []
    for d in range(datasets.n):
        keep = _both(dataset_filter(datasets, d), image_filter)
        sub = ImageBatches(manifest, Standardizer.without_metadata(), split="all", shuffle=False, image_filter=keep)
        half_i, half_sigma, _ = naive_merge(sub, len(manifest.index), manifest.n_images)
        tables.append(_naive_table(manifest.index, half_i, half_sigma, sub.reflection_counts()))
    return tables


def _naive_table(index, intensity, sigma, counts):
    f, sigf = french_wilson(index, intensity, sigma)
    return writers.merged_table(index, f, sigf, counts, intensity, sigma)


def naive_predictions(manifest, intensity, sigma, scales, image_filter=None):
    """Predictions of the naive model, shard by shard: ``Ipred = g_b J_h``, ``SigIpred = g_b sigma_J``.

    Only the images ``image_filter`` keeps (all if None).
    """
    columns = ["refl_id", "image_id", "file_id", "I", "SigI", *OBSERVED]
    for i in range(len(manifest.shards)):
        part = _kept_rows(manifest.load_shard(i, columns), columns, image_filter)
        g = scales[part["image_id"]]
        yield {
            "refl_id": part["refl_id"], "image_id": part["image_id"], "file_id": part["file_id"],
            "test": np.zeros(len(g), dtype=np.int32),  # the naive merge holds no image out
            "Iobs": part["I"], "SigIobs": part["SigI"],
            "Ipred": g * intensity[part["refl_id"]], "SigIpred": g * sigma[part["refl_id"]],
            **{k: part[k] for k in OBSERVED},
        }


def _half_settings(settings):
    """Settings of a half-dataset merge: always a new model (never resumed nor loaded)."""
    from dataclasses import replace

    return replace(settings, resume=False, model_in=None)
