"""Live merging: follow data while they are being collected.

The loop alternates between training for a number of steps on every image
converted so far and looking at the sources again
(:class:`~careless_online.io.live.LiveCache`: growing CrystFEL streams,
folders or glob patterns of MTZ files and DIALS stills).  After each round it
writes the merged MTZ, so that the current answer is always on disk, and
refreshes the live report under ``<out>_live/``
(:class:`~careless_online.report.live.LiveReport`).  It ends when no new data
arrived for ``timeout`` seconds and at least ``--iterations`` steps were taken.
"""

import os
import time
from dataclasses import dataclass, replace

import gemmi

from careless_online.errors import InputError
from careless_online.io.live import LiveCache
from careless_online.io.live_groups import LiveDatasets
from careless_online.io.pipeline import Standardizer, training_views
from careless_online.io.wavelength import input_wavelength
from careless_online.model.build import load_model, model_index, new_model
from careless_online.report.datasets import DatasetsReport
from careless_online.report.live import LiveReport, RoundProgress
from careless_online.stats.maps import DEFAULT_ELEMENTS
from careless_online.training.distribute import trainer_class, variable_scope
from careless_online.training.live_outputs import RoundWriter, counts_by_dataset
from careless_online.training.merge import check_coupling, log_learned_r


@dataclass
class LiveSettings:
    """How to follow the data and report on them.

    Attributes
    ----------
    timeout : float
        Seconds without new data after which the merge finishes.
    poll : float
        Seconds between looks at the sources when there is nothing to train.
    steps_per_round : int
        Gradient steps between looks at the sources.
    model_pdb : str or None
        A model (PDB/mmCIF) in the crystal's cell: the report follows the
        anomalous map heights at its ``elements`` atoms.
    elements : str
        Atoms of the model to follow.
    report_fraction : float
        Largest share of the run the report's figures may take (1: draw them
        after every round).
    shells : int
        Resolution shells of the report.
    refresh_seconds : int
        Reload period of ``index.html``.
    """

    timeout: float = 60.0
    poll: float = 2.0
    steps_per_round: int = 100
    model_pdb: str = None
    elements: str = DEFAULT_ELEMENTS
    report_fraction: float = 0.1
    shells: int = 10
    refresh_seconds: int = 10

    def __post_init__(self):
        for name, flag in (("timeout", "--live-timeout"), ("poll", "--live-poll")):
            if not float(getattr(self, name)) > 0:
                raise InputError(f"{flag} must be positive (got {getattr(self, name)})")
        if int(self.steps_per_round) < 1:
            raise InputError(f"--live-steps must be at least 1 (got {self.steps_per_round})")


def _wait_for_data(cache, live, clock, sleep, merged_images=None):
    """Wait until data are converted (and, with datasets, until some image belongs to one)."""
    started = clock()
    while cache.poll() == 0 or (merged_images is not None and merged_images(cache.manifest) == 0):
        if clock() - started > live.timeout:
            raise InputError(f"no complete data arrived within {live.timeout:g} s", cache.paths[0])
        sleep(live.poll)


def _read_structure(path):
    if path is None:
        return None
    if not os.path.exists(path):
        raise InputError("no such file", path)
    try:
        return gemmi.read_structure(str(path))
    except (RuntimeError, ValueError) as err:
        raise InputError(f"not a readable model ({err})", path) from None


def _check_model_pdb(live, index, options, several):
    """The ``--model-pdb`` structure; it needs an anomalous merge unless it phases difference maps (``several``)."""
    anomalous = index.anomalous if index is not None else options.anomalous
    if live.model_pdb is not None and not (anomalous or several):
        raise InputError("--model-pdb follows anomalous peaks (or, with several datasets, difference peaks): "
                         "it needs --anomalous")
    return _read_structure(live.model_pdb)


class _Round:
    """Training rounds of a live merge (one :class:`Trainer`, views renewed as data grow)."""

    def __init__(self, model, standardizer, settings, live, history, checkpoint):
        self.model, self.standardizer = model, standardizer
        self.settings, self.live = settings, live
        self.history, self.checkpoint = history, checkpoint
        self.trainer = None
        self.step = 0

    def run(self, manifest, datasets=None):
        """Train ``steps_per_round`` steps on ``manifest`` (its images of ``datasets``); returns the last history row."""
        settings = self.settings
        train, test, monitor = training_views(manifest, self.standardizer, settings.batch_images,
                                              settings.test_fraction, settings.seed, datasets=datasets)
        self.model.set_reflection_counts(train.reflection_counts())
        # a live run has no known end: no learning-rate decay
        config = replace(settings.train, steps=self.step + self.live.steps_per_round, progress=False, lr_decay=0.0)
        if self.trainer is None:
            self.trainer = trainer_class(settings.strategy, settings.worker_timeout, settings.log)(
                self.model, train, test, config, self.history, self.checkpoint, monitor=monitor, seed=settings.seed)
        else:
            self.trainer.train, self.trainer.test, self.trainer.monitor = train, test, monitor
            self.trainer.config = config
        row = self.trainer.run(start_step=self.step, elapsed=self.trainer.elapsed,
                               skipped_steps=self.trainer.skipped_steps)
        self.step = config.steps
        return row


def run_live(files, settings, live, clock=time.monotonic, sleep=time.sleep):
    """Merge data while they arrive; returns the paths written.

    With a grouping (``settings.groups``: ``--separate-files``, ``--groups``,
    ``--groups-file``) one model merges several datasets
    (:mod:`careless_online.io.live_groups`), fixed when the first data are
    converted; each round writes ``<out>_<i>.mtz`` for every dataset and the
    report follows each dataset and their differences.

    Parameters
    ----------
    files : list of str
        Streams, files, folders or glob patterns (see
        :class:`~careless_online.io.live.LiveCache`).
    settings : careless_online.training.merge.MergeSettings
    live : LiveSettings
    clock : callable
        Monotonic time source (tests may replace it).
    sleep : callable
        Waits a number of seconds (tests may replace it).

    Returns
    -------
    dict
        Paths by kind: ``merged`` (``merged_<i>`` for dataset ``i`` with
        several, as offline), ``history``, ``model``, ``report``.
    """
    base = settings.base
    outdir = os.path.dirname(os.path.abspath(base))
    os.makedirs(outdir, exist_ok=True)
    with variable_scope(settings.strategy):  # mirrored: the variables live on every replica
        model = load_model(settings.model_in) if settings.model_in else None
    index = model_index(model) if model is not None else None
    grouping = LiveDatasets(settings.groups, files, settings.log) if settings.groups.active else None
    structure = _check_model_pdb(live, index, settings.table_options, grouping is not None)
    folder = os.path.join(settings.cache_dir or os.path.join(outdir, ".careless_online_cache"),
                          "live_" + os.path.basename(base))
    data = _LiveData(LiveCache(files, settings.table_options, folder, index=index, log=settings.log), grouping)
    started = clock()
    _wait_for_data(data.cache, live, clock, sleep, None if grouping is None else data.assigned_images)
    arrived = clock()
    manifest, datasets = data.now()
    model, standardizer = _model(model, manifest, datasets, settings)
    writer = RoundWriter(base, data.cache.index, input_wavelength(manifest.files()), data.names(datasets),
                         settings.output_columns)
    paths = _paths(base, writer.paths)
    report = _report(paths["report"], data.cache.index, writer.names, structure, live, settings)
    report.first_look(*data.first_look(clock() - started))
    rounds = _Round(model, standardizer, settings, live, paths["history"], paths["model"])
    while True:
        round_started = clock()
        row = rounds.run(manifest, datasets)
        states = writer.write(model, rounds.trainer, manifest, datasets, standardizer, settings.batch_images,
                              settings.seed)
        new = data.cache.poll()
        now = clock()
        merged = manifest.n_images if datasets is None else int((datasets.of_image >= 0).sum())
        progress = RoundProgress(
            images=merged, images_waiting=data.cache.n_images - manifest.n_images,
            images_per_second=merged / max(now - started, 1e-9), lag_seconds=now - arrived,
            steps=rounds.step, elapsed_seconds=now - started, round_seconds=now - round_started,
            backlog=dict(data.cache.backlog))
        status = report.update(progress, data.with_converted(states), paths["history"])
        _log_round(settings.log, rounds.step, row, status, report, progress)
        if not new:
            new = _idle(data.cache, live, rounds.step, settings.train.steps, clock, sleep, settings.log)
        if new is None:
            report.finish()
            log_learned_r(model, settings.log)
            settings.log(f"report: {report.total_seconds:.1f} s in all, "
                         f"{100 * report.total_seconds / max(clock() - started, 1e-9):.1f}% of the run")
            return paths
        if new:
            arrived = clock()
            manifest, datasets = data.now()
            report.arrived(data.converted(), arrived - started, data.cache.backlog)
            settings.log(f"{new} new images ({data.cache.n_images} in all)")


def _paths(base, merged):
    """Output paths of a live merge (``merged``, ``merged_<i>`` with several datasets, ...)."""
    paths = {"merged": merged[0]} if len(merged) == 1 else {f"merged_{d}": path for d, path in enumerate(merged)}
    paths.update(history=f"{base}_history.csv", model=f"{base}_0.keras", report=f"{base}_live")
    return paths


def _model(model, manifest, datasets, settings):
    """The model to train (``model``, loaded with ``--model-in``, or a new one) and its standardizer."""
    n_datasets = 1 if datasets is None else datasets.n
    if datasets is not None:
        check_coupling(settings.model_options, datasets, settings.groups.split_file)
    if model is None:
        standardizer = Standardizer.fit(manifest, settings.metadata_keys, settings.standardize)
        options = dict(settings.model_options, **({"n_datasets": n_datasets} if datasets is not None else {}))
        with variable_scope(settings.strategy):
            return new_model(manifest, standardizer, **options), standardizer
    if model.n_datasets != n_datasets:
        raise InputError(f"the model merges {model.n_datasets} dataset(s), the live sources form {n_datasets}",
                         settings.model_in)
    return model, Standardizer.from_config(model.standardizer_config)


def _report(folder, index, names, structure, live, settings):
    """The live report: :class:`LiveReport` for one dataset, :class:`DatasetsReport` for several."""
    common = dict(n_shells=live.shells, elements=live.elements, max_fraction=live.report_fraction,
                  refresh_seconds=live.refresh_seconds)
    if len(names) == 1:
        return _OneDatasetReport(LiveReport(folder, index, structure=structure, **common))
    parents = settings.model_options.get("double_wilson_parents") or [None] + [0] * (len(names) - 1)
    return DatasetsReport(folder, index, names, list(parents), structure=structure, **common)


def _log_round(log, step, row, status, report, progress):
    overall = status.get("overall", {})
    log(f"step {step}: {progress.images} images, CCpred test {row.get('ccpred_test', float('nan')):.3f}, "
        f"CC1/2 {overall.get('cchalf', float('nan')):.3f} (at {status.get('cc_images', 0)} images); "
        f"report {report.last_seconds:.2f} s = "
        f"{100 * report.last_seconds / (progress.round_seconds + report.last_seconds):.1f}% of the round")


class _LiveData:
    """The live cache and, with several datasets, the assignment of its images."""

    def __init__(self, cache, grouping):
        self.cache, self.grouping = cache, grouping

    def assigned_images(self, manifest):
        """Images of ``manifest`` that belong to a dataset."""
        return int((self.grouping.update(manifest).of_image >= 0).sum())

    def now(self):
        """(manifest, datasets) of everything converted (datasets None for one dataset)."""
        manifest = self.cache.manifest
        datasets = None if self.grouping is None else self.grouping.update(manifest)
        return manifest, datasets

    def names(self, datasets):
        if datasets is None:
            return ["all"]
        self.cache.log(datasets.describe())
        return list(datasets.names)

    def converted(self):
        """Images converted per dataset (one number for one dataset)."""
        if self.grouping is None:
            return self.cache.n_images
        return self.grouping.update(self.cache.manifest).image_counts().tolist()

    def with_converted(self, rounds):
        """The rounds with each dataset's images converted so far (at least those merged)."""
        if self.grouping is None:
            return rounds
        return [replace(r, images_converted=max(int(c), r.images)) for r, c in zip(rounds, self.converted())]

    def first_look(self, elapsed):
        """Arguments of the report's ``first_look``: images converted, seconds, counts, backlog."""
        if self.grouping is None:
            return self.cache.n_images, elapsed, self.cache.counts, self.cache.backlog
        manifest, datasets = self.now()
        return datasets.image_counts().tolist(), elapsed, counts_by_dataset(manifest, datasets), self.cache.backlog


class _OneDatasetReport:
    """:class:`LiveReport` fed from the round's list (of one) of dataset rounds, like :class:`DatasetsReport`."""

    def __init__(self, report):
        self.report = report

    def __getattr__(self, name):
        return getattr(self.report, name)

    def update(self, progress, rounds, history_path):
        state = rounds[0]
        return self.report.update(progress, state.f_mean, state.f_std, state.counts, state.merged, history_path,
                                  observations=state.observations)


def _idle(cache, live, step, steps, clock, sleep, log):
    """Wait for data once the training budget is spent.

    Returns
    -------
    int or None
        New images (0: go on training without new data), or None when no data
        came for ``live.timeout`` seconds (the merge is over).
    """
    waiting_since = clock()
    while step >= steps:
        sleep(live.poll)
        new = cache.poll()
        if new:
            return new
        idle = clock() - waiting_since
        if idle > live.timeout:
            log(f"no new data for {idle:.0f} s: finishing")
            return None
    return 0
