"""Shared fixtures: the real data folder and a small simulated data set.

The simulation (48 lysozyme-like still images in P 43 21 2 to 3 Å, written as
a CrystFEL stream and an unmerged MTZ of the same images) is made once per
test session; it takes about a second.
"""

import os
from pathlib import Path

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

#: Real reflection files (see the README there), beside the repository.
DATA = Path(__file__).resolve().parent / "data"

#: Parameters of the shared simulation.
SIM_IMAGES = 48
SIM_PARAMS = dict(n_images=SIM_IMAGES, seed=7, dmin=3.0)
SIM_SPACEGROUP = "P 43 21 2"


@pytest.fixture(scope="session")
def data_dir():
    """Folder of the real data files; the tests using it skip if it is absent."""
    if not DATA.is_dir():
        pytest.skip(f"real data folder {DATA} not found")
    return DATA


@pytest.fixture(scope="session")
def sim_files(tmp_path_factory):
    """Paths (``stream``, ``mtz``, ``truth``, ``images``) of the shared simulation."""
    from careless_online.simulate import simulate_to_files

    base = tmp_path_factory.mktemp("sim") / "lyso"
    return simulate_to_files(str(base), formats=("stream", "mtz"), **SIM_PARAMS)


@pytest.fixture(scope="session")
def sim_manifest(sim_files, tmp_path_factory):
    """A cache of the simulated stream, 8 images per shard (so 6 shards)."""
    from careless_online.io.cache import build_cache
    from careless_online.io.table import TableOptions

    options = TableOptions(spacegroup=SIM_SPACEGROUP)
    return build_cache([sim_files["stream"]], options, str(tmp_path_factory.mktemp("cache")), shard_images=8)


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config, items):
    """Keep the tests that share a module-scoped fixture on one xdist worker.

    With ``--dist loadgroup`` (setup.cfg) the tests marked ``xdist_group`` run
    on one worker; the others are spread one by one as with ``--dist load``.
    Without it, a module's tests were spread over both workers and each built
    the module's fixtures (most of them train a model: a minute or two each).
    """
    for item in items:
        fixtures = getattr(item, "_fixtureinfo", None)
        if fixtures is None:
            continue
        if any(d.scope == "module" for defs in fixtures.name2fixturedefs.values() for d in defs):
            item.add_marker(pytest.mark.xdist_group(item.module.__name__))
