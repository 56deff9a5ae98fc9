"""Each image's indexing setting, chosen inside the merging model (issue 9, docs/ambiguity.md).

With ``n_ops > 1`` candidate settings (:mod:`careless_online.ambiguity.operators`)
the model holds, as non-trainable weights saved with it,

- the reflection table ``T`` (``[n_reflections, n_ops]``): ``T[h, j]`` is the
  id of ``M_j h``;
- a reference ``R_h = S_h / W_h`` of normalized intensities in the reference
  setting (:mod:`careless_online.ambiguity.choice`).

Every time a batch passes through the model, each of its images gets the
setting whose reference values correlate best with its intensities, and each
observation's ``refl_id`` ``h`` becomes ``T[h, j*]``
(:func:`reindexed_batch`) before the scale network, the likelihood and the
KL see it.  A training step then adds the batch, in its chosen settings, to
the reference (``S, W <- decay * (S, W) + batch``); evaluation, predictions
and outputs use the reference as it is.  No parameter belongs to an image:
the choice is remade whenever an image is seen, so it works on a stream of
images (live mode) as it does offline.

The first image of the first training batch starts the reference (it is
empty before, and the model's own symmetric starting posterior could not
tell the settings apart); the reference setting is the one the first images
agree on.  After training, :func:`to_majority_setting` relabels the model so
that outputs are in the setting most images were indexed in.
"""

import keras
import numpy as np
import tensorflow as tf

from careless_online.ambiguity.choice import check_decay, choose_settings, updated_reference
from careless_online.ambiguity.operators import candidate_operators, parse_operator
from careless_online.ambiguity.outputs import SETTING_COLUMNS
from careless_online.checks import integer_at_least
from careless_online.errors import InputError
from careless_online.io.pipeline import ImageBatches, Standardizer

#: Forgetting factor of the reference per training step (effective memory ``1 / (1 - decay)`` steps).
REFERENCE_DECAY = 0.999

def reindexed_batch(batch, ids):
    """The batch with each observation's ``refl_id`` replaced by ``ids`` (its id in the reference setting).

    This is the only change the setting choice makes to a batch; steps that
    act on ``refl_id`` afterwards (e.g. a dataset offset) compose with it.
    """
    return {**batch, "refl_id": ids}


@keras.saving.register_keras_serializable(package="careless_online")
class SettingChoice(keras.layers.Layer):
    """Per-image choice of the indexing setting against an online reference (see the module docstring).

    Parameters
    ----------
    n_reflections : int
        Rows of the reflection table (the unique reflections of the index).
    operators : list of str
        hkl triplets of the settings, identity first (at least two).
    decay : float
        Forgetting factor of the reference per training step, in (0, 1].
    """

    def __init__(self, n_reflections, operators, decay=REFERENCE_DECAY, **kwargs):
        super().__init__(**kwargs)
        self.n_reflections = integer_at_least("n_reflections", n_reflections, 1)
        self.operators = [str(t) for t in operators]
        if len(self.operators) < 2:
            raise ValueError(f"a setting choice needs at least two settings, got {self.operators}")
        self.matrices = np.stack([parse_operator(t) for t in self.operators])  # [n_ops, 3, 3]
        self.decay = check_decay(decay)
        n_ops = len(self.operators)
        self.table = self.add_weight(name="table", shape=(self.n_reflections, n_ops), dtype="int32",
                                     initializer="zeros", trainable=False)
        # one replica's batch updates the reference under a distribution strategy
        common = dict(shape=(self.n_reflections,), initializer="zeros", trainable=False,
                      aggregation="only_first_replica")
        self.reference_sums = self.add_weight(name="reference_sums", **common)
        self.reference_weights = self.add_weight(name="reference_weights", **common)
        self.built = True

    def set_table(self, table):
        """Set the reflection table (:meth:`ReindexingOperators.reflection_table`)."""
        table = np.asarray(table, dtype=np.int32)
        if table.shape != (self.n_reflections, len(self.operators)):
            raise ValueError(f"reflection table of shape {table.shape}, expected "
                             f"{(self.n_reflections, len(self.operators))}")
        if not np.array_equal(table[:, 0], np.arange(self.n_reflections)):
            raise ValueError("the first column of the reflection table must be the identity")
        self.table.assign(table)

    def start_from(self, other):
        """Copy another choice's reference, so that both choose in the same reference setting."""
        self.reference_sums.assign(other.reference_sums)
        self.reference_weights.assign(other.reference_weights)

    def call(self, intensity, image, n_images, refl_id, update=False):
        """Choose the setting of every image of a batch; with ``update``, add the batch to the reference.

        Returns
        -------
        dict of tf.Tensor
            ``setting``, ``margin``, ``confidence``, ``ambiguous``, ``informed``
            (per image) and ``ids`` (per observation): see
            :func:`careless_online.ambiguity.choice.choose_settings`.  An
            observation whose chosen id falls outside the index (possible only
            for a pseudo-merohedral operator near ``dmin``) keeps its own id.
        """
        table_ids = tf.gather(self.table, refl_id)
        choice = choose_settings(intensity, image, n_images, table_ids, self.reference_sums,
                                 self.reference_weights)
        choice["ids"] = tf.where(choice["ids"] >= 0, choice["ids"], refl_id)
        if update:
            sums, weights = updated_reference(self.reference_sums, self.reference_weights, self.decay,
                                              intensity, image, n_images, choice)
            self.reference_sums.assign(sums)
            self.reference_weights.assign(weights)
        return choice

    def orbit_mean(self, counts):
        """``mean_j counts[T[h, j]]`` per reflection (over the ids inside the index).

        ``counts`` may hold several datasets' blocks of ``n_reflections``
        (combined ids, :mod:`careless_online.model.datasets`); each is averaged alone.

        Observation counts as indexed, moved to the reference setting on
        average: the expected count of every reflection when the images'
        settings are random, never 0 where a related reflection was observed.
        """
        counts = np.asarray(counts, dtype=np.float64).reshape(-1, self.n_reflections)  # per dataset block
        table = self.table.numpy()
        inside = table >= 0
        total = np.where(inside, counts[:, np.maximum(table, 0)], 0.0).sum(axis=2)
        return (total / np.maximum(inside.sum(axis=1), 1)).ravel()

    def get_config(self):
        config = super().get_config()
        config.update(n_reflections=self.n_reflections, operators=list(self.operators), decay=self.decay)
        return config


def new_setting_choice(index, operators, n_reflections=None):
    """A :class:`SettingChoice` with its table for ``operators`` on ``index``, or None for one setting.

    Parameters
    ----------
    index : careless_online.io.reflections.ReflectionIndex
    operators : careless_online.ambiguity.operators.ReindexingOperators
    n_reflections : int, optional
        Rows of the table (default ``len(index)``).
    """
    if len(operators) < 2:
        return None
    layer = SettingChoice(n_reflections or len(index), operators.triplets, name="setting_choice")
    layer.set_table(operators.reflection_table(index))
    return layer


def check_model_operators(saved, spec, index, source):
    """Refuse a saved model whose settings are not those ``--reindexing-ops spec`` gives for these data.

    Parameters
    ----------
    saved : list of str or None
        The model's operators (``MergingModel.reindexing_ops``; None: one setting).
    spec : str
        The ``--reindexing-ops`` value.
    index : ReflectionIndex
    source : str
        The model file (named in the error).

    Raises
    ------
    InputError
    """
    saved = list(saved or ["h,k,l"])
    wanted = candidate_operators(spec, index.cell, index.spacegroup)
    if wanted.same_settings(saved):
        return
    hint = "none" if len(saved) == 1 else '"' + ";".join(saved[1:]) + '"'
    raise InputError(f"the model chooses among the indexing settings {';'.join(saved)}, but --reindexing-ops "
                     f"{spec} gives {';'.join(wanted.triplets)} for these data; use --reindexing-ops {hint} "
                     "with this model, or train a new one", source)


def settings_pass(model, batches):
    """Every image's chosen setting (no update): images per setting and reflection counts in the reference setting.

    Parameters
    ----------
    model : careless_online.model.merging.MergingModel
        With a setting choice.
    batches : careless_online.io.pipeline.ImageBatches
        The images (in order).

    Returns
    -------
    (numpy.ndarray, numpy.ndarray)
        Images per setting ``[n_ops]`` and observations per reflection ``[n_reflections]``.
    """
    layer = model.setting_choice
    signature = [tf.TensorSpec([None], tf.float32), tf.TensorSpec([None], tf.int32), tf.TensorSpec([], tf.int32),
                 tf.TensorSpec([None], tf.int32)]
    choose = tf.function(lambda *args: layer(*args), input_signature=signature)
    images = np.zeros(len(layer.operators), dtype=np.int64)
    counts = np.zeros(layer.n_reflections, dtype=np.int64)
    for batch in batches.epoch(0):
        choice = choose(batch["I"], batch["image"], batch["n_images"], batch["refl_id"])
        images += np.bincount(choice["setting"].numpy(), minlength=len(images))
        counts += np.bincount(choice["ids"].numpy(), minlength=len(counts))
    return images, counts


def to_majority_setting(model, batches):
    """Relabel a trained model so that the setting most images chose becomes the identity.

    The reference setting is the one the first training images agreed on,
    which may be any of the settings relative to the indexer's.  When most
    images chose setting ``j != 0`` (e.g. data already indexed consistently,
    all in ``j``), every per-reflection weight ``w`` of the model becomes
    ``w'[h] = w[T[h, j]]`` (each dataset's block of ``q(F)``, the reference,
    the KL counts), so the merge is written in the indexer's setting of most
    images; choices made afterwards are relative to it.  Nothing changes
    when ``T[:, j]`` is not a permutation of the index (a pseudo-merohedral
    operator near ``dmin``).

    Returns
    -------
    int
        ``j`` (0: nothing moved).
    """
    if model.setting_choice is None:
        return 0
    images, _ = settings_pass(model, batches)
    j = int(np.argmax(images))
    order = model.setting_choice.table.numpy()[:, j]
    if j == 0 or not np.array_equal(np.sort(order), np.arange(len(order))):
        return 0
    q = model.structure_factors
    for weight in (q.loc_raw, q.scale_raw, model.kl_inverse_counts, model.setting_choice.reference_sums,
                   model.setting_choice.reference_weights):
        blocks = weight.numpy().reshape(-1, len(order))
        weight.assign(blocks[:, order].ravel())
    return j


def reference_counts(model, batches):
    """Observations of each reflection in the reference setting (every image in its chosen setting).

    Parameters
    ----------
    model : careless_online.model.merging.MergingModel
    batches : careless_online.io.pipeline.ImageBatches
        The images to count (in order).

    Returns
    -------
    numpy.ndarray of int64
    """
    if model.setting_choice is None:
        return batches.reflection_counts()
    return settings_pass(model, batches)[1]


def with_setting_columns(model, batch, part):
    """Prediction columns of a batch, moved to the reference setting, with the choice columns.

    ``part`` holds the batch's prediction columns (``refl_id`` as indexed,
    optionally the observed ``Hobs, Kobs, Lobs``).  Returned: ``refl_id``
    in the reference setting, the observed indices times the chosen operator
    ``M_j`` (so ``M/ISYM`` relates them to the reference-setting ASU index)
    and :data:`SETTING_COLUMNS` per observation.  Unchanged without a choice.
    """
    if model.setting_choice is None:
        return part
    moved, choice = model.in_reference_setting(batch)
    per_image = {name: tf.gather(choice[key], batch["image"]).numpy()
                 for name, key in zip(SETTING_COLUMNS, ("setting", "margin", "confidence", "ambiguous"))}
    out = dict(part, refl_id=moved["refl_id"].numpy(), **per_image)
    if "Hobs" in part:
        observed = np.stack([part["Hobs"], part["Kobs"], part["Lobs"]], axis=1).astype(np.int64)
        for j, matrix in enumerate(model.setting_choice.matrices):
            rows = per_image["setting"] == j
            observed[rows] = observed[rows] @ matrix.T
        out.update(Hobs=observed[:, 0], Kobs=observed[:, 1], Lobs=observed[:, 2])
    return out


def output_counts(model, manifest):
    """Observations of each reflection of a cache in the model's reference setting (as indexed without a choice)."""
    if model.setting_choice is None:
        return manifest.counts()
    return settings_pass(model, ImageBatches(manifest, Standardizer.without_metadata(), batch_images=64, split="all",
                                             shuffle=False))[1]
