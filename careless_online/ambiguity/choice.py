"""Per-image choice of the indexing setting, with no per-image parameters.

For image ``b`` with observations ``i`` (intensity ``I_i`` of unique
reflection ``h(i)``) and settings ``j`` (operators ``M_j``, identity first),
the score of a setting is the Pearson correlation over the image's
observations

.. math::

    r_{bj} = \\mathrm{corr}_i\\left(I_i,\\; R_{M_j h(i)}\\right)

with a reference ``R`` of expected intensities in the reference setting
(the model's ``E[F^2]``, or the :class:`OnlineReference` below).  Scale,
resolution fall-off and the unknown partialities cancel in a correlation.
The image takes the best setting ``j^* = argmax_j r_{bj}`` (no gradient
flows through the choice).  Its confidence uses Fisher's transform: with
``n_b`` observations, ``z_{bj} = \\sqrt{n_b - 3}\\,\\mathrm{atanh}(r_{bj})``
has unit variance, so the margin ``\\Delta_b = z_{bj^*} - z_{bj'}`` to the
runner-up ``j'`` is in standard deviations, and

.. math::

    p_b = \\Phi(\\Delta_b / \\sqrt{2})

is the probability that the chosen setting truly scores higher than the
runner-up.  An image with ``\\Delta_b < `` :data:`AMBIGUOUS_MARGIN` is
flagged ambiguous.  With no reference for any of its reflections an image
keeps its setting as indexed (ties go to the identity).
"""

import numpy as np
import tensorflow as tf

from careless_online.checks import integer_at_least, positive

#: Margin (standard deviations of Fisher's z) under which a choice is flagged ambiguous.
AMBIGUOUS_MARGIN = 3.0


def _segment_sum(values, image, n_images):
    return tf.math.unsorted_segment_sum(values, image, n_images)


def image_scores(intensity, image, n_images, candidates, valid):
    """Correlation of each image's intensities with the reference under each setting.

    Parameters
    ----------
    intensity : tf.Tensor
        float32 ``[n]`` observed intensities.
    image : tf.Tensor
        int32 ``[n]`` image of each observation within the batch.
    n_images : tf.Tensor
        int32 scalar.
    candidates : tf.Tensor
        float32 ``[n, n_ops]`` reference value of each observation under each setting.
    valid : tf.Tensor
        bool ``[n, n_ops]``: the reference has that reflection.

    Returns
    -------
    (tf.Tensor, tf.Tensor)
        ``r`` float32 ``[n_images, n_ops]`` (0 where undefined) and the
        number of observations ``n_b`` used, float32 ``[n_images, n_ops]``.
    """
    w = tf.cast(valid, tf.float32)
    x = intensity[:, None] * w
    y = tf.where(valid, candidates, 0.0)
    n = _segment_sum(w, image, n_images)
    safe_n = tf.maximum(n, 1.0)
    sx, sy = _segment_sum(x, image, n_images), _segment_sum(y, image, n_images)
    sxx, syy = _segment_sum(x * x, image, n_images), _segment_sum(y * y, image, n_images)
    sxy = _segment_sum(x * y, image, n_images)
    cov = sxy - sx * sy / safe_n
    var = tf.nn.relu(sxx - sx * sx / safe_n) * tf.nn.relu(syy - sy * sy / safe_n)
    defined = (n >= 4.0) & (var > 0.0)
    r = tf.where(defined, cov / tf.sqrt(tf.where(defined, var, 1.0)), 0.0)
    return tf.clip_by_value(r, -0.999, 0.999), n


def choose(scores, counts):
    """Best setting, its margin and confidence per image (see the module docstring).

    Parameters
    ----------
    scores, counts : tf.Tensor
        From :func:`image_scores`.

    Returns
    -------
    dict of tf.Tensor
        ``setting`` int32 ``[n_images]``, ``margin`` (Fisher-z standard
        deviations) and ``confidence`` float32 ``[n_images]``, and
        ``ambiguous`` bool ``[n_images]``.
    """
    z = tf.sqrt(tf.nn.relu(counts - 3.0)) * tf.atanh(scores)
    setting = tf.argmax(z, axis=1, output_type=tf.int32)
    if z.shape[1] == 1:
        margin = tf.fill(tf.shape(setting), np.float32(np.inf))
    else:
        top = tf.math.top_k(z, k=2).values
        margin = top[:, 0] - top[:, 1]
    confidence = 0.5 * (1.0 + tf.math.erf(margin / 2.0))
    return {"setting": setting, "margin": margin, "confidence": confidence,
            "ambiguous": margin < AMBIGUOUS_MARGIN}


def chosen_ids(table_ids, image, setting):
    """Each observation's unique-reflection id in its image's chosen setting.

    ``table_ids`` is ``[n, n_ops]`` (the reflection table gathered at the
    observations), ``setting`` ``[n_images]``.
    """
    pick = tf.gather(setting, image)
    return tf.gather(table_ids, pick[:, None], batch_dims=1)[:, 0]


class OnlineReference(tf.Module):
    """A slowly built reference of normalized intensities in the reference setting.

    ``R_h = S_h / W_h`` with exponentially forgotten sums: each update first
    multiplies ``S`` and ``W`` by ``decay`` and then adds the chosen
    observations' intensities divided by their image's mean.  The first
    update takes only the batch's first image, so the first image defines
    the reference setting and later images are chosen against it; forgetting
    lets early, poorly informed choices fade.

    Parameters
    ----------
    n_reflections : int
    decay : float
        Factor in (0, 1] applied to the sums at each update.
    """

    def __init__(self, n_reflections, decay=0.999, name=None):
        super().__init__(name=name)
        self.n_reflections = integer_at_least("n_reflections", n_reflections, 1)
        self.decay = positive("decay", decay)
        if self.decay > 1.0:
            raise ValueError(f"decay must be at most 1, got {decay}")
        self.sums = tf.Variable(tf.zeros([self.n_reflections]), trainable=False)
        self.weights = tf.Variable(tf.zeros([self.n_reflections]), trainable=False)

    def candidates(self, table_ids):
        """Reference values ``[n, n_ops]`` and their validity at the given ids (-1: missing)."""
        safe = tf.maximum(table_ids, 0)
        weight = tf.gather(self.weights, safe)
        valid = (table_ids >= 0) & (weight > 0.0)
        return tf.gather(self.sums, safe) / tf.where(valid, weight, 1.0), valid

    def update(self, intensity, image, n_images, ids):
        """Add a batch's intensities at their chosen ids (only its first image while empty)."""
        mean = _segment_sum(intensity, image, n_images) / tf.maximum(
            _segment_sum(tf.ones_like(intensity), image, n_images), 1.0)
        values = intensity / tf.maximum(tf.gather(mean, image), 1e-6)
        keep = (ids >= 0) & ((tf.reduce_sum(self.weights) > 0.0) | (image == 0))
        ids = tf.boolean_mask(ids, keep)
        self.sums.assign(self.decay * self.sums + tf.math.unsorted_segment_sum(
            tf.boolean_mask(values, keep), ids, self.n_reflections))
        self.weights.assign(self.decay * self.weights + tf.math.unsorted_segment_sum(
            tf.ones_like(ids, tf.float32), ids, self.n_reflections))

    def step(self, intensity, image, n_images, table_ids):
        """Choose every image's setting against the reference, then update it.

        Returns
        -------
        dict of tf.Tensor
            :func:`choose`'s outputs and ``ids`` (the chosen id of each observation).
        """
        candidates, valid = self.candidates(table_ids)
        scores, counts = image_scores(intensity, image, n_images, candidates, valid)
        result = choose(scores, counts)
        result["ids"] = chosen_ids(table_ids, image, result["setting"])
        self.update(intensity, image, n_images, result["ids"])
        return result
