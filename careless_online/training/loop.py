"""The online training loop: one gradient step per batch of images.

The step is a ``tf.function`` with a fixed input signature (flat, ragged
batches), so it is traced once whatever the number of observations.  Every
``eval_every`` steps the loop scores a fixed subset of training images and the
held-out images: negative log-likelihood and the per-image Spearman
correlation of observed and predicted intensities (CCpred), and appends a row
to the history CSV.  Every ``checkpoint_every`` steps and at the end the loop
writes the output model ``<out>_<i>.keras`` and a checkpoint unit (model,
optimizer and loop state of one step: :mod:`careless_online.training.checkpoint`).

A step whose loss or gradient norm is not finite (or whose gradient norm is
too large to square in float32, :data:`MAX_GRADIENT_NORM`) is skipped: no
optimizer update, counted in the history column ``skipped_steps``.  After
``max_nonfinite_steps`` such steps in a row the run stops with
:class:`NonFiniteError`, keeping the last checkpoint.
"""

import contextlib
import csv
import itertools
import os
import time
import weakref
from dataclasses import asdict, dataclass

import keras
import numpy as np
import tensorflow as tf

from careless_online.errors import InputError
from careless_online.io.atomic import write_atomically
from careless_online.io.identity import input_contents
from careless_online.training import checkpoint
from careless_online.training.early_stop import EarlyStop
from careless_online.training.interrupt import Interrupted
from careless_online.training.resume import interrupted_message
from careless_online.stats.correlation import spearman_per_group

#: Columns of the history CSV, in order.
HISTORY_COLUMNS = ["step", "elapsed_s", "loss", "NLL", "KL_F", "KL_Sigma", "grad_norm",
                   "ccpred_train", "ccpred_test", "NLL_train", "NLL_test", "k", "skipped_steps", "learning_rate"]

#: Largest usable global gradient norm: its square (keras's global-norm
#: clipping, Adam's second moments) must not overflow float32.  Beyond it
#: keras's clipping turns every gradient into NaN.
MAX_GRADIENT_NORM = float(np.sqrt(np.finfo(np.float32).max)) / 2.0

#: Loss terms averaged over the finite steps of an evaluation interval.
_AVERAGED = ("loss", "NLL", "KL_F", "KL_Sigma", "grad_norm")


class NonFiniteError(InputError):
    """Training stopped after too many steps in a row without a finite loss or gradient.

    Reported like a user error (one line, exit status 2): the data or the
    settings (learning rate, clipping) drove the fit where it cannot be
    computed; the last checkpoint is kept.
    """


def global_norm(tensors):
    """Global L2 norm of tensors, without float32 overflow of the squares.

    ``max|g| * sqrt(sum((g / max|g|)^2))``: finite whenever the norm itself
    is; NaN or inf if any element is.
    """
    tensors = [tf.convert_to_tensor(t) for t in tensors if t is not None]
    peak = tf.reduce_max(tf.stack([tf.reduce_max(tf.abs(t)) for t in tensors]))
    unit = tf.where(peak > 0, peak, tf.ones_like(peak))
    total = tf.add_n([tf.reduce_sum(tf.square(t / unit)) for t in tensors])
    return unit * tf.sqrt(total)


@dataclass
class TrainConfig:
    """Optimizer and loop settings.

    Attributes
    ----------
    steps : int
        Total gradient steps (a resumed run continues up to this number).
    learning_rate, beta_1, beta_2 : float
        Adam settings.
    lr_decay : float
        Fraction of the final steps over which the learning rate falls
        linearly to ``LR_FLOOR`` times ``learning_rate`` (0: constant).  Less
        step noise at the end sharpens small differences such as anomalous ones.
    clipnorm, clipvalue, global_clipnorm : float or None
        Gradient clipping (as in keras optimizers).
    eval_every : int
        Steps between evaluations and history rows.
    eval_images : int
        Images of each split scored at an evaluation.
    checkpoint_every : int or None
        Steps between checkpoints (None: only at the end).
    max_nonfinite_steps : int
        Skipped (non-finite) steps in a row after which the run stops.
    early_stop : int
        Evaluations without a better held-out NLL after which the run ends
        through its learning-rate decay (0: never;
        :mod:`careless_online.training.early_stop`).
    run_eagerly : bool
        Do not compile the step (debugging).
    jit_compile : bool
        Compile the step with XLA.
    progress : bool
        Show a progress bar.
    """

    steps: int = 10000
    learning_rate: float = 1e-2
    lr_decay: float = 0.3
    beta_1: float = 0.9
    beta_2: float = 0.99
    clipnorm: float = None
    clipvalue: float = None
    global_clipnorm: float = 1000.0
    eval_every: int = 100
    eval_images: int = 128
    checkpoint_every: int = None
    max_nonfinite_steps: int = 20
    early_stop: int = 0
    run_eagerly: bool = False
    jit_compile: bool = False
    progress: bool = True


#: Final learning rate of a decay, as a fraction of the initial one.
LR_FLOOR = 0.02


def learning_rate_at(config, step, planned=None):
    """Learning rate of step ``step`` (0-based) under ``config``'s schedule.

    A plain function of the step rather than a ``keras.optimizers.schedules``
    object: a live merge learns the end of the run (``planned``) only when the
    data stop, and a resumed run must give the same rate at the same step.

    Constant, then (with ``lr_decay``) a linear fall over the last
    ``lr_decay * planned`` steps to ``LR_FLOOR * learning_rate``, where
    ``planned`` is ``config.steps`` unless an early stop brought the end
    forward; a function of the step and the plan alone, so resumed runs
    follow the same schedule.
    """
    rate = float(config.learning_rate)
    planned = config.steps if planned is None else planned
    start = planned * (1.0 - float(config.lr_decay))
    if config.lr_decay <= 0 or step < start:
        return rate
    fraction = min((step - start) / max(planned - start, 1.0), 1.0)
    return rate * (1.0 - (1.0 - LR_FLOOR) * fraction)


def make_optimizer(config):
    """The Adam optimizer described by a :class:`TrainConfig`."""
    return keras.optimizers.Adam(
        learning_rate=config.learning_rate, beta_1=config.beta_1, beta_2=config.beta_2,
        clipnorm=config.clipnorm, clipvalue=config.clipvalue, global_clipnorm=config.global_clipnorm,
    )


class History:
    """The history CSV: a header, then one row per evaluation, appended as training goes.

    Parameters
    ----------
    path : str or None
        The CSV (None: no history).
    start_step : int
        Steps already done.  A new run (0) starts a new file.  A resumed run
        keeps the rows of steps up to ``start_step`` and drops the later ones
        (written by the stopped run after its last checkpoint, and written
        again now), so the steps of the file strictly increase.  The file is
        rewritten atomically (:mod:`careless_online.io.atomic`).
    """

    def __init__(self, path, start_step=0):
        self.path = path
        self.kept = []
        if path:
            self.kept = _rows_up_to(path, start_step) if start_step > 0 else []
            write_atomically(path, lambda tmp: _write_rows(tmp, [HISTORY_COLUMNS, *self.kept]))

    @property
    def kept_rows(self):
        """The rows kept from before a resume, as dicts keyed by :data:`HISTORY_COLUMNS`."""
        return [dict(zip(HISTORY_COLUMNS, row)) for row in self.kept]

    def write(self, row):
        """Append one row (a dict keyed by :data:`HISTORY_COLUMNS`)."""
        if not self.path:
            return
        with open(self.path, "a", newline="") as handle:
            csv.writer(handle).writerow([_fmt(row.get(c, float("nan"))) for c in HISTORY_COLUMNS])


def _rows_up_to(path, last_step):
    """The complete rows of the history CSV ``path`` whose step is at most ``last_step``, as lists of strings.

    Columns missing from an older file read as ``nan``; a row cut short by
    a kill, or without a readable step, is dropped.
    """
    if not os.path.exists(path):
        return []
    with open(path, newline="") as handle:
        reader = csv.DictReader(handle)
        complete = [row for row in reader if None not in row.values() and None not in row]
    kept = []
    for row in complete:
        try:
            step = int(row["step"])
        except (KeyError, ValueError):
            continue
        if step <= last_step:
            kept.append([row.get(c, "nan") for c in HISTORY_COLUMNS])
    return kept


def _write_rows(path, rows):
    with open(path, "w", newline="") as handle:
        csv.writer(handle).writerows(rows)


def _fmt(value):
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    return f"{float(value):.6g}"


#: ``I/SigI`` of an observation, in multiples of its batch's median, beyond which it is named as the cause.
OUTLIER_FACTOR = 1000.0


def _likely_cause(batch):
    """What to blame for a diverging fit: an outlier observation of the batch if it holds one, else the settings."""
    advice = "try a lower --learning-rate or --global-clipnorm"
    try:
        intensity, sigma = (np.asarray(batch[key], dtype=np.float64) for key in ("I", "SigI"))
    except (TypeError, ValueError):  # no batch, or one split over replicas
        return advice
    if intensity.ndim != 1 or len(intensity) == 0:
        return advice
    snr = np.abs(intensity) / sigma
    worst = int(np.argmax(snr))
    typical = max(float(np.median(snr)), 1.0)
    if not snr[worst] > OUTLIER_FACTOR * typical:
        return advice
    return (f"the batch holds an outlier: I = {intensity[worst]:.4g}, SigI = {sigma[worst]:.4g} "
            f"in image {int(batch['image_id'][worst])}, I/SigI {snr[worst] / typical:.3g} times the batch's median; "
            "fix or remove it (docs/reliability.md, the outlier rule)")


class Trainer:
    """Runs the optimization of a :class:`~careless_online.model.MergingModel`.

    Parameters
    ----------
    model : MergingModel
    train : ImageBatches
        Training images (shuffled).
    test : ImageBatches or None
        Held-out images (unshuffled), for cross-validation.
    config : TrainConfig
    history_path : str or None
        History CSV.
    checkpoint_path : str or None
        The output model ``<out>_<i>.keras``; checkpoint units go to
        :func:`careless_online.training.checkpoint.folder` of it.
    monitor : ImageBatches or None
        A fixed, unshuffled view of the training images for train CCpred.
    seed : int
        Run seed of the Monte Carlo samples.
    log : callable
        Where notes on the run go (an early stop).
    run_record : dict or None
        The run's configuration (:func:`careless_online.training.run_config.record`),
        stored in each checkpoint unit so that ``--resume`` can compare it.
    stop : careless_online.training.interrupt.SignalStop or None
        Looked at after every step and evaluation batch: a SIGINT or SIGTERM
        stops the run there, naming the checkpoint to resume from.

    The model's optimizer is used when it has one (a checkpoint restored by
    ``--resume``); otherwise the model is compiled with a fresh optimizer
    from ``config`` (a new model, or ``--model-in``).
    """

    def __init__(self, model, train, test, config, history_path=None, checkpoint_path=None, monitor=None,
                 seed=1234, log=print, run_record=None, stop=None):
        self.model = model
        self.run_record = run_record
        self.stop = stop
        self.log = log
        self.train = train
        self.test = test
        self.monitor = monitor
        self.config = config
        self.seed = int(seed)
        self.history_path = history_path
        self.checkpoint_path = checkpoint_path
        if getattr(model, "optimizer", None) is None:
            model.compile(optimizer=make_optimizer(config))
        self.optimizer = model.optimizer
        if not self.optimizer.built:
            # build the slots now: creating variables inside the traced step would force a retrace
            self.optimizer.build(model.trainable_variables)
        signature = train.signature()
        if config.run_eagerly:
            self._step = self._train_step
            self._predict = self._predict_step
        else:
            seed_spec = tf.TensorSpec([2], tf.int32)
            self._step = tf.function(self._train_step, input_signature=[signature, seed_spec],
                                     jit_compile=config.jit_compile or None)
            self._predict = tf.function(self._predict_step, input_signature=[signature, seed_spec])
        self.elapsed = 0.0
        self.skipped_steps = 0
        self.pending = {"sums": {}, "count": 0}
        self.planned = config.steps
        # evaluation batches of each view, kept while the view lives: live rounds rebuild their views, so a
        # view's id may be reused by the next round's (a dict keyed by id served one view's images for another)
        self._scored = weakref.WeakKeyDictionary()

    def use(self, train, test, monitor, config):
        """Go on with other data views and another configuration (a live merge's next round).

        The compiled steps, the optimizer state, the elapsed time and the count
        of skipped steps carry over.
        """
        self.train, self.test, self.monitor, self.config = train, test, monitor, config

    def step_seed(self, step, stream=0):
        """Stateless seed of a step: the same step of the same run always samples alike."""
        return tf.constant([self.seed % (2**31), (step * 4 + stream) % (2**31)], dtype=tf.int32)

    def _train_step(self, batch, seed):
        """One step; skipped (no update) unless the loss and the gradient norm are usable."""
        variables = self.model.trainable_variables
        with tf.GradientTape() as tape:
            terms = self.model.loss_terms(batch, seed)
        gradients = tape.gradient(terms["loss"], variables)
        return self._guarded_update(terms, gradients)

    def _guarded_update(self, terms, gradients):
        """Apply ``gradients`` unless the loss or their norm is unusable; adds ``skipped`` and ``grad_norm``."""
        variables = self.model.trainable_variables
        norm = global_norm(gradients)
        usable = tf.math.is_finite(terms["loss"]) & (norm < MAX_GRADIENT_NORM)  # False for NaN

        def update():
            self.optimizer.apply(gradients, variables)
            return tf.constant(0.0)

        terms["skipped"] = tf.cond(usable, update, lambda: tf.constant(1.0))
        terms["grad_norm"] = norm
        return terms

    def _predict_step(self, batch, seed):
        batch, _ = self.model.in_reference_setting(batch)  # the images' chosen indexing settings (no update)
        scale_parameters = self.model.scale_parameters(batch)  # the networks run once for both
        ipred, sigipred = self.model.predict_intensities(batch, scale_parameters)
        nll = self.model.nll_per_observation(batch, seed, scale_parameters)
        return ipred, sigipred, nll

    def predict(self, batch, index=0):
        """Predicted intensities, their std and NLL of a batch (reproducible per ``index``)."""
        return self._predict(batch, self.step_seed(index, stream=1))

    def score(self, batches, max_images):
        """Mean per-image Spearman CCpred and mean NLL per observation on some images."""
        if batches is None or batches.n_images == 0:
            return float("nan"), float("nan")
        n_batches = max(1, int(np.ceil(max_images / batches.batch_images)))
        kept = self._scored.setdefault(batches, {})
        if n_batches not in kept:
            # the same images every time: read them once, keep them while the view lives
            kept[n_batches] = list(itertools.islice(batches.epoch(0), n_batches))
        obs, pred, image, nll = [], [], [], []
        for number, batch in enumerate(kept[n_batches]):
            self._check_stop()
            ipred, _, batch_nll = self.predict(batch, number)
            obs.append(batch["I"])
            pred.append(ipred.numpy())
            image.append(batch["image_id"])
            nll.append(batch_nll.numpy())
        cc = spearman_per_group(np.concatenate(obs), np.concatenate(pred), np.concatenate(image))
        return float(np.nanmean(cc.to_numpy())) if len(cc) else float("nan"), float(np.mean(np.concatenate(nll)))

    def run(self, start_step=0, elapsed=0.0, skipped_steps=0, pending=None):
        """Train from ``start_step`` to ``config.steps`` (or an early stop's end).

        Parameters
        ----------
        start_step : int
            Steps already done (a resumed run).
        elapsed : float
            Seconds already spent.
        skipped_steps : int
            Steps already skipped (a resumed run's count).
        pending : dict or None
            A resumed run's loss sums and count of finite steps since its
            last evaluation (``{"sums": {...}, "count": n}``), so that the
            next history row averages over the same steps as an
            uninterrupted run's.

        Returns
        -------
        dict
            The last history row.

        Raises
        ------
        NonFiniteError
            After ``config.max_nonfinite_steps`` skipped steps in a row.
        careless_online.training.interrupt.Interrupted
            On SIGINT or SIGTERM (see ``stop``), naming the checkpoint to resume from.
        """
        self.step = start_step
        try:
            with self.stop.deferred(self._interrupted_message, self._remove_temporaries) if self.stop is not None \
                    else contextlib.nullcontext():
                return self._run(start_step, elapsed, skipped_steps, pending)
        except Interrupted as err:
            raise err.again(self._interrupted_message()) from None
        except KeyboardInterrupt:
            raise Interrupted(message=self._interrupted_message()) from None

    def _remove_temporaries(self):
        """Remove this process's temporary model file and partial checkpoint unit (before a hard exit)."""
        if self.checkpoint_path:
            checkpoint.remove_temporaries(self.checkpoint_path)

    def _interrupted_message(self):
        return interrupted_message(self.checkpoint_path, self.step)

    def _check_stop(self):
        if self.stop is not None:
            self.stop.check(self._interrupted_message)

    def _run(self, start_step, elapsed, skipped_steps, pending):
        """The loop of :meth:`run`."""
        config = self.config
        history = History(self.history_path, start_step=start_step)
        plan = EarlyStop(config.early_stop, config.steps, config.lr_decay).replay(history.kept_rows)
        dataset = self.training_dataset(start_step)
        remaining = max(plan.planned - start_step, 0)
        bar = None
        if config.progress and remaining:
            from careless_online.progress import progress_display

            bar = progress_display(total=plan.planned, initial=start_step, unit="step")
        self.elapsed = elapsed
        self.skipped_steps = int(skipped_steps)
        started = time.perf_counter() - elapsed
        row = {}
        pending = pending or {}
        sums, count, in_a_row = dict(pending.get("sums", {})), int(pending.get("count", 0)), 0
        self.planned = plan.planned
        step = start_step
        for batch in itertools.islice(dataset, remaining):
            if step >= plan.planned:  # brought forward by an early stop
                break
            if config.lr_decay > 0:
                self.optimizer.learning_rate = learning_rate_at(config, step, plan.planned)
            terms = self._step(batch, self.step_seed(step))
            step += 1
            self.step = step
            self._check_stop()
            if float(terms["skipped"]):
                in_a_row = self._count_skipped(step, in_a_row + 1, batch)
            else:
                in_a_row = 0
                for key in _AVERAGED:
                    sums[key] = sums.get(key, 0.0) + float(terms[key])
                count += 1
            last = step == plan.planned
            if step % config.eval_every == 0 or last:
                self.elapsed = time.perf_counter() - started
                row = self._history_row(step, sums, count)
                sums, count = {}, 0
                history.write(row)
                last = self._watch(plan, row, bar) or last
                if bar is not None:
                    bar.set_postfix(loss=f"{row['loss']:.4g}", ccpred=f"{row['ccpred_train']:.3f}/{row['ccpred_test']:.3f}")
            if bar is not None:
                bar.update(1)
            if self.checkpoint_path and ((config.checkpoint_every and step % config.checkpoint_every == 0) or last):
                self.elapsed = time.perf_counter() - started
                self.pending, self.planned = {"sums": dict(sums), "count": count}, plan.planned
                self.save(step)
        if bar is not None:
            bar.close()
        self.elapsed = time.perf_counter() - started
        return row

    def _watch(self, plan, row, bar):
        """Give an evaluation's held-out NLL to the early stop; True when the run ends at this step."""
        if not plan.observe(row["step"], row["NLL_test"]):
            return False
        self.log(plan.describe())
        if bar is not None:
            bar.total = plan.planned
        return plan.planned <= row["step"]

    def training_dataset(self, start_step):
        """The endless stream of training batches from global step ``start_step``."""
        return self.train.dataset(start_step=start_step)

    def _count_skipped(self, step, in_a_row, batch=None):
        """Count a skipped step; stop the run after too many in a row (naming an outlier of ``batch`` if any)."""
        self.skipped_steps += 1
        if in_a_row >= self.config.max_nonfinite_steps:
            found = checkpoint.latest(checkpoint.folder(self.checkpoint_path)) if self.checkpoint_path else None
            kept = f"; the last checkpoint is {found.path} (step {found.step})" if found else "; no checkpoint was written"
            raise NonFiniteError(
                f"training stopped at step {step}: {in_a_row} steps in a row had a non-finite loss or gradient "
                f"({_likely_cause(batch)}){kept}")
        return in_a_row

    def _history_row(self, step, sums, count):
        """The history row of an evaluation at ``step`` (averages over the finite steps since the last)."""
        cc_train, nll_train = self.score(self.monitor, self.config.eval_images)
        cc_test, nll_test = self.score(self.test, self.config.eval_images)
        row = {"step": step, "elapsed_s": self.elapsed, "ccpred_train": cc_train, "ccpred_test": cc_test,
               "NLL_train": nll_train, "NLL_test": nll_test, "k": float(self.model.k),
               "skipped_steps": self.skipped_steps, "learning_rate": float(np.asarray(self.optimizer.learning_rate))}
        row.update({key: (sums[key] / count if count else float("nan")) for key in _AVERAGED})
        return row

    def save(self, step):
        """Write the output model and a checkpoint unit (model, optimizer, loop state) at ``step``."""
        state = {"step": int(step), "elapsed_s": float(self.elapsed), "skipped_steps": int(self.skipped_steps),
                 "config": asdict(self.config), "inputs": input_contents(self.train.manifest),
                 "pending": self.pending, "finished": int(step) >= int(self.planned)}
        if self.run_record is not None:
            state["run"] = self.run_record
        checkpoint.save(self.model, checkpoint.folder(self.checkpoint_path), state)
        checkpoint.write_model(self.model, self.checkpoint_path)
