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
from careless_online.io import writers
from careless_online.io.live import LiveCache
from careless_online.io.pipeline import ImageBatches, Standardizer, training_views
from careless_online.io.wavelength import input_wavelength
from careless_online.model.build import load_model, model_index, new_model
from careless_online.model.settings import output_counts
from careless_online.report.live import LiveReport, RoundProgress
from careless_online.stats.maps import DEFAULT_ELEMENTS
from careless_online.training.distribute import trainer_class, variable_scope


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


def _wait_for_data(cache, live, clock, sleep):
    started = clock()
    while cache.poll() == 0:
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


def _check_model_pdb(live, index, options):
    anomalous = index.anomalous if index is not None else options.anomalous
    if live.model_pdb is not None and not anomalous:
        raise InputError("--model-pdb follows anomalous peaks: it needs --anomalous")
    return _read_structure(live.model_pdb)


class _Round:
    """Training rounds of a live merge (one :class:`Trainer`, views renewed as data grow)."""

    def __init__(self, model, standardizer, settings, live, history, checkpoint):
        self.model, self.standardizer = model, standardizer
        self.settings, self.live = settings, live
        self.history, self.checkpoint = history, checkpoint
        self.trainer = None
        self.step = 0

    def run(self, manifest):
        """Train ``steps_per_round`` steps on ``manifest``; returns the last history row."""
        settings = self.settings
        train, test, monitor = training_views(manifest, self.standardizer, settings.batch_images,
                                              settings.test_fraction, settings.seed)
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
        Paths by kind: ``merged``, ``history``, ``model``, ``report``.
    """
    base = settings.base
    outdir = os.path.dirname(os.path.abspath(base))
    os.makedirs(outdir, exist_ok=True)
    with variable_scope(settings.strategy):  # mirrored: the variables live on every replica
        model = load_model(settings.model_in) if settings.model_in else None
    index = model_index(model) if model is not None else None
    structure = _check_model_pdb(live, index, settings.table_options)
    folder = os.path.join(settings.cache_dir or os.path.join(outdir, ".careless_online_cache"),
                          "live_" + os.path.basename(base))
    cache = LiveCache(files, settings.table_options, folder, index=index, log=settings.log)
    started = clock()
    _wait_for_data(cache, live, clock, sleep)
    arrived = clock()
    manifest = cache.manifest
    wavelength = input_wavelength(manifest.files())
    if model is None:
        standardizer = Standardizer.fit(manifest, settings.metadata_keys, settings.standardize)
        with variable_scope(settings.strategy):
            model = new_model(manifest, standardizer, **settings.model_options)
    else:
        standardizer = Standardizer.from_config(model.standardizer_config)
    paths = {"merged": f"{base}_0.mtz", "history": f"{base}_history.csv", "model": f"{base}_0.keras",
             "report": f"{base}_live"}
    report = LiveReport(paths["report"], cache.index, n_shells=live.shells, structure=structure,
                        elements=live.elements, max_fraction=live.report_fraction,
                        refresh_seconds=live.refresh_seconds)
    report.first_look(cache.n_images, clock() - started, cache.counts, cache.backlog)
    rounds = _Round(model, standardizer, settings, live, paths["history"], paths["model"])
    while True:
        round_started = clock()
        row = rounds.run(manifest)
        q = model.structure_factors
        f_mean, f_std, counts = q.mean().numpy(), q.stddev().numpy(), output_counts(model, manifest)
        merged = writers.merged_table(cache.index, f_mean, f_std, counts)
        writers.write_mtz(merged, paths["merged"], wavelength)
        new = cache.poll()
        now = clock()
        progress = RoundProgress(
            images=manifest.n_images, images_waiting=cache.n_images - manifest.n_images,
            images_per_second=manifest.n_images / max(now - started, 1e-9), lag_seconds=now - arrived,
            steps=rounds.step, elapsed_seconds=now - started, round_seconds=now - round_started,
            backlog=dict(cache.backlog))
        status = report.update(progress, f_mean, f_std, counts, merged, paths["history"],
                               observations=_observations(rounds.trainer, manifest, standardizer, settings))
        settings.log(f"step {rounds.step}: {manifest.n_images} images, CCpred test "
                     f"{row.get('ccpred_test', float('nan')):.3f}, CC1/2 {status['overall']['cchalf']:.3f} "
                     f"(at {status['cc_images']} images); "
                     f"report {report.last_seconds:.2f} s = "
                     f"{100 * report.last_seconds / (progress.round_seconds + report.last_seconds):.1f}% of the round")
        if not new:
            new = _idle(cache, live, rounds.step, settings.train.steps, clock, sleep, settings.log)
        if new is None:
            report.finish()
            settings.log(f"report: {report.total_seconds:.1f} s in all, "
                         f"{100 * report.total_seconds / max(clock() - started, 1e-9):.1f}% of the run")
            return paths
        if new:
            arrived = clock()
            manifest = cache.manifest
            report.arrived(cache.n_images, arrived - started, cache.backlog)
            settings.log(f"{new} new images ({cache.n_images} in all)")


def _observations(trainer, manifest, standardizer, settings):
    """A function that yields every observation of ``manifest`` with the model's predicted intensity."""
    def batches():
        view = ImageBatches(manifest, standardizer, batch_images=max(settings.batch_images, 32), split="all",
                            shuffle=False, seed=settings.seed)
        for number, batch in enumerate(view.epoch(0)):
            ipred, _, _ = trainer.predict(batch, number)
            yield {"refl_id": batch["refl_id"], "image_id": batch["image_id"], "I": batch["I"],
                   "SigI": batch["SigI"], "Ipred": ipred.numpy()}
    return batches


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
