"""Cache conversion shows its progress in megabytes of input read, block by block."""

import math
import os

from careless_online.io import convert
from careless_online.io.cache import build_cache
from careless_online.io.table import TableOptions

from conftest import SIM_SPACEGROUP


class _Recorder:
    """Stands for the progress display: records what the conversion reports."""

    def __init__(self, total, unit):
        self.total, self.unit, self.n, self.updates, self.closed = total, unit, 0, [], False

    def update(self, n=1):
        self.n += n
        self.updates.append(n)

    def close(self):
        self.closed = True


def _record(monkeypatch):
    shown = []

    def display(total, unit):
        shown.append(_Recorder(total, unit))
        return shown[-1]

    monkeypatch.setattr(convert, "progress_display", display)
    return shown


def test_conversion_progress_counts_each_block_and_ends_at_the_whole_input(sim_files, tmp_path, monkeypatch):
    shown = _record(monkeypatch)
    stream = sim_files["stream"]
    manifest = build_cache([stream], TableOptions(spacegroup=SIM_SPACEGROUP), str(tmp_path / "c"),
                           shard_images=8, workers=1, progress=True)
    (display,) = shown
    assert display.unit == "MB" and display.total == math.ceil(os.path.getsize(stream) / 1e6)
    blocks = math.ceil(manifest.n_images / 8)
    assert blocks > 2 and len(display.updates) >= blocks  # one report per block of 8 chunks
    assert display.closed and display.n == display.total


def test_conversion_shows_no_progress_unless_asked(sim_files, tmp_path, monkeypatch):
    shown = _record(monkeypatch)
    build_cache([sim_files["mtz"]], TableOptions(), str(tmp_path / "c"), shard_images=8)
    assert shown == []
