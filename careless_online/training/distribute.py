"""Data-parallel training with ``tf.distribute``: strategies, image sharding, the summed step.

The loss of a step is minus the ELBO share of its images, a *sum* over
observations (plus each observation's share ``KL(q(F_h) || p(F_h)) / n_h``).
With ``R`` replicas, replica ``r`` gets a disjoint slice ``B_r`` of the step's
``B`` images (``B`` = ``--batch-size``, the global images per step) and
computes ``L_r = sum_{i in B_r} l_i``.  The step's gradient is

.. math::

    g = \\nabla \\sum_r L_r = \\sum_r \\nabla L_r ,

the single-process gradient of the same images: the per-replica gradients
are all-reduced with ``SUM`` (never averaged), and the optimizer (clipping,
the non-finite guard, Adam) then runs once on ``g`` in the cross-replica
context, exactly as in a single process.

Images are sharded, not observations: each global batch of the training
stream (:class:`careless_online.io.pipeline.ImageBatches`, same order as a
single process) is cut into ``R`` contiguous runs of whole images, and input
pipeline ``p`` of ``P`` (one per worker) hands its ``R / P`` local replicas
runs ``p R/P .. (p+1) R/P - 1``.  Every image of a pass goes to exactly one
replica.
"""

import contextlib
import dataclasses
import functools
import glob
import os
import shutil
import tempfile

import numpy as np
import tensorflow as tf

from careless_online.errors import InputError
from careless_online.io.pipeline import batch_signature
from careless_online.training.loop import Trainer

#: Values of ``--strategy``.
STRATEGIES = ("auto", "single", "mirrored", "multi-worker")


def _cluster_resolver():
    """The cluster of a multi-worker run: ``TF_CONFIG``, else the SLURM allocation.

    Raises
    ------
    InputError
        If neither describes a cluster.
    """
    if os.environ.get("TF_CONFIG"):
        return tf.distribute.cluster_resolver.TFConfigClusterResolver()
    if os.environ.get("SLURM_PROCID") is not None and os.environ.get("SLURM_STEP_NODELIST"):
        return tf.distribute.cluster_resolver.SlurmClusterResolver()
    raise InputError("--strategy multi-worker needs TF_CONFIG or a SLURM job step (srun) to describe the cluster")


def _local_devices():
    """Devices of the mirrored replicas: the GPUs, else every logical CPU."""
    gpus = tf.config.list_logical_devices("GPU")
    return [d.name for d in (gpus or tf.config.list_logical_devices("CPU"))]


def resolve_strategy(name):
    """The ``tf.distribute.Strategy`` of a ``--strategy`` value.

    Parameters
    ----------
    name : {"auto", "single", "mirrored", "multi-worker"}
        ``auto``: ``mirrored`` when more than one GPU is visible, else
        ``single``.  ``single``: TensorFlow's default strategy (one device).
        ``mirrored``: :class:`tf.distribute.MirroredStrategy` over the GPUs
        (or, without GPUs, the logical CPU devices).  ``multi-worker``:
        :class:`tf.distribute.MultiWorkerMirroredStrategy` with the cluster of
        ``TF_CONFIG`` or of the SLURM job step.

    Returns
    -------
    tf.distribute.Strategy

    Raises
    ------
    InputError
        For an unknown name, or ``multi-worker`` without a cluster.
    """
    if name not in STRATEGIES:
        raise InputError(f"unknown --strategy {name!r}; choose one of {', '.join(STRATEGIES)}")
    if name == "auto":
        name = "mirrored" if len(tf.config.list_logical_devices("GPU")) > 1 else "single"
    if name == "single":
        return tf.distribute.get_strategy()
    if name == "mirrored":
        return tf.distribute.MirroredStrategy(devices=_local_devices())
    return tf.distribute.MultiWorkerMirroredStrategy(cluster_resolver=_cluster_resolver())


def is_chief(strategy):
    """Whether this process writes the user-visible outputs (always, except on non-chief workers)."""
    return bool(strategy.extended.should_checkpoint)


def replica_slices(batch, count):
    """Cut a batch of whole images into ``count`` contiguous runs of images.

    Parameters
    ----------
    batch : dict of numpy.ndarray
        A batch of :class:`~careless_online.io.pipeline.ImageBatches`
        (observations grouped by image, ``image`` = 0 .. n_images-1).
    count : int
        Number of runs (replicas).

    Returns
    -------
    list of dict
        ``count`` batches of the same layout; their images partition the
        batch's (sizes differ by at most one; a run may be empty when the
        batch has fewer images than replicas).
    """
    n_images = int(batch["n_images"])
    bounds = np.r_[0, np.cumsum([len(part) for part in np.array_split(np.arange(n_images), count)])]
    rows = np.searchsorted(batch["image"], bounds)
    slices = []
    for r in range(count):
        part = {k: v[rows[r]:rows[r + 1]] for k, v in batch.items() if k != "n_images"}
        part["image"] = part["image"] - np.int32(bounds[r])
        part["n_images"] = np.int32(bounds[r + 1] - bounds[r])
        slices.append(part)
    return slices


def pipeline_slices(batches, start_step, input_context):
    """The per-replica batches one input pipeline feeds its local replicas, in order.

    Parameters
    ----------
    batches : ImageBatches
        The global training stream (``batch_images`` = global images per step).
    start_step : int
        First global step (a resumed run).
    input_context : tf.distribute.InputContext
        Gives the pipeline number, the number of pipelines and of replicas.

    Yields
    ------
    dict
        For each global step, the runs of replicas ``p k .. p k + k - 1``
        with ``k`` the replicas per pipeline.
    """
    replicas = input_context.num_replicas_in_sync
    local = replicas // input_context.num_input_pipelines
    first = input_context.input_pipeline_id * local
    for batch in batches.batches(start_step):
        yield from replica_slices(batch, replicas)[first:first + local]


def distributed_dataset(strategy, batches, start_step, prefetch=4):
    """A distributed dataset of per-replica batches (``distribute_datasets_from_function``)."""
    signature = batch_signature(len(batches.standardizer.keys))

    def dataset_fn(input_context):
        return tf.data.Dataset.from_generator(
            lambda: pipeline_slices(batches, start_step, input_context), output_signature=signature,
        ).prefetch(prefetch)

    return strategy.distribute_datasets_from_function(dataset_fn)


def replica_seed(seed):
    """A replica's stateless seed: the step seed itself with one replica, else folded with the replica id.

    Distinct replicas must not draw the same Monte Carlo noise for their
    different observations.
    """
    context = tf.distribute.get_replica_context()
    if context is None or context.num_replicas_in_sync == 1:
        return seed
    return tf.random.experimental.stateless_fold_in(seed, context.replica_id_in_sync_group)


class DistributedTrainer(Trainer):
    """A :class:`~careless_online.training.loop.Trainer` whose steps run on every replica of a strategy.

    The model must have been built under ``strategy.scope()``; the optimizer
    is created (or built) under it here.  Each replica computes the summed
    loss of its images and its gradient; the gradients and loss terms are
    summed over replicas, and the guarded optimizer update of the base class
    runs once on the sums.  Evaluation and prediction run on the chief's
    copy of the variables, as in a single process.

    Parameters
    ----------
    strategy : tf.distribute.Strategy
    model : MergingModel
        Built under ``strategy.scope()`` (ValueError otherwise).
    *args, **kwargs
        As for :class:`~careless_online.training.loop.Trainer`.
    """

    def __init__(self, strategy, model, *args, **kwargs):
        self.strategy = strategy
        if not all(strategy.extended.variable_created_in_scope(v.value) for v in model.variables):
            raise ValueError("DistributedTrainer: build the model under strategy.scope()")
        with strategy.scope():
            super().__init__(model, *args, **kwargs)
        if self.config.run_eagerly:
            self._step = self._distributed_step
        else:
            self._step = tf.function(self._distributed_step, reduce_retracing=True,
                                     jit_compile=self.config.jit_compile or None)

    def _replica_sums(self, batch, seed):
        """On one replica: loss terms and gradients of its images, then summed over all replicas.

        One batched all-reduce (``SUM``) of the loss terms and of every
        gradient (dense; None gradients are left out and remembered).
        """
        variables = self.model.trainable_variables
        with tf.GradientTape() as tape:
            terms = self.model.loss_terms(batch, replica_seed(seed))
        gradients = tape.gradient(terms["loss"], variables)
        self._connected = [g is not None for g in gradients]
        local = (terms, [tf.convert_to_tensor(g) for g in gradients if g is not None])
        return tf.distribute.get_replica_context().all_reduce(tf.distribute.ReduceOp.SUM, local)

    def summed_gradients(self, batch, seed):
        """Loss terms and gradients of a distributed batch, each summed over the replicas.

        Returns
        -------
        (dict, list)
            Summed loss terms, and one summed gradient per trainable
            variable (None where the loss does not depend on it).
        """
        sums = self.strategy.run(self._replica_sums, args=(batch, seed))
        terms, gradients = tf.nest.map_structure(lambda x: self.strategy.experimental_local_results(x)[0], sums)
        summed = iter(gradients)
        return terms, [next(summed) if connected else None for connected in self._connected]

    def _distributed_step(self, batch, seed):
        """One step over all replicas: gradients summed, then one guarded update."""
        return self._guarded_update(*self.summed_gradients(batch, seed))

    def training_dataset(self, start_step):
        """The distributed stream of per-replica batches from ``start_step``."""
        return distributed_dataset(self.strategy, self.train, start_step)


def is_distributed(strategy):
    """Whether ``strategy`` is one of the data-parallel strategies of :func:`resolve_strategy`."""
    return isinstance(strategy, (tf.distribute.MirroredStrategy, tf.distribute.MultiWorkerMirroredStrategy))


def variable_scope(strategy):
    """The scope new variables must be created under: the strategy's, or none.

    Only variable creation goes under it: a step traced inside the scope would
    make the Keras 3 optimizer's cross-replica update ask for a ``merge_call``
    outside any replica context.
    """
    return strategy.scope() if is_distributed(strategy) else contextlib.nullcontext()


def trainer_class(strategy):
    """The trainer constructor for a strategy: :class:`DistributedTrainer` bound to it, or the plain one."""
    if not is_distributed(strategy):
        return Trainer
    return functools.partial(DistributedTrainer, strategy)


def worker_settings(settings):
    """The merge settings of this process: unchanged on the chief, private folders on other workers.

    A non-chief worker writes its outputs, checkpoints and cache under a
    temporary folder nobody reads (so two processes never write one file);
    for ``--resume`` it first copies the chief's checkpoints there, so all
    workers restart from the same step.

    Parameters
    ----------
    settings : careless_online.training.merge.MergeSettings
        With ``strategy`` set (None: returned unchanged).
    """
    if not is_distributed(settings.strategy) or is_chief(settings.strategy):
        return settings
    private = tempfile.mkdtemp(prefix="careless_online_worker_")
    base = os.path.join(private, os.path.basename(settings.base))
    if settings.resume:
        for source in glob.glob(f"{glob.escape(settings.base)}_*.ckpt"):
            shutil.copytree(source, os.path.join(private, os.path.basename(source)))
    return dataclasses.replace(settings, base=base, cache_dir=os.path.join(private, "cache"))
