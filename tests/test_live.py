"""Live mode: merging streams while they are being written."""

import json
import threading

import numpy as np
import pandas as pd
import pytest
import reciprocalspaceship as rs

from careless_online.cli.main import main
from careless_online.io.live import LiveCache
from careless_online.io.table import TableOptions
from careless_online.simulate import simulate_to_files


def test_live_cache_reads_only_complete_chunks(tmp_path):
    paths = simulate_to_files(str(tmp_path / "s"), n_images=12, seed=2, formats=("stream",))
    text = open(paths["stream"]).read()
    cut = text.index("----- End chunk -----", text.index("----- End chunk -----") + 10) + 30
    growing = tmp_path / "grow.stream"
    growing.write_text(text[:cut])  # two complete chunks and part of a third
    cache = LiveCache([str(growing)], TableOptions(spacegroup="P 43 21 2", dmin=3.0), str(tmp_path / "cache"))
    assert cache.poll() == 2
    assert cache.poll() == 0
    growing.write_text(text)
    assert cache.poll() == 10
    manifest = cache.manifest
    assert manifest.n_images == 12
    assert manifest.counts().sum() == manifest.n_obs
    on_disk = json.loads((tmp_path / "cache" / "manifest.json").read_text())
    assert on_disk["n_obs"] == manifest.n_obs


def test_live_merge_follows_a_growing_stream(tmp_path):
    base = str(tmp_path / "grow")
    writer = threading.Thread(target=simulate_to_files, args=(base,),
                              kwargs=dict(n_images=90, seed=4, formats=("stream",), block_size=30, interval=1.5))
    writer.start()
    try:
        code = main(["mono", "--live", "--dmin", "3", "--spacegroups", "P 43 21 2", "--iterations", "40",
                     "--live-steps", "20", "--live-timeout", "4", "--live-poll", "0.3",
                     "dHKL,XDET,YDET,ewald_offset", base + ".stream", str(tmp_path / "out" / "live")])
    finally:
        writer.join()
    assert code == 0
    manifest = json.loads((tmp_path / "out" / ".careless_online_cache" / "live_live" / "manifest.json").read_text())
    assert manifest["n_images"] == 90
    merged = rs.read_mtz(str(tmp_path / "out" / "live_0.mtz"))
    assert merged["N"].sum() == manifest["n_obs"]
    history = pd.read_csv(tmp_path / "out" / "live_history.csv")
    assert history["step"].is_monotonic_increasing and history["step"].iloc[-1] >= 40
    assert np.isfinite(history["loss"]).all()


def test_live_needs_dmin(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["mono", "--live", "--spacegroups", "P 43 21 2", "dHKL", str(tmp_path / "x.stream"), str(tmp_path / "o")])
    assert exit_info.value.code == 2
    assert "--dmin" in capsys.readouterr().err
