"""Where a run keeps its cache: a module of its own, light enough for the CLI's checks (no readers imported)."""

import os

#: Name of the cache folder beside the outputs when no ``cache_dir`` is given.
DEFAULT_CACHE_FOLDER = ".careless_online_cache"


def default_cache_dir(base, cache_dir=None):
    """The cache folder of a run writing ``<base>_*``.

    ``cache_dir`` when given, else :data:`DEFAULT_CACHE_FOLDER` beside the outputs.
    """
    return cache_dir or os.path.join(os.path.dirname(os.path.abspath(base)), DEFAULT_CACHE_FOLDER)
