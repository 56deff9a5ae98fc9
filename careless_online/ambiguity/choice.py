"""Per-image choice of the indexing setting, with no per-image parameters.

For image ``b`` with observations ``i`` (intensity ``I_i`` of unique
reflection ``h(i)``) and settings ``j`` (operators ``M_j``, identity first),
the score of a setting is the Pearson correlation over the image's
observations

.. math::

    r_{bj} = \\mathrm{corr}_i\\left(\\mathrm{asinh}(I_i / \\langle I \\rangle_b),\\;
             \\mathrm{asinh}(R_{M_j h(i)})\\right)

with ``<I>_b`` the image's mean intensity and a reference ``R`` of
normalized intensities in the reference setting (the
:class:`OnlineReference` below).  The image's scale cancels in a
correlation; ``asinh`` (linear near 0, logarithmic above) keeps one strong
reflection from deciding the score (measured: with raw intensities one
image of 120 took the wrong setting with a margin of 5 standard deviations,
with ``asinh`` none, smallest margin 3.4).
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

from careless_online.ambiguity.outputs import AMBIGUOUS_MARGIN
from careless_online.checks import integer_at_least, positive



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


def reference_candidates(sums, weights, table_ids):
    """Reference values ``R = S / W`` ``[n, n_ops]`` at the given ids, and their validity (-1: missing).

    Parameters
    ----------
    sums, weights : tf.Tensor
        float32 ``[n_reflections]`` sums ``S_h`` and weights ``W_h`` of the reference.
    table_ids : tf.Tensor
        int32 ``[n, n_ops]`` id of each observation under each setting.
    """
    safe = tf.maximum(table_ids, 0)
    weight = tf.gather(weights, safe)
    valid = (table_ids >= 0) & (weight > 0.0)
    return tf.gather(sums, safe) / tf.where(valid, weight, 1.0), valid


def normalized_intensity(intensity, image, n_images):
    """``I_i / <I>_b``: each observation's intensity over its image's mean intensity."""
    mean = _segment_sum(intensity, image, n_images) / tf.maximum(
        _segment_sum(tf.ones_like(intensity), image, n_images), 1.0)
    return intensity / tf.maximum(tf.gather(mean, image), 1e-6)


def reference_increments(intensity, image, n_images, ids, informed, empty):
    """What one batch adds to the reference sums and weights, per reflection id.

    Each observation adds ``I_i / <I>_b`` (its image's mean intensity
    ``<I>_b``) to ``S`` and 1 to ``W`` at its chosen id.  Only images whose
    choice was ``informed`` (a defined score) add, so that images chosen
    by default against a thin reference do not blur it; while the reference
    is ``empty`` only the batch's first image adds: it defines the
    reference setting.

    Parameters
    ----------
    intensity : tf.Tensor
        float32 ``[n]``.
    image : tf.Tensor
        int32 ``[n]`` image within the batch.
    n_images : tf.Tensor
        int32 scalar.
    ids : tf.Tensor
        int32 ``[n]`` chosen id of each observation (-1: outside the index).
    informed : tf.Tensor
        bool ``[n_images]``.
    empty : tf.Tensor
        bool scalar: the reference holds nothing yet.

    Returns
    -------
    (tf.Tensor, tf.Tensor)
        Values and ids of the observations that add (each with weight 1),
        to be summed per id by the caller.
    """
    values = normalized_intensity(intensity, image, n_images)
    adds = tf.where(empty, tf.equal(image, 0), tf.gather(informed, image))
    keep = (ids >= 0) & adds
    return tf.boolean_mask(values, keep), tf.boolean_mask(ids, keep)


def choose_settings(intensity, image, n_images, table_ids, sums, weights):
    """Every image's setting against the reference ``S / W``, and each observation's chosen id.

    Returns
    -------
    dict of tf.Tensor
        :func:`choose`'s outputs, ``ids`` (int32 ``[n]``) and ``informed``
        (bool ``[n_images]``: the image's best setting had a defined score).
    """
    candidates, valid = reference_candidates(sums, weights, table_ids)
    scores, counts = image_scores(tf.asinh(normalized_intensity(intensity, image, n_images)), image, n_images,
                                  tf.asinh(candidates), valid)
    result = choose(scores, counts)
    result["ids"] = chosen_ids(table_ids, image, result["setting"])
    result["informed"] = tf.reduce_max(counts, axis=1) >= 4.0
    return result


def updated_reference(sums, weights, decay, intensity, image, n_images, choice):
    """The reference sums and weights after one batch: ``decay`` times the old ones plus the batch's.

    ``choice`` is :func:`choose_settings`'s result for the batch.
    """
    n_reflections = tf.shape(sums)[0]
    values, ids = reference_increments(intensity, image, n_images, choice["ids"], choice["informed"],
                                       tf.reduce_sum(weights) <= 0.0)
    new_sums = decay * sums + tf.math.unsorted_segment_sum(values, ids, n_reflections)
    new_weights = decay * weights + tf.math.unsorted_segment_sum(tf.ones_like(values), ids, n_reflections)
    return new_sums, new_weights


class OnlineReference(tf.Module):
    """A slowly built reference of normalized intensities in the reference setting.

    ``R_h = S_h / W_h`` with exponentially forgotten sums: each update first
    multiplies ``S`` and ``W`` by ``decay`` and then adds the chosen
    observations' intensities divided by their image's mean
    (:func:`reference_increments`).  The first update takes only the batch's
    first image, so the first image defines the reference setting and later
    images are chosen against it; forgetting lets early, poorly informed
    choices fade.  (Inside the merging model the same arithmetic runs on the
    model's weights: :class:`careless_online.model.settings.SettingChoice`.)

    Parameters
    ----------
    n_reflections : int
    decay : float
        Factor in (0, 1] applied to the sums at each update.
    """

    def __init__(self, n_reflections, decay=0.999, name=None):
        super().__init__(name=name)
        self.n_reflections = integer_at_least("n_reflections", n_reflections, 1)
        self.decay = check_decay(decay)
        self.sums = tf.Variable(tf.zeros([self.n_reflections]), trainable=False)
        self.weights = tf.Variable(tf.zeros([self.n_reflections]), trainable=False)

    def step(self, intensity, image, n_images, table_ids):
        """Choose every image's setting against the reference, then update it.

        Returns
        -------
        dict of tf.Tensor
            :func:`choose_settings`'s outputs.
        """
        result = choose_settings(intensity, image, n_images, table_ids, self.sums, self.weights)
        sums, weights = updated_reference(self.sums, self.weights, self.decay, intensity, image, n_images, result)
        self.sums.assign(sums)
        self.weights.assign(weights)
        return result


def check_decay(decay):
    """``decay`` as a float in (0, 1], or ValueError."""
    decay = positive("decay", decay)
    if decay > 1.0:
        raise ValueError(f"decay must be at most 1, got {decay}")
    return decay
