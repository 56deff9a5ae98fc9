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

import atexit
import contextlib
import dataclasses
import functools
import glob
import os
import re
import shutil
import subprocess
import sys
import tempfile

import numpy as np
import tensorflow as tf

from careless_online.errors import InputError
from careless_online.io.cache_location import default_cache_dir
from careless_online.io.shared_cache import Share
from careless_online.training import checkpoint
from careless_online.training.loop import Trainer

#: Values of ``--strategy``.
STRATEGIES = ("auto", "single", "mirrored", "multi-worker")

#: Default of ``--worker-timeout`` (seconds).
WORKER_TIMEOUT = 600.0

#: What a collective raises on the survivors when a worker dies: TensorFlow's
#: health check aborts the collectives (Unavailable), an all-reduce runs past
#: its timeout (DeadlineExceeded), or it is cancelled or aborted meanwhile.
PEER_ERRORS = (tf.errors.UnavailableError, tf.errors.DeadlineExceededError, tf.errors.CancelledError,
               tf.errors.AbortedError)


class WorkerLost(InputError):
    """A multi-worker run stopped because a worker died or stopped responding.

    Reported like a user error (one line, exit status 2, no traceback); the
    chief's last checkpoint is kept and every worker can restart with ``--resume``.
    """


#: The watchdog process: ends the parent when no beat (a byte on its stdin) comes for ``timeout`` seconds.
_WATCH = """
import os, select, signal, sys
parent, timeout, message = int(sys.argv[1]), float(sys.argv[2]), sys.argv[3]
while True:
    if not select.select([0], [], [], timeout)[0]:
        sys.stderr.write(message + "\\n")
        sys.stderr.flush()
        os.kill(parent, signal.SIGKILL)
        break
    if not os.read(0, 4096):
        break
"""


class Watchdog:
    """Ends this process with a one-line error when the guarded work shows no progress for ``timeout`` seconds.

    TensorFlow can wait without end, holding the interpreter, for a worker
    that never joins the cluster, or inside a collective whose peer hangs;
    neither a Python thread nor a signal handler runs then.  So a small
    separate process watches: each :meth:`beat` writes a byte to it, and when
    none comes for ``timeout`` seconds it prints ``careless_online: error:
    <message>`` on the shared stderr and kills this process (exit status
    137).  Leaving the block (or this process ending) stops it.

    Parameters
    ----------
    timeout : float
        Seconds without a beat after which the process ends.
    message : str
        The one-line error.
    """

    def __init__(self, timeout, message):
        if not float(timeout) > 0:
            raise ValueError(f"Watchdog: timeout must be positive (got {timeout})")
        self.timeout, self.message = float(timeout), " ".join(str(message).split())
        self._process = None

    def beat(self):
        """Record progress."""
        try:
            os.write(self._process.stdin.fileno(), b".")
        except (BrokenPipeError, AttributeError, ValueError):
            pass  # the watchdog is gone or not started: nothing to tell

    def __enter__(self):
        self._process = subprocess.Popen(
            [sys.executable, "-I", "-c", _WATCH, str(os.getpid()), repr(self.timeout),
             f"careless_online: error: {self.message}"], stdin=subprocess.PIPE)
        return self

    def __exit__(self, *exc):
        self._process.stdin.close()
        self._process.wait()
        self._process = None
        return False


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


def resolve_strategy(name, timeout=WORKER_TIMEOUT):
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
    timeout : float
        Multi-worker only: seconds to wait for every worker to join the
        cluster (then the process ends with a one-line error, see
        :class:`Watchdog`), and the timeout of every collective
        (``tf.distribute.experimental.CommunicationOptions``).

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
    resolver = _cluster_resolver()
    workers = _worker_count(resolver.cluster_spec())
    options = tf.distribute.experimental.CommunicationOptions(timeout_seconds=float(timeout))
    joined = (f"the cluster did not come together: not all {workers} workers joined within {float(timeout):g} s "
              "(check every worker runs, TF_CONFIG's addresses and --worker-timeout)")
    with Watchdog(timeout, joined):
        return tf.distribute.MultiWorkerMirroredStrategy(cluster_resolver=resolver, communication_options=options)


def _worker_count(spec):
    """Workers of a cluster spec (its chief, if any, and its workers)."""
    return sum(spec.num_tasks(job) for job in ("chief", "worker") if job in spec.jobs)


def worker_rank(strategy):
    """``(rank, count)`` of this process among the workers: the chief is 0; ``(0, 1)`` unless multi-worker."""
    if not isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        return 0, 1
    resolver = strategy.cluster_resolver
    spec = resolver.cluster_spec()
    chiefs = spec.num_tasks("chief") if "chief" in spec.jobs else 0
    rank = int(resolver.task_id) + (chiefs if resolver.task_type == "worker" else 0)
    return rank, _worker_count(spec)


def cache_share(strategy, timeout=WORKER_TIMEOUT):
    """This process's :class:`~careless_online.io.shared_cache.Share` of the cache building, or None alone."""
    rank, count = worker_rank(strategy) if strategy is not None else (0, 1)
    return Share(rank, count, timeout=timeout) if count > 1 else None


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
    signature = batches.signature()

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

    A run stops with :class:`WorkerLost` when a collective fails because a
    worker died (:data:`PEER_ERRORS`), and the process ends with the same
    one-line message when no step finishes for ``timeout`` seconds
    (:class:`Watchdog`).

    Parameters
    ----------
    strategy : tf.distribute.Strategy
    model : MergingModel
        Built under ``strategy.scope()`` (ValueError otherwise).
    *args, **kwargs
        As for :class:`~careless_online.training.loop.Trainer`.
    timeout : float, optional
        Seconds a step may take, first tracing included (``--worker-timeout``).
    log : callable, optional
        Receives, at the end of :meth:`run`, the images this worker's
        replicas trained on (all and distinct).
    """

    def __init__(self, strategy, model, *args, timeout=WORKER_TIMEOUT, log=print, **kwargs):
        self.strategy = strategy
        self.timeout = float(timeout)
        self.log = log
        self._watchdog = None
        self._reached = 0
        self._images, self._seen = 0, None
        if not all(strategy.extended.variable_created_in_scope(v.value) for v in model.variables):
            raise ValueError("DistributedTrainer: build the model under strategy.scope()")
        with strategy.scope():
            super().__init__(model, *args, **kwargs)
        if self.config.run_eagerly:
            self._compiled = self._distributed_step
        else:
            self._compiled = tf.function(self._distributed_step, reduce_retracing=True,
                                         jit_compile=self.config.jit_compile or None)
        self._step = self._watched_step

    def _watched_step(self, batch, seed):
        """One step, counted and reported to the watchdog."""
        self._count_images(batch)
        terms = self._compiled(batch, seed)
        self._reached += 1
        if self._watchdog is not None:
            self._watchdog.beat()
        return terms

    def run(self, start_step=0, elapsed=0.0, skipped_steps=0, pending=None):
        """Train as :meth:`Trainer.run` does, stopping with :class:`WorkerLost` when the cluster breaks.

        Raises
        ------
        WorkerLost
            When a collective fails or no step finishes for ``timeout`` seconds.
        """
        self._reached = int(start_step)
        folder = checkpoint.folder(self.checkpoint_path) if self.checkpoint_path else "nowhere"
        watchdog = Watchdog(self.timeout, f"no step finished for {self.timeout:g} s: a worker of the cluster died "
                                          f"or stopped responding; checkpoints (if any) are in {folder}; restart "
                                          "every worker with --resume")
        with watchdog:
            self._watchdog = watchdog
            try:
                return super().run(start_step, elapsed, skipped_steps, pending)
            except PEER_ERRORS as err:
                raise WorkerLost(self._lost_message(_reason(err))) from None
            finally:
                self._watchdog = None
                self._log_images()

    def _count_images(self, batch):
        """Count the images of this worker's replicas in a step (every image once per pass, checked in tests)."""
        ids = np.concatenate([np.asarray(t) for t in self.strategy.experimental_local_results(batch["image_id"])])
        ids = np.unique(ids)
        if self._seen is None or len(self._seen) < self.train.manifest.n_images:
            self._seen = np.zeros(self.train.manifest.n_images, dtype=bool)
        self._images += len(ids)
        self._seen[ids] = True

    def _log_images(self):
        rank, count = worker_rank(self.strategy)
        distinct = int(self._seen.sum()) if self._seen is not None else 0
        self.log(f"worker {rank} of {count}: its {self.strategy.num_replicas_in_sync // count} replicas trained "
                 f"on {self._images} images ({distinct} distinct)")

    def _lost_message(self, reason):
        """One line: where the run stopped, why, and how to go on."""
        found = checkpoint.latest(checkpoint.folder(self.checkpoint_path)) if self.checkpoint_path else None
        kept = (f"the last checkpoint is {found.path} (step {found.step})" if found is not None
                else "no checkpoint was written")
        return (f"training stopped at step {self._reached}: a worker of the cluster died or stopped responding "
                f"({reason}); {kept}; restart every worker with --resume")

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


def trainer_class(strategy, timeout=WORKER_TIMEOUT, log=print):
    """The trainer constructor for a strategy: :class:`DistributedTrainer` bound to it, or the plain one."""
    if not is_distributed(strategy):
        return Trainer
    return functools.partial(DistributedTrainer, strategy, timeout=timeout, log=log)


def _reason(err):
    """The readable end of a TensorFlow error message, on one line (without its ``{{function_node ...}}``)."""
    text = re.sub(r"\{\{.*?\}\}", "", err.message or type(err).__name__)
    return " ".join(text.split()).rstrip(":")[:300] or type(err).__name__


def worker_settings(settings):
    """The merge settings of this process: unchanged on the chief, a private output folder on other workers.

    A non-chief worker writes its checkpoints and history under a temporary
    folder nobody reads (so two processes never write one file) and no
    predictions; for ``--resume`` it first copies the chief's checkpoints
    there, so all workers restart from the same step.  The cache stays
    shared: the workers build it together
    (:mod:`careless_online.io.shared_cache`).

    Parameters
    ----------
    settings : careless_online.training.merge.MergeSettings
        With ``strategy`` set (None: returned unchanged).
    """
    if not is_distributed(settings.strategy) or is_chief(settings.strategy):
        return settings
    private = tempfile.mkdtemp(prefix="careless_online_worker_")
    atexit.register(shutil.rmtree, private, True)
    base = os.path.join(private, os.path.basename(settings.base))
    if settings.resume:
        for source in glob.glob(f"{glob.escape(settings.base)}_*.ckpt"):
            shutil.copytree(source, os.path.join(private, os.path.basename(source)))
    cache_dir = default_cache_dir(settings.base, settings.cache_dir)
    return dataclasses.replace(settings, base=base, cache_dir=cache_dir, predictions=False)
