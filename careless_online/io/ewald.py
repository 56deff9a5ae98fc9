"""The raw Ewald offset of every observation, as its own batch entry.

The metadata the networks see are standardized (:class:`careless_online.io.pipeline.Standardizer`);
the physical partiality term of the scales' prior
(:class:`careless_online.layers.PartialityPrior`) needs the offset itself,
in Å⁻¹.  When a cache has an ``ewald_offset`` column (CrystFEL streams via
reciprocalspaceship, the simulator's files) :class:`EwaldOffsets` adds to
every batch

================  ==========================================================
``ewald_offset``  float32 ``[n]``: each row's Ewald offset as the file gives it
================  ==========================================================
"""

import numpy as np
import tensorflow as tf

#: The cache column (and batch entry) of the raw Ewald offset.
COLUMN = "ewald_offset"


class EwaldOffsets:
    """The ``ewald_offset`` entry of the batches of a cache that has the column."""

    #: Cache columns the entry is made from.
    columns = (COLUMN,)

    @staticmethod
    def signature():
        """``tf.TensorSpec`` of the entry."""
        return {COLUMN: tf.TensorSpec([None], tf.float32)}

    @staticmethod
    def entries(part):
        """The entry of one batch from its rows."""
        return {COLUMN: np.asarray(part[COLUMN], dtype=np.float32)}
