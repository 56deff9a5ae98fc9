"""Repeated images and repeated observations: each is merged once.

A stream concatenated with itself (or a block of chunks written twice by a
restarted indexing job) and an MTZ file whose rows appear twice would
otherwise weigh the repeated observations twice, with no sign in the merge.
Two kinds of repeat are dropped where the observation table is built (offline
and live, every input format):

* a repeated row: an observation equal in every column (image, observed
  Miller indices, ``I``, ``SigI`` and every metadata value) to an earlier row
  of the same image;
* a repeated image: an image whose observations equal, row by row in every
  column but the image numbering (``image_id``, ``file_id``, ``BATCH``), those
  of an earlier image of the run.  Its metadata include the scattered-beam
  vectors and Ewald offsets, which the crystal's orientation matrix fixes: it
  is the same crystal block with the same reflections, written twice.

Images are compared by a 128-bit BLAKE2b digest of their rows (one hash call
per image); the digests of a run are kept, 16 bytes per image.
"""

import hashlib

import numpy as np

#: Columns that number an image rather than describe it.
NUMBERING = ("image_id", "file_id", "BATCH")


class RepeatFilter:
    """Drops repeated rows and repeated images from observation tables, over one run.

    Tables are given in the order the images are read; the first occurrence
    of an image is kept.
    """

    def __init__(self):
        self._digests = set()

    def drop(self, table):
        """``table`` without repeated rows and images.

        Parameters
        ----------
        table : pandas.DataFrame
            Observation rows with an ``image_id`` column
            (:func:`careless_online.io.table.make_observations`).

        Returns
        -------
        table : pandas.DataFrame
        n_rows : int
            Repeated rows dropped (within their image).
        n_images : int
            Repeated images dropped.
        n_image_rows : int
            Observations of those images.
        """
        if len(table) == 0:
            return table, 0, 0, 0
        repeated = _repeated_rows(table)
        n_rows = int(repeated.sum())
        if n_rows:
            table = table[~repeated].reset_index(drop=True)
        image = table["image_id"].to_numpy()
        order = np.argsort(image, kind="stable")
        starts = np.flatnonzero(np.r_[True, image[order][1:] != image[order][:-1]])
        rows = _row_bytes(table, order)
        drop = np.zeros(len(table), dtype=bool)
        n_images = 0
        for start, end in zip(starts, np.r_[starts[1:], len(order)]):
            digest = hashlib.blake2b(rows[start:end], digest_size=16).digest()
            if digest in self._digests:
                drop[order[start:end]] = True
                n_images += 1
            else:
                self._digests.add(digest)
        if n_images:
            table = table[~drop].reset_index(drop=True)
        return table, n_rows, n_images, int(drop.sum())


def _repeated_rows(table):
    """Rows equal in every column to an earlier row (of the same image, as ``image_id`` is a column).

    Only rows whose image and observed indices repeat are compared in full
    (in still data none do), which keeps the check to four integer columns.
    """
    repeated = np.zeros(len(table), dtype=bool)
    candidates = table.duplicated(["image_id", "Hobs", "Kobs", "Lobs"], keep=False).to_numpy()
    if candidates.any():
        repeated[candidates] = table[candidates].duplicated().to_numpy()
    return repeated


def _row_bytes(table, order):
    """The rows of ``table`` in ``order`` as one C-contiguous byte array, one row per line (numbering left out)."""
    columns = [np.ascontiguousarray(table[name].to_numpy()[order]) for name in table.columns
               if name not in NUMBERING]
    return np.ascontiguousarray(np.concatenate([c.view(np.uint8).reshape(len(order), -1) for c in columns], axis=1))


def repeat_lines(report, path):
    """The log lines saying what :class:`RepeatFilter` dropped from one file (none if nothing).

    Parameters
    ----------
    report : careless_online.io.table.LoadReport
        The file's report (its ``duplicate_images`` and ``duplicate_rows``).
    path : str
    """
    lines = []
    if report.duplicate_images:
        lines.append(f"dropped {report.duplicate_images} duplicate images (same orientation and reflections as an "
                     f"earlier image) from {path}")
    if report.duplicate_rows:
        lines.append(f"dropped {report.duplicate_rows} duplicate observations (rows repeated in their image: same "
                     f"image, H, K, L, I, SigI and metadata) from {path}")
    return lines
