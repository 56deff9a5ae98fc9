"""Which dataset each image of a growing live cache belongs to.

A live merge of several datasets (the states of a time-resolved experiment
followed while they are collected) fixes the number of datasets before
training starts, because the model holds one structure-factor posterior per
dataset; images are then assigned as they arrive (:class:`LiveDatasets`):

- ``--separate-files``: dataset ``i`` is everything the ``i``-th *source*
  names (a stream, a file, a folder or a glob pattern on the command line), so
  ``dark/ light/`` makes two datasets however many files arrive in each;
- ``--groups-file split.txt``: the datasets are the names the file lists when
  the merge starts, in order of first appearance; the file is read again
  whenever it changes, so the lines for new images can be appended while data
  are collected (lines naming a dataset that was not there at the start are
  ignored, with a warning); images it does not list are left out;
- ``--groups KEY``: the datasets are the values of the per-image column ``KEY``
  found in the data converted before training starts, in increasing order;
  images with a value first seen later are left out, with a warning.

Image ids of a live cache are handed out in arrival order, so the images of one
input form several *segments* (``[first id, count]`` in the manifest).
"""

import os

import numpy as np
import pandas as pd

from careless_online.errors import InputError
from careless_online.io.groups import MAX_DATASETS, Datasets, _level_name, read_split_file, shard_image_values


def _signature(path):
    try:
        stat = os.stat(path)
    except OSError as err:
        raise InputError(f"cannot read the groups file ({err.strerror or type(err).__name__})", path) from None
    return stat.st_size, stat.st_mtime_ns


class _ImageColumn:
    """A per-image column of a growing cache, read once per new shard (shards never change once written)."""

    def __init__(self, key):
        self.key = key
        self.values = np.zeros(0)
        self.shards = 0

    def update(self, manifest):
        """``[n_images]`` value of each image of ``manifest`` (NaN: no observation of it)."""
        grown = np.full(manifest.n_images, np.nan)
        grown[:len(self.values)] = self.values
        for shard in range(self.shards, len(manifest.shards)):
            images, value = shard_image_values(manifest, shard, self.key)
            grown[images] = value
        self.values, self.shards = grown, len(manifest.shards)
        return grown


def _of_images(manifest, key):
    """``[n_images]`` value of an input record's ``key`` for each image of that input (-1: none)."""
    values = np.full(manifest.n_images, -1, dtype=np.int32)
    for record in manifest.info["inputs"]:
        for first, count in record["segments"]:
            values[first:first + count] = record[key]
    return values


def source_of_images(manifest):
    """``[n_images]`` number of the live source each image came from."""
    return _of_images(manifest, "source")


def file_of_images(manifest):
    """``[n_images]`` input (``file_id``) each image came from."""
    return _of_images(manifest, "file_id")


class LiveDatasets:
    """Assigns the images of a growing cache to a fixed set of datasets.

    Parameters
    ----------
    spec : careless_online.io.groups.GroupSpec
        How the user grouped the images (must be active).
    sources : list of str
        The live sources as given (``--separate-files``: one dataset each).
    log : callable
        Receives warnings (images left out, ignored lines).

    Raises
    ------
    InputError
        For an unreadable or malformed split file, or more than
        :data:`~careless_online.io.groups.MAX_DATASETS` datasets.
    """

    def __init__(self, spec, sources, log=print):
        if not spec.active:
            raise ValueError("LiveDatasets needs a GroupSpec that groups the images")
        self.spec, self.log = spec, log
        self.names = None
        self._warned = set()
        if spec.by_file:
            self.names = [os.path.basename(os.path.normpath(s)) for s in sources]
        elif spec.split_file is not None:
            self._lines, self._read_at = read_split_file(spec.split_file), _signature(spec.split_file)
            self._batch = _ImageColumn("BATCH")
            self.names = list(dict.fromkeys(line.dataset for line in self._lines))
        else:
            self._column = _ImageColumn(spec.key)
            self._levels = None
        if self.names is not None and len(self.names) > MAX_DATASETS:
            raise InputError(f"{len(self.names)} datasets, more than {MAX_DATASETS}", spec.split_file)

    @property
    def n(self):
        """Number of datasets (known once :meth:`update` has seen data)."""
        return None if self.names is None else len(self.names)

    def update(self, manifest):
        """The :class:`~careless_online.io.groups.Datasets` of every image converted so far.

        Parameters
        ----------
        manifest : careless_online.io.cache.Manifest
            The live cache now.

        Returns
        -------
        careless_online.io.groups.Datasets
        """
        if self.spec.by_file:
            of_image = source_of_images(manifest)
        elif self.spec.split_file is not None:
            of_image = self._from_split_file(manifest)
        else:
            of_image = self._from_column(manifest)
        return Datasets(of_image, list(self.names))

    def _warn_once(self, key, message):
        if key not in self._warned:
            self._warned.add(key)
            self.log(f"WARNING {message}")

    def _from_column(self, manifest):
        key = self.spec.key
        if self._levels is None:
            if key not in manifest.metadata_columns:
                raise InputError(f"--groups {key}: no such column; available: "
                                 f"{', '.join(sorted(set(manifest.metadata_columns)))}", manifest.files()[0])
        values = self._column.update(manifest)
        present = np.isfinite(values)
        if self._levels is None:
            self._levels = np.unique(values[present])
            if len(self._levels) > MAX_DATASETS:
                raise InputError(f"--groups {key}: {len(self._levels)} distinct values, more than {MAX_DATASETS} "
                                 "datasets", manifest.files()[0])
            self.names = [f"{key}={_level_name(v)}" for v in self._levels]
        code = np.searchsorted(self._levels, np.where(present, values, self._levels[0]))
        known = present & (code < len(self._levels))
        known[known] = self._levels[code[known]] == values[known]
        for value in np.unique(values[present & ~known]):
            self._warn_once(("value", float(value)), f"--groups {key}={_level_name(value)} was not in the data when "
                            "the live merge started: its images are left out (the datasets are fixed at the start)")
        return np.where(known, code, -1).astype(np.int32)

    def _split_lines(self):
        """The split file's lines, read again if it changed; lines of datasets unknown at the start dropped."""
        path = self.spec.split_file
        signature = _signature(path)
        if signature != self._read_at:
            self._lines, self._read_at = read_split_file(path), signature
        known = [line for line in self._lines if line.dataset in self.names]
        for line in self._lines:
            if line.dataset not in self.names:
                self._warn_once(("dataset", line.dataset), f"{path}: dataset {line.dataset!r} (line {line.line}) "
                                "was not in the file when the live merge started: its images are left out")
        return known

    def _from_split_file(self, manifest):
        path = self.spec.split_file
        lines = self._split_lines()
        images = pd.DataFrame({"file": file_of_images(manifest), "image": self._batch.update(manifest),
                               "image_id": np.arange(manifest.n_images)})
        table = _line_table(lines, manifest, self.names, self._warn_once)
        every = images.merge(table[table["image"].isna()].drop(columns="image"), on="file")
        listed = images.merge(table[table["image"].notna()], on=["file", "image"])
        chosen = pd.concat([every, listed], ignore_index=True)
        clash = chosen.groupby("image_id")["dataset"].nunique()
        if (clash > 1).any():
            image = int(clash.index[np.flatnonzero(clash.to_numpy() > 1)[0]])
            raise InputError(f"image {int(images['image'][image])} of {manifest.files()[images['file'][image]]} is "
                             "given two datasets", path)
        of_image = np.full(manifest.n_images, -1, dtype=np.int32)
        of_image[chosen["image_id"].to_numpy()] = chosen["dataset"].to_numpy()
        return of_image


def _line_table(lines, manifest, names, warn):
    """Split-file lines as rows (file id, image number or NaN for every image, dataset number).

    A line names an input by its path or, when unique among the inputs so far,
    its base name; lines of inputs that have not arrived yet match nothing, a
    base name shared by several inputs matches none of them (``warn`` says so).
    """
    inputs = manifest.files()
    by_path = {os.path.realpath(p): i for i, p in enumerate(inputs)}
    by_name = {}
    for i, p in enumerate(inputs):
        by_name.setdefault(os.path.basename(p), []).append(i)
    code = {name: d for d, name in enumerate(names)}
    rows = []
    for line in lines:
        matches = [by_path[os.path.realpath(line.file)]] if os.path.realpath(line.file) in by_path \
            else by_name.get(line.file, [])
        if len(matches) > 1:
            warn(("ambiguous", line.file), f"{line.file!r} names several inputs: give its path (its lines are "
                 "ignored)")
        elif matches:
            rows.append((matches[0], np.nan if line.image is None else float(line.image), code[line.dataset]))
    return pd.DataFrame(rows, columns=["file", "image", "dataset"]).astype(
        {"file": np.int32, "image": float, "dataset": np.int32})
