"""The pass over the data after training that calibrates SIGF (:mod:`careless_online.model.sigf_calibration`)."""

import numpy as np

from careless_online.io.pipeline import ImageBatches, is_test_image
from careless_online.model.sigf_calibration import ScatterTally


def sigf_factors(trainer, manifest, standardizer, settings, datasets, log=None):
    """Per-reflection SIGF factors ``f_h >= 1`` of a trained model (every dataset's, combined ids).

    Predicts every observation once (batches of at least 32 images, in file
    order), fits the error model ``<z^2> = a^2 + c^2 x`` to the scatter of
    all images' observations and widens each reflection's SIGF by what its
    training observations lose under it.

    Parameters
    ----------
    trainer : careless_online.training.loop.Trainer
    manifest : careless_online.io.cache.Manifest
    standardizer : careless_online.io.pipeline.Standardizer
    settings : careless_online.training.merge.MergeSettings
    datasets : careless_online.io.groups.Datasets
    log : callable, optional
        Receives one line with the fitted ``a`` and ``c``.

    Returns
    -------
    numpy.ndarray
        ``[n_datasets * n_reflections]`` factors.
    """
    model = trainer.model
    tally = ScatterTally(model.n_datasets * model.n_reflections)
    batches = ImageBatches(manifest, standardizer, batch_images=max(settings.batch_images, 32), split="all",
                           shuffle=False, seed=settings.seed, datasets=datasets)
    for number, batch in enumerate(batches.epoch(0)):
        prediction, _, _ = trainer.predict(batch, number)
        ids = model.reflection_ids(model.in_reference_setting(batch)[0]).numpy()
        train = ~is_test_image(batch["image_id"], settings.test_fraction, settings.seed)
        tally.add(ids, batch["I"], batch["SigI"], prediction.numpy(), train)
    a, c = tally.error_model()
    factors = tally.sigf_factors(a, c)
    if log is not None:
        log(f"SIGF calibrated to the observations' scatter: <z^2> = {a:.3g}^2 + ({c:.3g} I/SigI)^2; "
            f"median SIGF factor {np.median(factors):.3g}, largest {np.max(factors):.3g}")
    return factors


def calibrated(moments, factors):
    """Posterior moments with ``SIGF`` and ``SIGI`` widened by ``factors``, ``F`` unchanged.

    ``I`` stays the second moment of the widened amplitude, ``F^2 + SIGF^2``.
    """
    sigf = moments["SIGF"] * factors
    intensity = moments["I"] + np.square(sigf) - np.square(moments["SIGF"])
    return {**moments, "SIGF": sigf, "I": intensity, "SIGI": moments["SIGI"] * factors}
