"""The configuration a checkpoint records, compared when a run is resumed or a model is loaded.

A checkpoint unit's loop state holds, under ``run``, what shaped the run
(:func:`record`): the model's shape and the data it learns from (model
options, metadata keys, space group, cell, ``--anomalous``, ``--dmin`` and the
other filters, the datasets, the held-out split) and its schedule (steps,
learning rate and the other optimizer settings, batch size, evaluations,
checkpoints).

``--resume`` compares the command with that record (:func:`compare`): a
model-shape difference is refused in one line (the restored model cannot
take it, and the run would silently not be what the command says); a
schedule difference is applied from the restored step and said in one line.
``--model-in`` starts a new run from a trained model, whose shape is the
model's: :func:`model_in_differences` names the flags that the model
overrides.
"""

from dataclasses import asdict

from careless_online.errors import InputError

#: Flag of each recorded setting (the record's keys are the settings' own names).
FLAGS = {
    "d_model": "--mlp-width", "d_ff": "--d-ff", "encoder_layers": "--image-layers", "scale_layers": "--mlp-layers",
    "activation": "--activation", "studentt_dof": "--studentt-likelihood-dof", "mc_samples": "--mc-samples",
    "kl_weight": "--kl-weight", "scale_kl_weight": "--scale-kl-weight", "wilson_prior_b": "--wilson-prior-b",
    "wilson_knots": "--wilson-prior-knots", "refine_uncertainties": "--refine-uncertainties",
    "reindexing_ops": "--reindexing-ops", "double_wilson_parents": "--double-wilson-parents",
    "double_wilson_r": "--double-wilson-r", "learn_double_wilson_r": "--optimize-double-wilson-r",
    "double_wilson_r_shells": "--double-wilson-r-shells", "partiality_prior": "--partiality-prior",
    "metadata_keys": "metadata keys", "standardize": "--disable-metadata-standardization",
    "spacegroup": "--spacegroups", "cell": "--cell", "anomalous": "--anomalous", "dmin": "--dmin",
    "isigi_cutoff": "--isigi-cutoff", "cell_tolerance": "--cell-tolerance", "drop_invalid": "--drop-invalid",
    "intensity_key": "--intensity-key", "uncertainty_key": "--uncertainty-key", "image_key": "--image-key",
    "groups": "datasets (--separate-files, --groups, --groups-file)", "test_fraction": "--test-fraction",
    "seed": "--seed",
    "steps": "--iterations", "epochs": "--epochs", "learning_rate": "--learning-rate", "lr_decay": "--lr-decay",
    "beta_1": "--beta-1", "beta_2": "--beta-2", "clipnorm": "--clipnorm", "clipvalue": "--clipvalue",
    "global_clipnorm": "--global-clipnorm", "eval_every": "--validation-frequency",
    "eval_images": "--validation-images", "checkpoint_every": "--checkpoint-interval",
    "max_nonfinite_steps": "--max-nonfinite-steps", "early_stop": "--early-stop", "batch_images": "--batch-size",
}

#: Schedule settings: what a resumed run may change (said in one line).
_SCHEDULE = ("steps", "epochs", "learning_rate", "lr_decay", "beta_1", "beta_2", "clipnorm", "clipvalue",
             "global_clipnorm", "eval_every", "eval_images", "checkpoint_every", "max_nonfinite_steps",
             "early_stop", "batch_images")

#: Model options a ``--model-in`` model fixes, compared with its saved configuration.
_MODEL_IN_OPTIONS = ("d_model", "d_ff", "encoder_layers", "scale_layers", "activation", "studentt_dof",
                     "mc_samples", "kl_weight", "scale_kl_weight", "wilson_knots", "refine_uncertainties")


def _plain(value):
    """A JSON round-trip-stable form (tuples as lists)."""
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    return value


def record(settings):
    """The configuration of a merge, as stored in its checkpoints.

    Parameters
    ----------
    settings : careless_online.training.merge.MergeSettings

    Returns
    -------
    dict
        ``{"model": {...}, "schedule": {...}}``, JSON-serializable.
    """
    train = asdict(settings.train)
    schedule = {key: train[key] for key in _SCHEDULE if key in train}
    schedule.update(batch_images=int(settings.batch_images), epochs=settings.epochs)
    model = dict(settings.model_options)
    model.update(settings.table_options.to_dict() if settings.table_options is not None else {})
    model.update(metadata_keys=list(settings.metadata_keys), standardize=bool(settings.standardize),
                 groups=asdict(settings.groups), test_fraction=float(settings.test_fraction), seed=int(settings.seed))
    return _plain({"model": model, "schedule": schedule})


def _show(value):
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, list):
        return ",".join(str(v) for v in value)
    return "unset" if value is None else str(value)


def _changes(saved, current):
    """``flag saved -> current`` for each key whose value differs, in a stable order."""
    keys = sorted(set(saved) | set(current), key=lambda k: list(FLAGS).index(k) if k in FLAGS else len(FLAGS))
    return [f"{FLAGS.get(k, k)} {_show(saved.get(k))} -> {_show(current.get(k))}"
            for k in keys if saved.get(k) != current.get(k)]


def compare(saved, current, source, log):
    """Check a command against the record of the checkpoint it resumes.

    Parameters
    ----------
    saved : dict or None
        The checkpoint's record (None: written before records existed; nothing is compared).
    current : dict
        :func:`record` of the command.
    source : str
        The checkpoint (named in messages).
    log : callable

    Raises
    ------
    InputError
        When a model-shape setting differs: one line naming each.
    """
    if saved is None:
        return
    shape = _changes(saved.get("model", {}), current["model"])
    if shape:
        raise InputError(f"--resume: the command differs from the checkpoint's run in {'; '.join(shape)} "
                         "(the restored model cannot take it: resume with the run's own flags, or start a "
                         "new run)", source)
    schedule = _changes(saved.get("schedule", {}), current["schedule"])
    if schedule:
        log(f"--resume: applied from the restored step, changed since the checkpoint: {'; '.join(schedule)}")


def model_in_differences(model, model_options, table_options):
    """Settings a ``--model-in`` model fixes that the command sets otherwise.

    Parameters
    ----------
    model : careless_online.model.MergingModel
    model_options : dict
        The command's model options.
    table_options : careless_online.io.table.TableOptions

    Returns
    -------
    list of str
        ``flag model's value (command: value)``, empty if none differ.
    """
    from careless_online.model.build import model_index

    config = model.get_config()
    wanted = {k: model_options.get(k) for k in _MODEL_IN_OPTIONS}
    if wanted["d_ff"] is None:
        wanted.pop("d_ff")  # default: derived from the width
    have = {k: config.get(k) for k in wanted}
    index = model_index(model)
    wanted["anomalous"], have["anomalous"] = bool(table_options.anomalous), bool(index.anomalous)
    if table_options.dmin is not None:
        wanted["dmin"], have["dmin"] = round(float(table_options.dmin), 3), round(float(index.dmin), 3)
    return [f"{FLAGS[k]} {_show(have[k])} (command: {_show(wanted[k])})"
            for k in wanted if _plain(have[k]) != _plain(wanted[k])]
