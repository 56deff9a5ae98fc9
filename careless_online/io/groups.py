"""Which dataset each image belongs to, when one model merges several datasets.

A time-resolved or multi-dataset merge trains one model on all images (one
scale network) with one structure-factor posterior per dataset.  Images are
assigned to datasets in one of three ways:

- by input file (``--separate-files``): dataset ``i`` is the ``i``-th file;
- by a column of the data (``--groups KEY``): one dataset per distinct value
  of a per-image column (e.g. ``file_id``, or a ``run`` column of an MTZ),
  in increasing order of the value;
- by a split file (``--groups-file split.txt``, like CrystFEL partialator's
  ``--custom-split``): one line per image (or per file),
  ``<input file> <image> <dataset name>``, where ``<image>`` is the image's
  number in its file (for a CrystFEL stream the crystal's position in the
  file counted from 0, for an MTZ or DIALS file its ``BATCH``) or ``*`` for
  every image of the file.  Datasets are numbered in the
  order their names first appear; images the file does not list are left out
  of the merge.  ``#`` starts a comment.

The assignment is a table from global image id to dataset (``-1``: left out).
"""

import os
import shlex
from dataclasses import dataclass

import numpy as np

from careless_online.errors import InputError

#: More datasets than this is almost surely a wrong column (one per image...).
MAX_DATASETS = 256

#: Wildcard image of a split-file line: every image of the file.
ALL_IMAGES = "*"


@dataclass
class Datasets:
    """The dataset of every image of a cache.

    Attributes
    ----------
    of_image : numpy.ndarray of int32
        ``[n_images]`` dataset of each global image id (``-1``: not merged).
    names : list of str
        Name of each dataset (output ``i`` is ``names[i]``).
    """

    of_image: np.ndarray
    names: list

    def __post_init__(self):
        self.of_image = np.asarray(self.of_image, dtype=np.int32)
        if self.n < 1 or self.of_image.max(initial=-1) >= self.n:
            raise ValueError("every dataset id must name one of the datasets")

    @property
    def n(self):
        """Number of datasets."""
        return len(self.names)

    def of(self, image_ids):
        """Dataset of each image id (``-1``: left out)."""
        return self.of_image[np.asarray(image_ids, dtype=np.int64)]

    def only(self, dataset):
        """Image filter (for :class:`~careless_online.io.pipeline.ImageBatches`) keeping one dataset."""
        def select(image_ids):
            return self.of(image_ids) == dataset
        return select

    def image_counts(self):
        """Images of each dataset."""
        kept = self.of_image[self.of_image >= 0]
        return np.bincount(kept, minlength=self.n)

    def describe(self):
        """One line naming each dataset and its images."""
        counts = self.image_counts()
        return "; ".join(f"dataset {i} = {name} ({counts[i]} images)" for i, name in enumerate(self.names))


@dataclass(frozen=True)
class GroupSpec:
    """How the user asked to group the images (at most one of the three).

    Attributes
    ----------
    by_file : bool
        ``--separate-files``.
    key : str or None
        ``--groups KEY``.
    split_file : str or None
        ``--groups-file PATH``.
    """

    by_file: bool = False
    key: str = None
    split_file: str = None

    @property
    def active(self):
        """Whether the images form more than one dataset (potentially)."""
        return self.by_file or self.key is not None or self.split_file is not None


def single(n_images):
    """All images in one dataset (the usual merge)."""
    return Datasets(np.zeros(n_images, dtype=np.int32), ["all"])


def shard_image_values(manifest, shard, key):
    """(image ids, value of ``key`` of each) of one shard; InputError if the value varies within an image."""
    part = manifest.load_shard(shard, ["image_id", key])
    value = part[key].astype(np.float64)
    images, first_row, row_image = np.unique(part["image_id"], return_index=True, return_inverse=True)
    if np.any(value[first_row][row_image] != value):
        raise InputError(f"--groups {key}: the column varies within an image, so it cannot assign images "
                         "to datasets", manifest.files()[0])
    return images, value[first_row]


def _image_column(manifest, key):
    """``[n_images]`` value of ``key`` of each image (NaN: an image without observations)."""
    values = np.full(manifest.n_images, np.nan)
    for i in range(len(manifest.shards)):  # shards hold whole images
        images, value = shard_image_values(manifest, i, key)
        values[images] = value
    return values


def by_file(manifest):
    """One dataset per input file (``--separate-files``), named by the file."""
    of_image = np.zeros(manifest.n_images, dtype=np.int32)
    for entry in manifest.info["inputs"]:
        start = entry["image_offset"]
        of_image[start:start + entry["n_images"]] = entry["file_id"]
    return Datasets(of_image, [os.path.basename(p) for p in manifest.files()])


def by_column(manifest, key):
    """One dataset per distinct value of the per-image column ``key``, in increasing order."""
    available = manifest.metadata_columns
    if key not in available:
        raise InputError(f"--groups {key}: no such column; available: {', '.join(sorted(set(available)))}",
                         manifest.files()[0])
    values = _image_column(manifest, key)
    present = ~np.isnan(values)
    levels, codes = np.unique(values[present], return_inverse=True)
    if len(levels) > MAX_DATASETS:
        raise InputError(f"--groups {key}: {len(levels)} distinct values, more than {MAX_DATASETS} datasets",
                         manifest.files()[0])
    of_image = np.full(manifest.n_images, -1, dtype=np.int32)
    of_image[present] = codes
    return Datasets(of_image, [f"{key}={_level_name(v)}" for v in levels])


def _level_name(value):
    return str(int(value)) if float(value).is_integer() else f"{value:g}"


@dataclass(frozen=True)
class SplitLine:
    """One line of a split file: ``file``, ``image`` (None for every image) and ``dataset`` name."""

    file: str
    image: int
    dataset: str
    line: int


def read_split_file(path):
    """Parse a split file (see the module docstring).

    Returns
    -------
    list of SplitLine

    Raises
    ------
    InputError
        Naming the file and line of the first malformed line.
    """
    try:
        with open(path) as handle:
            text = handle.read()
    except (OSError, UnicodeDecodeError) as err:
        raise InputError(f"cannot read the groups file ({type(err).__name__})", path) from None
    lines = []
    for number, raw in enumerate(text.splitlines(), start=1):
        content = raw.split("#", 1)[0].strip()
        if content:
            lines.append(_split_line(content, number, path))
    if not lines:
        raise InputError("the groups file assigns no image (lines are '<input file> <image> <dataset name>')", path)
    return lines


def _split_line(content, number, path):
    try:
        fields = shlex.split(content)
    except ValueError as err:
        raise InputError(f"line {number}: {err}", path) from None
    if len(fields) != 3:
        raise InputError(f"line {number}: expected '<input file> <image> <dataset name>', got {len(fields)} "
                         "field(s)", path)
    name, image, dataset = fields
    if image == ALL_IMAGES:
        return SplitLine(name, None, dataset, number)
    try:
        value = int(image)
    except ValueError:
        value = -1
    if value < 0:
        raise InputError(f"line {number}: the image must be a whole number >= 0 (its number in the file) or "
                         f"'{ALL_IMAGES}', got {image!r}", path)
    return SplitLine(name, value, dataset, number)


def _file_ids(manifest, lines, path):
    """Input file id of each line: its path as given, or its base name when that is unique."""
    inputs = [p for p in manifest.files()]
    by_path = {os.path.realpath(p): i for i, p in enumerate(inputs)}
    by_name = {}
    for i, p in enumerate(inputs):
        by_name.setdefault(os.path.basename(p), []).append(i)
    ids = []
    for line in lines:
        real = os.path.realpath(line.file)
        if real in by_path:
            ids.append(by_path[real])
        elif len(by_name.get(line.file, [])) == 1:
            ids.append(by_name[line.file][0])
        else:
            problem = "names several inputs" if by_name.get(line.file) else "is not one of the inputs"
            raise InputError(f"line {line.line}: {line.file!r} {problem}", path)
    return ids


def from_split_file(manifest, path, log=print):
    """Datasets from a split file (``--groups-file``); images it does not list are left out.

    Raises
    ------
    InputError
        For a malformed line, an unknown file, an image given two datasets,
        or a file that assigns none of the data's images.
    """
    lines = read_split_file(path)
    file_ids = _file_ids(manifest, lines, path)
    names = list(dict.fromkeys(line.dataset for line in lines))
    if len(names) > MAX_DATASETS:
        raise InputError(f"{len(names)} datasets, more than {MAX_DATASETS}", path)
    numbers = _image_numbers(manifest)
    ranges = [(e["image_offset"], e["image_offset"] + e["n_images"]) for e in manifest.info["inputs"]]
    image_of = {(f, int(numbers[i])): i for f, (start, end) in enumerate(ranges) for i in range(start, end)}
    code = {name: d for d, name in enumerate(names)}
    of_image = np.full(manifest.n_images, -1, dtype=np.int32)
    missing = 0
    for line, file_id in zip(lines, file_ids):
        if line.image is None:
            chosen = np.arange(*ranges[file_id])
        else:
            found = image_of.get((file_id, line.image))
            chosen = np.array([] if found is None else [found], dtype=np.int64)
        if len(chosen) == 0:
            missing += 1
            continue
        dataset = code[line.dataset]
        clash = chosen[(of_image[chosen] >= 0) & (of_image[chosen] != dataset)]
        if len(clash):
            raise InputError(f"line {line.line}: image {int(numbers[clash[0]])} of {line.file} is already in "
                             f"dataset {names[of_image[clash[0]]]!r}", path)
        of_image[chosen] = dataset
    if not (of_image >= 0).any():
        raise InputError("none of the listed images is in the data (images are numbered as in "
                         "docs/time_resolved.md)", path)
    if missing:
        log(f"{path}: {missing} listed image(s) not in the data (absent, or dropped by the filters)")
    left_out = int((of_image < 0).sum())
    if left_out:
        log(f"{path}: {left_out} image(s) of the data not listed, left out of the merge")
    return _drop_empty(Datasets(of_image, names), path)


def _image_numbers(manifest):
    """``[n_images]`` number of each image in its file: its BATCH (a stream's crystal position from 0)."""
    return _image_column(manifest, "BATCH")


def _drop_empty(datasets, path):
    """Refuse datasets without images (their outputs would be empty)."""
    empty = [name for name, count in zip(datasets.names, datasets.image_counts()) if count == 0]
    if empty:
        raise InputError(f"dataset {empty[0]!r} has no image in the data", path)
    return datasets


def assign(manifest, spec, log=print):
    """The :class:`Datasets` of a cache for a :class:`GroupSpec` (one dataset when inactive)."""
    if spec.by_file:
        datasets = by_file(manifest)
    elif spec.key is not None:
        datasets = by_column(manifest, spec.key)
    elif spec.split_file is not None:
        datasets = from_split_file(manifest, spec.split_file, log)
    else:
        return single(manifest.n_images)
    log(datasets.describe())
    return datasets
