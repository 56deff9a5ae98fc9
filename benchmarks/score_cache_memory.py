"""Bytes ``Trainer.score`` keeps after each of ten live-like rounds (new views per round, as training/live.py makes).

Usage: ``PYTHONPATH=<checkout> python benchmarks/score_cache_memory.py WORK_FOLDER`` (400 simulated images to
2.5 Å, 128 evaluation images per split).  Before issue 23 the cache was keyed by ``id(view)`` and never emptied:
it grew by one round's evaluation batches per round (and an id reused by a later view served another view's
images); now it holds the live views' batches only.
"""
import gc
import os
import sys

from careless_online.simulate import simulate_to_files
from careless_online.io.cache import build_cache
from careless_online.io.table import TableOptions
from careless_online.io.pipeline import Standardizer, training_views
from careless_online.model.build import new_model
from careless_online.training.loop import TrainConfig, Trainer

work = sys.argv[1]
os.makedirs(work, exist_ok=True)
paths = simulate_to_files(os.path.join(work, "lyso"), formats=("stream",), n_images=400, seed=7, dmin=2.5)
manifest = build_cache([paths["stream"]], TableOptions(spacegroup="P 43 21 2"), os.path.join(work, "cache"))
std = Standardizer.fit(manifest, ["dHKL", "XDET", "YDET"], True)
model = new_model(manifest, std, d_model=8)
train, test, monitor = training_views(manifest, std, 8, 0.1, 1234)
trainer = Trainer(model, train, test, TrainConfig(steps=1, progress=False), None, None, monitor=monitor)

def held(obj):
    if isinstance(obj, dict) or hasattr(obj, "items"):
        return sum(held(v) for v in obj.values())
    if isinstance(obj, (list, tuple)):
        return sum(held(v) for v in obj)
    return getattr(obj, "nbytes", 0) or (obj.numpy().nbytes if hasattr(obj, "numpy") else 0)

rows = []
for round_ in range(10):
    _, test, monitor = training_views(manifest, std, 8, 0.1, 1234)
    trainer.train, trainer.test, trainer.monitor = train, test, monitor
    cc_test, _ = trainer.score(trainer.test, 128)
    cc_train, _ = trainer.score(trainer.monitor, 128)
    del test, monitor
    gc.collect()
    rows.append((round_, held(trainer._scored) / 1e6, len(trainer._scored), cc_test == cc_train))
for r in rows:
    print("round %d: %.2f MB kept in %d entries, ccpred_test == ccpred_train: %s" % r)
