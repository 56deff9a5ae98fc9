"""tf.data pipeline: batches of whole images streamed from the on-disk cache.

A batch holds ``batch_images`` whole images, flattened: every per-observation
tensor has shape ``[n]`` (``[n, m]`` for metadata), and ``image`` gives each
observation's image within the batch (0 .. n_images-1).  This is the ragged
layout (values + row ids) without padding, so shapes vary only along one
dimension and a ``tf.function`` with ``[None]`` signatures never retraces.

Images are shuffled across a window of shards each epoch, and split into a
training and a held-out test set by a hash of their global id, so the split
is the same in every run, for any number of images, and for data appended
later (live mode).
"""

import math

import numpy as np
import tensorflow as tf

from careless_online.errors import InputError
from careless_online.io.moments import accumulate, mean_std
from careless_online.io.spots import batch_extras

#: Metadata keys with a transform applied before standardization.
TRANSFORMS = {"dHKL": lambda d: 1.0 / np.square(d)}


def is_test_image(image_id, fraction, seed):
    """Deterministic held-out flag per image.

    Parameters
    ----------
    image_id : array of int
    fraction : float
        Expected fraction of test images (0 gives none).
    seed : int

    Returns
    -------
    numpy.ndarray of bool
    """
    with np.errstate(over="ignore"):
        x = np.asarray(image_id, dtype=np.uint64) + np.uint64(seed % (2**32)) * np.uint64(0x9E3779B97F4A7C15)
        x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        x = x ^ (x >> np.uint64(31))
    u = (x >> np.uint64(11)).astype(np.float64) / float(2**53)
    return u < fraction


class Standardizer:
    """Zero-mean, unit-variance scaling of metadata columns.

    Statistics are fit once and saved with the model so that data added later
    are transformed identically.  ``dHKL`` is used as 1/d^2.  (Keras'
    ``Normalization.adapt`` would need a ``tf.data`` pass over every column
    in float32; here float64 moments are accumulated shard by shard, reading
    only the metadata columns of the cache.)

    Parameters
    ----------
    keys : list of str
    mean, std : list of float
    """

    def __init__(self, keys, mean, std):
        self.keys = list(keys)
        self.mean = np.asarray(mean, dtype=np.float64)
        self.std = np.asarray(std, dtype=np.float64)

    @classmethod
    def without_metadata(cls):
        """A standardizer of no columns: batches for passes that read no metadata (counts, settings)."""
        return cls([], [], [])

    @classmethod
    def fit(cls, manifest, keys, enabled=True):
        """Statistics of ``keys`` over a cache (identity if not ``enabled``).

        Raises
        ------
        InputError
            If a key is not a column of the data.
        """
        keys = list(keys)
        available = manifest.metadata_columns + ["dHKL"]
        missing = [k for k in keys if k not in available]
        if missing:
            raise InputError(
                f"unknown metadata key(s) {', '.join(missing)}; available: {', '.join(sorted(set(available)))}",
                manifest.files()[0],
            )
        if not enabled or not keys:
            return cls(keys, np.zeros(len(keys)), np.ones(len(keys)))
        moments = (0, np.zeros(len(keys)), np.zeros(len(keys)))
        for i in range(len(manifest.shards)):
            moments = accumulate(moments, cls._raw(manifest.load_shard(i, keys), keys))
        mean, std = mean_std(moments)
        return cls(keys, mean, np.where(std > 0, std, 1.0))

    @staticmethod
    def _raw(arrays, keys):
        columns = []
        for k in keys:
            values = arrays[k].astype(np.float64)
            columns.append(TRANSFORMS[k](values) if k in TRANSFORMS else values)
        return np.stack(columns, axis=1) if columns else np.zeros((len(next(iter(arrays.values()))), 0))

    def transform(self, arrays):
        """Standardized metadata, float32 array of shape (n, len(keys))."""
        if not self.keys:
            n = len(arrays["I"])
            return np.zeros((n, 0), dtype=np.float32)
        return ((self._raw(arrays, self.keys) - self.mean) / self.std).astype(np.float32)

    def get_config(self):
        """JSON-serializable state."""
        return {"keys": self.keys, "mean": self.mean.tolist(), "std": self.std.tolist()}

    @classmethod
    def from_config(cls, config):
        """Inverse of :meth:`get_config`."""
        return cls(config["keys"], config["mean"], config["std"])


def batch_signature(n_meta):
    """The ``tf.TensorSpec`` of each entry of a batch dictionary."""
    f32, i32 = tf.float32, tf.int32
    return {
        "refl_id": tf.TensorSpec([None], i32),
        "image": tf.TensorSpec([None], i32),
        "n_images": tf.TensorSpec([], i32),
        "I": tf.TensorSpec([None], f32),
        "SigI": tf.TensorSpec([None], f32),
        "meta": tf.TensorSpec([None, n_meta], f32),
        "image_id": tf.TensorSpec([None], i32),
        "file_id": tf.TensorSpec([None], i32),
        "dataset": tf.TensorSpec([None], i32),
    }


def _image_ranges(image_id):
    """Start and end row of each image in an array sorted by image id."""
    if len(image_id) == 0:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    starts = np.flatnonzero(np.r_[True, image_id[1:] != image_id[:-1]])
    ends = np.r_[starts[1:], len(image_id)]
    return starts, ends


def _rows_of(starts, ends):
    lengths = ends - starts
    offsets = np.repeat(starts - np.r_[0, np.cumsum(lengths)[:-1]], lengths)
    return np.arange(lengths.sum()) + offsets, lengths


class ImageBatches:
    """Batches of whole images from a cache, for training or evaluation.

    Parameters
    ----------
    manifest : careless_online.io.cache.Manifest
    standardizer : Standardizer
        Gives the metadata keys and their scaling.
    batch_images : int
        Images per batch.
    test_fraction : float
        Fraction of images held out (by :func:`is_test_image`).
    seed : int
        Seeds the split and the shuffling.
    split : {"train", "test", "all"}
        Which images to serve.
    shuffle : bool
        Shuffle images each epoch (training); otherwise file order.
    shard_window : int
        Number of shards whose images are shuffled together.
    image_filter : callable, optional
        Further restricts the images: called with an array of image ids,
        returns a boolean mask (e.g. one half of a half-dataset merge).
    datasets : careless_online.io.groups.Datasets, optional
        The dataset of each image (each batch's ``dataset`` entry; images of
        no dataset are not served); default: all images in dataset 0.
    """

    def __init__(self, manifest, standardizer, batch_images=8, test_fraction=0.1, seed=1234,
                 split="train", shuffle=True, shard_window=4, image_filter=None, datasets=None):
        if batch_images < 1:
            raise InputError(f"batch size must be at least 1 image (got {batch_images})")
        self.manifest = manifest
        self.standardizer = standardizer
        self.batch_images = int(batch_images)
        self.test_fraction = float(test_fraction)
        self.seed = int(seed)
        self.split = split
        self.shuffle = shuffle
        self.shard_window = max(1, int(shard_window))
        self.image_filter = image_filter
        self.datasets = datasets
        self.extras = batch_extras(manifest)
        self.columns = sorted(set(["image_id", "file_id", "refl_id", "I", "SigI"]
                                  + [k for k in standardizer.keys]
                                  + [c for extra in self.extras for c in extra.columns]))
        self.n_images = self._count_images()

    def select(self, image_ids):
        """Boolean mask of the images (by id) this view serves."""
        if self.split == "all":
            mask = np.ones(len(image_ids), dtype=bool)
        else:
            test = is_test_image(image_ids, self.test_fraction, self.seed)
            mask = test if self.split == "test" else ~test
        if self.image_filter is not None:
            mask &= self.image_filter(image_ids)
        if self.datasets is not None:
            mask &= self.datasets.of(image_ids) >= 0
        return mask

    def dataset_of(self, image_ids):
        """Dataset of each image id (all 0 without ``datasets``)."""
        if self.datasets is None:
            return np.zeros(len(image_ids), dtype=np.int32)
        return self.datasets.of(image_ids)

    def _count_images(self):
        n = 0
        for i in range(len(self.manifest.shards)):
            ids = np.unique(self.manifest.load_shard(i, ["image_id"])["image_id"])
            n += int(self.select(ids).sum())
        return n

    @property
    def steps_per_epoch(self):
        """Batches in one pass over the selected images."""
        return math.ceil(self.n_images / self.batch_images)

    def reflection_counts(self):
        """Observations of each (dataset, unique reflection) in the selected images.

        Indexed ``dataset * n_hkl + refl_id`` (just ``refl_id`` for one dataset).
        """
        n_hkl = self.manifest.info["index"]["n_reflections"]
        n_datasets = 1 if self.datasets is None else self.datasets.n
        counts = np.zeros(n_datasets * n_hkl, dtype=np.int64)
        for i in range(len(self.manifest.shards)):
            arrays = self.manifest.load_shard(i, ["image_id", "refl_id"])
            keep = self.select(arrays["image_id"])
            ids = self.dataset_of(arrays["image_id"][keep]).astype(np.int64) * n_hkl + arrays["refl_id"][keep]
            counts += np.bincount(ids, minlength=len(counts))
        return counts

    def _batch(self, arrays, starts, ends):
        rows, lengths = _rows_of(starts, ends)
        part = {k: v[rows] for k, v in arrays.items()}
        batch = {
            "refl_id": part["refl_id"].astype(np.int32),
            "image": np.repeat(np.arange(len(lengths), dtype=np.int32), lengths),
            "n_images": np.int32(len(lengths)),
            "I": part["I"].astype(np.float32),
            "SigI": part["SigI"].astype(np.float32),
            "meta": self.standardizer.transform(part),
            "image_id": part["image_id"].astype(np.int32),
            "file_id": part["file_id"].astype(np.int32),
            "dataset": self.dataset_of(part["image_id"]).astype(np.int32),
        }
        for extra in self.extras:
            batch.update(extra.entries(part))
        return batch

    def signature(self):
        """The ``tf.TensorSpec`` of each entry of this view's batches."""
        signature = batch_signature(len(self.standardizer.keys))
        for extra in self.extras:
            signature.update(extra.signature())
        return signature

    def epoch(self, epoch=0, skip=0):
        """Yield the batches of one epoch as dictionaries of numpy arrays.

        Parameters
        ----------
        epoch : int
            Seeds the shuffling of this epoch.
        skip : int
            Number of leading batches to skip (to resume mid-epoch).
        """
        rng = np.random.default_rng([self.seed, epoch])
        order = rng.permutation(len(self.manifest.shards)) if self.shuffle else np.arange(len(self.manifest.shards))
        carry = None
        produced = 0
        for first in range(0, len(order), self.shard_window):
            loaded = [self.manifest.load_shard(i, self.columns) for i in order[first:first + self.shard_window]]
            if carry is not None:
                loaded.insert(0, carry)
            arrays = {k: np.concatenate([a[k] for a in loaded]) for k in self.columns}
            starts, ends = _image_ranges(arrays["image_id"])
            keep = self.select(arrays["image_id"][starts])
            starts, ends = starts[keep], ends[keep]
            if self.shuffle:
                perm = rng.permutation(len(starts))
                starts, ends = starts[perm], ends[perm]
            last = first + self.shard_window >= len(order)
            n_full = len(starts) // self.batch_images * self.batch_images
            stop = len(starts) if last else n_full
            for b in range(0, stop, self.batch_images):
                if produced >= skip:
                    yield self._batch(arrays, starts[b:b + self.batch_images], ends[b:b + self.batch_images])
                produced += 1
            if not last and n_full < len(starts):
                rows, _ = _rows_of(starts[n_full:], ends[n_full:])
                carry = {k: v[rows] for k, v in arrays.items()}
            else:
                carry = None

    def batches(self, start_step=0):
        """Endless batches over epochs, starting at global step ``start_step``."""
        steps = max(self.steps_per_epoch, 1)
        epoch, skip = divmod(start_step, steps)
        while True:
            yield from self.epoch(epoch, skip)
            epoch, skip = epoch + 1, 0

    def dataset(self, start_step=None, prefetch=4):
        """A ``tf.data.Dataset`` of batch dictionaries.

        Parameters
        ----------
        start_step : int or None
            None: one epoch in order (evaluation); an int: endless training
            batches from that step.
        prefetch : int
            Batches prepared ahead of the model.
        """
        signature = self.signature()
        if start_step is None:
            generator = self.epoch
        else:
            def generator():
                return self.batches(start_step)
        return tf.data.Dataset.from_generator(generator, output_signature=signature).prefetch(prefetch)


def training_views(manifest, standardizer, batch_images, test_fraction, seed, image_filter=None, datasets=None):
    """The three views of a cache that training uses.

    Parameters
    ----------
    manifest : careless_online.io.cache.Manifest
    standardizer : Standardizer
    batch_images : int
    test_fraction : float
        Held-out fraction of images (0: no test view).
    seed : int
    image_filter : callable, optional
        As in :class:`ImageBatches` (e.g. one half of the images).
    datasets : careless_online.io.groups.Datasets, optional
        As in :class:`ImageBatches`.

    Returns
    -------
    (ImageBatches, ImageBatches or None, ImageBatches)
        ``train`` (shuffled training images), ``test`` (held-out images, in
        order; None when ``test_fraction`` is 0) and ``monitor`` (training
        images in order, for the train CCpred).
    """
    common = dict(batch_images=batch_images, test_fraction=test_fraction, seed=seed, image_filter=image_filter,
                  datasets=datasets)
    train = ImageBatches(manifest, standardizer, split="train", **common)
    test = ImageBatches(manifest, standardizer, split="test", shuffle=False, **common) if test_fraction > 0 else None
    monitor = ImageBatches(manifest, standardizer, split="train", shuffle=False, **common)
    return train, test, monitor
