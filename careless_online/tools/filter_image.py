"""Drop whole images whose predictions fit the observations badly (careless.filter_image).

Each image's CCpred is the correlation of ``Iobs`` and ``Ipred`` over its
observations in the predictions files, Pearson weighted by ``1/SigIobs^2``
(careless's default) or Spearman.  The images of an unmerged MTZ input are
numbered as ``careless_online mono`` numbers them: the file's distinct image
numbers (``BATCH``) in increasing order, after the images of the inputs
before it, so the inputs must be given in the order of the merge.
"""

import numpy as np
import pandas as pd

from careless_online.errors import InputError
from careless_online.stats.correlation import correlation_per_group


def image_ccpred(predictions, method="pearson"):
    """CCpred of every image of the predictions files.

    Parameters
    ----------
    predictions : pandas.DataFrame
        Rows of one or more predictions files (``file_id``, ``image_id``,
        ``Iobs``, ``SigIobs``, ``Ipred``).
    method : {"pearson", "spearman"}

    Returns
    -------
    pandas.Series
        CC indexed by ``(file_id, image_id)``.
    """
    ids = [predictions["file_id"].to_numpy(int), predictions["image_id"].to_numpy(int)]
    iobs, ipred = predictions["Iobs"].to_numpy(float), predictions["Ipred"].to_numpy(float)
    weights = None
    if method == "pearson":
        weights = 1.0 / np.square(predictions["SigIobs"].to_numpy(float))
    cc = correlation_per_group(iobs, ipred, ids, method=method, weights=weights)
    cc.index.names = ["file_id", "image_id"]
    return cc


def file_image_ids(batch, offset):
    """Global image number of each observation of an MTZ input: the rank of its image number plus ``offset``."""
    _, rank = np.unique(np.asarray(batch), return_inverse=True)
    return rank + offset


def kept_rows(image_ids, file_id, cc, cutoff, path):
    """Rows of input ``file_id`` whose image's CCpred is at least ``cutoff`` (images without one are dropped).

    Raises
    ------
    InputError
        When the predictions hold images of this file that the file does not have.
    """
    scored = cc.xs(file_id, level="file_id") if file_id in cc.index.get_level_values(0) else pd.Series(dtype=float)
    if len(scored) and (scored.index.max() > image_ids.max() or scored.index.min() < image_ids.min()):
        raise InputError(f"the predictions number this file's images {scored.index.min()}-{scored.index.max()}, "
                         f"the file has images {image_ids.min()}-{image_ids.max()}: give the unmerged inputs in "
                         "the order of the merge", path)
    image_cc = scored.reindex(image_ids).to_numpy()
    return np.nan_to_num(image_cc, nan=-np.inf) >= cutoff
