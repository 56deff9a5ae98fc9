"""Live merging: follow data while they are being collected.

The loop alternates between training for a number of steps on every image
converted so far and looking at the sources again
(:class:`~careless_online.io.live.LiveCache`: growing CrystFEL streams,
folders or glob patterns of MTZ files and DIALS stills).  After each round it
writes the merged MTZ, so that the current answer is always on disk, and
refreshes the live report under ``<out>_live/``
(:class:`~careless_online.report.live.LiveReport`).  Training goes on between
arrivals at a constant learning rate.  When no new data arrived for
``timeout`` seconds (once the constant-rate share of ``--iterations`` is done)
or the user presses Ctrl-C, the merge finishes with the learning-rate decay of
an offline merge (:func:`finishing_steps`) and writes its last outputs.
"""

import math
import os
import signal
import threading
import time
from dataclasses import dataclass, replace

import gemmi

from careless_online.errors import InputError
from careless_online.io.cache_location import default_cache_dir
from careless_online.io.live import LiveCache
from careless_online.io.live_groups import LiveDatasets
from careless_online.io.pipeline import Standardizer, training_views
from careless_online.io.wavelength import input_wavelength
from careless_online.model.build import load_model, model_index, new_model
from careless_online.model.reference import prepare
from careless_online.report.datasets import DatasetsReport
from careless_online.report.live import LiveReport, RoundProgress
from careless_online.stats.maps import DEFAULT_ELEMENTS
from careless_online.training.distribute import trainer_class, variable_scope
from careless_online.training.live_outputs import RoundWriter, counts_by_dataset
from careless_online.training.merge import check_coupling, log_learned_r
from careless_online.training.stale import remove_stale_outputs


@dataclass
class LiveSettings:
    """How to follow the data and report on them.

    Attributes
    ----------
    timeout : float
        Seconds without new data after which the merge finishes.
    poll : float
        Seconds between looks at the sources while waiting for the first data.
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

    def run(self, manifest, datasets=None, finish=0):
        """Train on ``manifest`` (its images of ``datasets``); returns the last history row.

        A round of ``steps_per_round`` steps at the constant learning rate, or,
        with ``finish``, the last ``finish`` steps of a run whose learning rate
        decays as offline (:func:`~careless_online.training.loop.learning_rate_at`
        over ``step + finish`` steps).
        """
        settings = self.settings
        train, test, monitor = training_views(manifest, self.standardizer, settings.batch_images,
                                              settings.test_fraction, settings.seed, datasets=datasets)
        self.model.set_reflection_counts(train.reflection_counts())
        if finish:
            config = replace(settings.train, steps=self.step + int(finish), progress=False)
        else:  # the end is not known yet: no decay
            config = replace(settings.train, steps=self.step + self.live.steps_per_round, progress=False, lr_decay=0.0)
        if self.trainer is None:
            self.trainer = trainer_class(settings.strategy, settings.worker_timeout, settings.log)(
                self.model, train, test, config, self.history, self.checkpoint, monitor=monitor, seed=settings.seed,
                stop=settings.stop)
        else:
            self.trainer.use(train, test, monitor, config)
        row = self.trainer.run(start_step=self.step, elapsed=self.trainer.elapsed,
                               skipped_steps=self.trainer.skipped_steps)
        self.step = config.steps
        return row


def run_live(files, settings, live, clock=time.monotonic, sleep=time.sleep):
    """Merge data while they arrive; returns the paths written.

    Training goes on between arrivals.  When no data came for ``live.timeout``
    seconds (once the constant-rate share of ``--iterations`` is done) or the
    user presses Ctrl-C, the merge finishes with the learning-rate decay an
    offline merge ends with (:func:`finishing_steps`), writes the last MTZ
    and ends.

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
    merge = _LiveMerge(files, settings, live, clock, sleep)
    with _StopRequest(settings.log) as stop:
        while True:
            new = merge.round()
            if stop.requested:
                break
            if not new and merge.rounds.step >= constant_steps(settings.train):
                new = _between_arrivals(merge.data.cache, live, merge.arrived, clock, sleep, settings.log)
            if new is None:
                break
            if new:
                merge.take(new)
    merge.finish()
    return merge.paths


def constant_steps(train):
    """Steps a live merge takes at the constant learning rate before it may finish: the offline share of ``steps``."""
    return int(math.ceil(int(train.steps) * (1.0 - float(train.lr_decay)) - 1e-9))


def finishing_steps(step, lr_decay):
    """Steps of the learning-rate decay that ends a live merge after ``step`` constant-rate steps.

    The decay takes the ``lr_decay`` share of the whole run, as offline: the
    run ends at ``T = step / (1 - lr_decay)`` (rounded), so ``step`` equals the
    constant part of an offline merge of ``T`` steps.
    """
    if lr_decay <= 0 or step <= 0:
        return 0
    return max(int(round(step / (1.0 - float(lr_decay)))) - int(step), 0)


class _LiveMerge:
    """The state of a live merge between rounds: data, model, outputs and report."""

    def __init__(self, files, settings, live, clock, sleep):
        self.settings, self.live, self.clock = settings, live, clock
        outdir = os.path.dirname(os.path.abspath(settings.base))
        os.makedirs(outdir, exist_ok=True)
        with variable_scope(settings.strategy):  # mirrored: the variables live on every replica
            model = load_model(settings.model_in) if settings.model_in else None
        index = model_index(model) if model is not None else None
        grouping = LiveDatasets(settings.groups, files, settings.log) if settings.groups.active else None
        structure = _check_model_pdb(live, index, settings.table_options, grouping is not None)
        folder = os.path.join(default_cache_dir(settings.base, settings.cache_dir),
                              "live_" + os.path.basename(settings.base))
        self.data = _LiveData(LiveCache(files, settings.table_options, folder, index=index, log=settings.log),
                              grouping)
        self.started = clock()
        _wait_for_data(self.data.cache, live, clock, sleep, None if grouping is None else self.data.assigned_images)
        self.arrived = clock()
        self.manifest, self.datasets = self.data.now()
        self.model, standardizer = _model(model, self.manifest, self.datasets, settings)
        self.writer = RoundWriter(settings.base, self.data.cache.index, input_wavelength(self.manifest.files()),
                                  self.data.names(self.datasets), settings.output_columns)
        self.paths = _paths(settings.base, self.writer.paths)
        self.report = _report(self.paths["report"], self.data.cache.index, self.writer.names, structure, live,
                              settings)
        self.report.first_look(*self.data.first_look(clock() - self.started))
        self.rounds = _Round(self.model, standardizer, settings, live, self.paths["history"], self.paths["model"])
        settings.log(f"first look: {self.manifest.n_images} images ({self.arrived - self.started:.1f} s after the "
                     "start); training starts")

    def round(self, finish=0):
        """Train one round (or the ``finish`` steps of the decay), write the outputs and the report.

        Returns
        -------
        int
            New images converted since the last look (0 when finishing).
        """
        round_started = self.clock()
        row = self.rounds.run(self.manifest, self.datasets, finish=finish)
        states = self.writer.write(self.model, self.rounds.trainer, self.manifest, self.datasets,
                                   self.rounds.standardizer, self.settings.batch_images, self.settings.seed)
        new = 0 if finish else self.data.cache.poll()
        now = self.clock()
        merged = self.manifest.n_images if self.datasets is None else int((self.datasets.of_image >= 0).sum())
        progress = RoundProgress(
            images=merged, images_waiting=self.data.cache.n_images - self.manifest.n_images,
            images_per_second=merged / max(now - self.started, 1e-9), lag_seconds=now - self.arrived,
            steps=self.rounds.step, elapsed_seconds=now - self.started, round_seconds=now - round_started,
            backlog=dict(self.data.cache.backlog), phase="finished" if finish else "following")
        status = self.report.update(progress, self.data.with_converted(states), self.paths["history"])
        _log_round(self.settings.log, self.rounds.step, row, status, self.report, progress)
        return new

    def take(self, new):
        """Merge the ``new`` images converted at the last look from the next round on."""
        self.arrived = self.clock()
        self.manifest, self.datasets = self.data.now()
        self.report.arrived(self.data.converted(), self.arrived - self.started, self.data.cache.backlog)
        self.settings.log(f"{new} new images ({self.data.cache.n_images} in all)")

    def finish(self):
        """End with the learning-rate decay (where ``--lr-decay`` asks for one), then the report's last drawing."""
        steps = finishing_steps(self.rounds.step, self.settings.train.lr_decay)
        if steps:
            self.settings.log(f"finishing: {steps} steps with the learning-rate decay")
            self.report.mark_phase("finishing")
            self.round(finish=steps)
        self.report.mark_phase("finished")
        final = self.report.finish()
        log_learned_r(self.model, self.settings.log)
        self.settings.log(f"report: {self.report.total_seconds:.1f} s in all, "
                          f"{100 * final['report_fraction']:.1f}% of the run (as on the page)")
        remove_stale_outputs(self.settings.base, self.paths.values(), self.settings.log)


class _StopRequest:
    """Ctrl-C during a live merge: the first press asks it to finish, a second stops it at once.

    Installs its SIGINT handler in the main thread only (elsewhere Python
    delivers no signals), and puts the previous one back on exit.
    """

    def __init__(self, log):
        self.log = log
        self.requested = False
        self.previous = None

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            self.previous = signal.getsignal(signal.SIGINT)
            signal.signal(signal.SIGINT, self._handle)
        return self

    def _handle(self, signum, frame):
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True
        self.log("stop asked (Ctrl-C): finishing after this round; Ctrl-C again stops at once")

    def __exit__(self, *exc):
        if self.previous is not None:
            signal.signal(signal.SIGINT, self.previous)
        return False


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
            model = new_model(manifest, standardizer, **options)
        prepare(model, manifest.index, settings.start, log=settings.log)
        return model, standardizer
    if model.n_datasets != n_datasets:
        raise InputError(f"the model merges {model.n_datasets} dataset(s), the live sources form {n_datasets}",
                         settings.model_in)
    prepare(model, manifest.index, settings.start, log=settings.log)
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


def _between_arrivals(cache, live, arrived, clock, sleep, log):
    """Look for data between rounds once the constant-rate steps are done; training goes on meanwhile.

    The wait is of zero seconds (it lets other threads run) and the sources
    are looked at again; no data for ``live.timeout`` seconds since the last
    arrival (``arrived``) end the merge.

    Returns
    -------
    int or None
        New images (0: train another round on the data there are), or None
        when the merge should finish.
    """
    sleep(0)
    new = cache.poll()
    if new:
        return new
    idle = clock() - arrived
    if idle > live.timeout:
        log(f"no new data for {idle:.0f} s: finishing")
        return None
    return 0
