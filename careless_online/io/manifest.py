"""What a cache folder holds: :class:`Manifest`, read from ``manifest.json``.

Every shard record carries the size and a SHA-256 checksum of its file; a
shard is checked against them the first time it is opened, so a truncated
or corrupted shard is reported instead of read as data.
"""

import json
import os
from dataclasses import dataclass, field
from functools import cached_property

import numpy as np

from careless_online.errors import InputError
from careless_online.io.reflections import ReflectionIndex
from careless_online.io.shards import shard_problem
from careless_online.io.moments import mean_std

#: Version of the cache layout; caches of another version are rebuilt (4: a stream's BATCH is the crystal's
#: position in the file, not in its parsed block; 5: observations impossible for their image are dropped).
CACHE_VERSION = 5
#: Columns every shard has; every other shard column is candidate metadata.
CORE_COLUMNS = ("image_id", "file_id", "Hobs", "Kobs", "Lobs", "H", "K", "L", "plus", "refl_id", "I", "SigI")


@dataclass
class Manifest:
    """What a cache folder holds.

    Attributes
    ----------
    path : str
        The cache folder.
    info : dict
        The parsed ``manifest.json``.
    """

    path: str
    info: dict
    _verified: set = field(default_factory=set, repr=False, compare=False)

    @cached_property
    def index(self):
        """The :class:`ReflectionIndex` the cache was built for (built once)."""
        return ReflectionIndex.from_config(self.info["index"])

    @property
    def shards(self):
        """List of shard records (file, n_obs, n_images, image ids, size, sha256)."""
        return self.info["shards"]

    @property
    def n_images(self):
        """Number of images in the cache."""
        return int(self.info["n_images"])

    @property
    def n_observed_images(self):
        """Images with observations in the cache (those dropped whole, e.g. for their cell or as repeats, left out)."""
        return int(sum(shard["n_images"] for shard in self.shards))

    @property
    def n_obs(self):
        """Number of observations in the cache."""
        return int(self.info["n_obs"])

    @property
    def columns(self):
        """Names of the shard columns."""
        return list(self.info["columns"])

    @property
    def metadata_columns(self):
        """Columns usable as metadata (everything but the core columns)."""
        return [c for c in self.columns if c not in CORE_COLUMNS] + ["image_id", "file_id", "Hobs", "Kobs", "Lobs"]

    def counts(self):
        """Observations per unique reflection (numpy int64, one per reflection id)."""
        return np.load(os.path.join(self.path, "counts.npy"))

    def column_stats(self, name):
        """(mean, std) of a shard column over all observations."""
        stats = self.info["stats"].get(name)
        if stats is None:
            raise KeyError(name)
        mean, std = mean_std(stats)
        return float(mean), float(std)

    def damaged_shards(self):
        """(file, problem) of each shard whose file does not match its record (reads every shard)."""
        found = []
        for i, record in enumerate(self.shards):
            problem = shard_problem(self.path, record)
            if problem is None:
                self._verified.add(i)
            else:
                found.append((record["file"], problem))
        return found

    def load_shard(self, i, columns=None):
        """Arrays of shard ``i`` as a dict (only ``columns`` if given).

        Raises
        ------
        InputError
            If the shard file does not match the size and checksum recorded
            when it was written (checked on first opening).
        """
        record = self.shards[i]
        if i not in self._verified:
            problem = shard_problem(self.path, record)
            if problem is not None:
                raise InputError(f"cache shard {record['file']} is damaged ({problem}); delete the folder "
                                 "to rebuild the cache", self.path)
            self._verified.add(i)
        with np.load(os.path.join(self.path, record["file"])) as npz:
            names = columns if columns is not None else npz.files
            arrays = {name: npz[name] for name in names}
        if record.get("image_offset") and "image_id" in arrays:  # a shard converted by another worker
            arrays["image_id"] = arrays["image_id"] + arrays["image_id"].dtype.type(record["image_offset"])
        return arrays

    def files(self):
        """Input files of the cache, in file_id order."""
        return [entry["path"] for entry in self.info["inputs"]]


def load_manifest(folder):
    """Open an existing cache folder.

    Raises
    ------
    InputError
        If the folder holds no valid manifest.
    """
    path = os.path.join(folder, "manifest.json")
    try:
        with open(path) as handle:
            return Manifest(folder, json.load(handle))
    except (OSError, json.JSONDecodeError, UnicodeDecodeError) as err:
        raise InputError(f"not a careless_online cache ({err.__class__.__name__})", folder) from None
