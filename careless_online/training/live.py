"""Live merging: follow CrystFEL streams while they are written.

The loop alternates between converting the chunks completed since the last
look (:class:`~careless_online.io.live.LiveCache`) and training for a number
of steps on every image seen so far, writing the merged MTZ after each round
so that the current answer is always on disk.  It ends when the streams have
not grown for ``timeout`` seconds and at least ``--iterations`` steps were
taken.
"""

import os
import time
from dataclasses import dataclass, replace

from careless_online.errors import InputError
from careless_online.io import writers
from careless_online.io.live import LiveCache
from careless_online.io.pipeline import ImageBatches, Standardizer
from careless_online.model.build import load_model, model_index, new_model
from careless_online.training.loop import Trainer


@dataclass
class LiveSettings:
    """How to follow growing streams.

    Attributes
    ----------
    timeout : float
        Seconds without new chunks after which the merge finishes.
    poll : float
        Seconds between looks at the streams when there is nothing to train.
    steps_per_round : int
        Gradient steps between looks at the streams.
    """

    timeout: float = 60.0
    poll: float = 2.0
    steps_per_round: int = 100


def _views(manifest, standardizer, settings):
    common = dict(batch_images=settings.batch_images, test_fraction=settings.test_fraction, seed=settings.seed)
    train = ImageBatches(manifest, standardizer, split="train", **common)
    test = ImageBatches(manifest, standardizer, split="test", shuffle=False, **common) \
        if settings.test_fraction > 0 else None
    monitor = ImageBatches(manifest, standardizer, split="train", shuffle=False, **common)
    return train, test, monitor


def _wait_for_data(cache, live, clock):
    started = clock()
    while cache.poll() == 0:
        if clock() - started > live.timeout:
            raise InputError(f"no complete chunk arrived within {live.timeout:g} s", cache.paths[0])
        time.sleep(live.poll)


def run_live(files, settings, live, clock=time.monotonic):
    """Merge growing streams; returns the paths written.

    Parameters
    ----------
    files : list of str
        CrystFEL streams.
    settings : careless_online.training.merge.MergeSettings
    live : LiveSettings
    clock : callable
        Monotonic time source (tests may replace it).

    Returns
    -------
    dict
    """
    base = settings.base
    outdir = os.path.dirname(os.path.abspath(base))
    os.makedirs(outdir, exist_ok=True)
    model = load_model(settings.model_in) if settings.model_in else None
    index = model_index(model) if model is not None else None
    folder = os.path.join(settings.cache_dir or os.path.join(outdir, ".careless_online_cache"),
                          "live_" + os.path.basename(base))
    cache = LiveCache(files, settings.table_options, folder, index=index, log=settings.log)
    _wait_for_data(cache, live, clock)
    manifest = cache.manifest
    if model is None:
        standardizer = Standardizer.fit(manifest, settings.metadata_keys, settings.standardize)
        model = new_model(manifest, standardizer, **settings.model_options)
    else:
        standardizer = Standardizer.from_config(model.standardizer_config)
    merged_path = f"{base}_0.mtz"
    checkpoint = f"{base}_0.keras"
    history = f"{base}_history.csv"
    trainer = None
    step = 0
    last_new = clock()
    while True:
        train, test, monitor = _views(manifest, standardizer, settings)
        model.set_reflection_counts(train.reflection_counts())
        # a live run has no known end: no learning-rate decay
        config = replace(settings.train, steps=step + live.steps_per_round, progress=False, lr_decay=0.0)
        if trainer is None:
            trainer = Trainer(model, train, test, config, history, checkpoint, monitor=monitor, seed=settings.seed)
        else:
            trainer.train, trainer.test, trainer.monitor, trainer.config = train, test, monitor, config
        row = trainer.run(start_step=step, elapsed=trainer.elapsed)
        step = config.steps
        moments = writers.posterior_moments(model.structure_factors.distribution())
        writers.write_mtz(writers.merged_table(manifest.index, moments["F"], moments["SIGF"], manifest.counts(),
                                               moments["I"], moments["SIGI"]), merged_path)
        settings.log(f"step {step}: {cache.n_images} images, CCpred test {row.get('ccpred_test', float('nan')):.3f}")
        while True:
            new = cache.poll()
            if new:
                last_new = clock()
                manifest = cache.manifest
                settings.log(f"{new} new images ({cache.n_images} in all)")
                break
            idle = clock() - last_new
            if step < settings.train.steps:
                break
            if idle > live.timeout:
                settings.log(f"no new data for {idle:.0f} s: finishing")
                return {"merged": merged_path, "history": history, "model": checkpoint}
            time.sleep(live.poll)
