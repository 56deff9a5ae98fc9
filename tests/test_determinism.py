"""Same inputs, flags and seed on the CPU: byte-identical output files."""

import filecmp

from careless_online.cli.main import main

FLAGS = ["--disable-progress-bar", "--spacegroups", "P 43 21 2", "--anomalous", "--iterations", 12,
         "--validation-frequency", 6, "--validation-images", 8, "--mlp-width", 8, "--mlp-layers", 1,
         "--image-layers", 1, "--parse-workers", 1]


def merge(sim_files, cache, out, seed):
    assert main(["mono", *map(str, FLAGS), "--seed", str(seed), "--cache-dir", str(cache), "dHKL,XDET,YDET",
                 sim_files["stream"], str(out)]) == 0


def test_same_seed_gives_identical_files(sim_files, tmp_path):
    cache = tmp_path / "cache"
    merge(sim_files, cache, tmp_path / "a" / "m", seed=5)
    merge(sim_files, cache, tmp_path / "b" / "m", seed=5)
    merge(sim_files, cache, tmp_path / "c" / "m", seed=6)
    for name in ("m_0.mtz", "m_predictions_0.mtz"):
        assert filecmp.cmp(tmp_path / "a" / name, tmp_path / "b" / name, shallow=False), name
        # the comparison can fail: another seed gives another merge
        assert not filecmp.cmp(tmp_path / "a" / name, tmp_path / "c" / name, shallow=False), name
