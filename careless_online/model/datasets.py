"""Structure factors of several datasets in one model: the combined reflection id.

One model may merge several datasets (states of a time-resolved experiment,
files, groups of images) with one scale network and one posterior ``q(F)``
per dataset and unique reflection.  Those posteriors are indexed by the
combined id

.. math::

    \\mathrm{id} = d \\, n_\\mathrm{hkl} + h,

for dataset ``d`` and unique reflection ``h`` (the cache's ``refl_id``), so
that dataset ``d`` owns the block ``[d n_hkl, (d + 1) n_hkl)``.  Any mapping of
``h`` itself (e.g. an image's reindexing) happens before the offset is added.
"""

import numpy as np
import tensorflow as tf


def dataset_reflection_ids(hkl_ids, dataset, n_hkl):
    """Combined ids ``dataset * n_hkl + hkl_ids`` (``hkl_ids`` unchanged when ``dataset`` is None).

    Parameters
    ----------
    hkl_ids : tf.Tensor
        int32 ``[n]`` unique-reflection ids.
    dataset : tf.Tensor or None
        int32 ``[n]`` dataset of each observation.
    n_hkl : int
        Unique reflections per dataset.

    Returns
    -------
    tf.Tensor
        int32 ``[n]``.
    """
    if dataset is None:
        return hkl_ids
    return tf.cast(dataset, tf.int32) * int(n_hkl) + hkl_ids


def hkl_ids(ids, n_hkl):
    """The unique-reflection part ``ids mod n_hkl`` of combined ids."""
    return ids % int(n_hkl)


def per_dataset(values, n_datasets):
    """A per-reflection array repeated for each dataset (``[n_datasets * n_hkl]``), or None for None."""
    if values is None:
        return None
    return np.tile(np.asarray(values), int(n_datasets))


def dataset_block(values, dataset, n_hkl):
    """Dataset ``dataset``'s ``[n_hkl]`` part of a combined per-reflection array."""
    return values[int(dataset) * int(n_hkl):(int(dataset) + 1) * int(n_hkl)]
