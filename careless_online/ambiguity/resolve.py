"""Stream images through an :class:`~careless_online.ambiguity.choice.OnlineReference`.

The images arrive in batches (shuffled each pass, like training batches);
each batch's settings are chosen against the reference built so far, then
added to it.  The result of the last pass is each image's setting.
"""

import numpy as np
import tensorflow as tf

from careless_online.ambiguity.choice import OnlineReference
from careless_online.checks import integer_at_least


def resolve_settings(image_id, intensity, table_ids, n_reflections, passes=3, batch_images=8, decay=0.999,
                     seed=0):
    """Choose the setting of every image online.

    Parameters
    ----------
    image_id : numpy.ndarray of int, shape (n,)
        Image of each observation.
    intensity : numpy.ndarray of float, shape (n,)
    table_ids : numpy.ndarray of int32, shape (n, n_ops)
        Unique-reflection id of each observation under each setting
        (:meth:`ReindexingOperators.reflection_table` gathered at the observations).
    n_reflections : int
    passes : int
        Passes over the images.
    batch_images : int
    decay : float
        See :class:`OnlineReference`.
    seed : int
        Seeds the order of the images.

    Returns
    -------
    dict of numpy.ndarray
        ``image`` (sorted ids) and, per image from the last pass, ``setting``,
        ``margin``, ``confidence`` and ``ambiguous``.
    """
    passes = integer_at_least("passes", passes, 1)
    batch_images = integer_at_least("batch_images", batch_images, 1)
    order = np.argsort(image_id, kind="stable")
    image_id, intensity, table_ids = image_id[order], intensity[order], table_ids[order]
    images, starts = np.unique(image_id, return_index=True)
    ends = np.r_[starts[1:], len(image_id)]
    reference = OnlineReference(n_reflections, decay)
    step = tf.function(reference.step, input_signature=[
        tf.TensorSpec([None], tf.float32), tf.TensorSpec([None], tf.int32), tf.TensorSpec([], tf.int32),
        tf.TensorSpec([None, table_ids.shape[1]], tf.int32)])
    out = {}
    rng = np.random.default_rng(seed)
    for _ in range(passes):
        for batch in np.array_split(rng.permutation(len(images)), max(1, len(images) // batch_images)):
            rows = np.concatenate([np.arange(starts[b], ends[b]) for b in batch])
            local = np.repeat(np.arange(len(batch), dtype=np.int32), ends[batch] - starts[batch])
            result = step(tf.constant(intensity[rows], tf.float32), tf.constant(local),
                          tf.constant(len(batch), tf.int32), tf.constant(table_ids[rows], tf.int32))
            for key in ("setting", "margin", "confidence", "ambiguous"):
                out.setdefault(key, np.zeros(len(images), result[key].dtype.as_numpy_dtype))[batch] = \
                    result[key].numpy()
    out["image"] = images
    return out


def to_reference_setting(hkl, image_setting, operators):
    """Observed indices moved to the reference setting: ``M_j h`` for an image in setting ``j``.

    Parameters
    ----------
    hkl : numpy.ndarray of int, shape (n, 3)
    image_setting : numpy.ndarray of int, shape (n,)
        Chosen setting of each observation's image.
    operators : careless_online.ambiguity.operators.ReindexingOperators

    Returns
    -------
    numpy.ndarray of int32, shape (n, 3)
    """
    hkl = np.asarray(hkl, dtype=np.int64).copy()
    for j, matrix in enumerate(operators.matrices):
        rows = image_setting == j
        hkl[rows] = hkl[rows] @ matrix.T
    return hkl.astype(np.int32)


def consistent_fraction(chosen, true_setting, operators, true_matrices):
    """Largest fraction of images whose chosen and true operators compose to the same setting.

    Parameters
    ----------
    chosen : numpy.ndarray of int
        Chosen setting per image (position in ``operators``).
    true_setting : numpy.ndarray of int
        Setting each image was indexed in (0: as simulated, ``j``: ``true_matrices[j - 1]``).
    operators : ReindexingOperators
    true_matrices : list of numpy.ndarray

    Returns
    -------
    float
    """
    truth = [np.eye(3, dtype=np.int64)] + [np.asarray(m, dtype=np.int64) for m in true_matrices]
    composed = np.array([operators.coset(operators.matrices[c] @ truth[t]) for c, t in zip(chosen, true_setting)])
    return float(np.bincount(composed + 1).max() / len(composed))


def setting_summary(result, operators):
    """Images per setting and how confident their choices are.

    Parameters
    ----------
    result : dict
        From :func:`resolve_settings`.
    operators : careless_online.ambiguity.operators.ReindexingOperators

    Returns
    -------
    list of dict
        One per setting: ``operator`` (triplet), ``images``, ``fraction``,
        ``median_confidence`` (NaN without images) and ``ambiguous`` (images flagged).
    """
    setting = np.asarray(result["setting"])
    rows = []
    for j, triplet in enumerate(operators.triplets):
        chosen = setting == j
        rows.append({"operator": triplet, "images": int(chosen.sum()),
                     "fraction": float(chosen.mean()) if len(setting) else 0.0,
                     "median_confidence": float(np.median(result["confidence"][chosen])) if chosen.any() else
                     float("nan"),
                     "ambiguous": int(np.asarray(result["ambiguous"])[chosen].sum())})
    return rows
