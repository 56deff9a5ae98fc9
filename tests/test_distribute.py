"""Data-parallel training (careless_online.training.distribute, issue 11).

The checks that need two replicas run in a subprocess
(``tests/distribute_worker.py``): logical CPU devices can only be configured
before TensorFlow initializes its devices.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from careless_online.errors import InputError

WORKER = Path(__file__).resolve().parent / "distribute_worker.py"


def _run_worker(*args, timeout=240, env=None):
    """Run the worker script; return its last stdout line as JSON."""
    environment = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", **(env or {}))
    done = subprocess.run([sys.executable, str(WORKER), *args], capture_output=True, text=True, timeout=timeout,
                          env=environment)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def train_batches(sim_manifest):
    from careless_online.io.pipeline import ImageBatches, Standardizer

    standardizer = Standardizer.fit(sim_manifest, ["dHKL"])
    return ImageBatches(sim_manifest, standardizer, batch_images=8, test_fraction=0.0, seed=5)


def test_replica_slices_partition_the_images_of_a_batch(train_batches):
    from careless_online.training.distribute import replica_slices

    batch = next(train_batches.batches(0))
    parts = replica_slices(batch, 3)
    assert [int(p["n_images"]) for p in parts] == [3, 3, 2]
    assert np.array_equal(np.concatenate([p["image_id"] for p in parts]), batch["image_id"])
    assert np.array_equal(np.concatenate([p["I"] for p in parts]), batch["I"])
    for part in parts:
        assert part["image"].min() == 0 and part["image"].max() == part["n_images"] - 1
        assert len(np.unique(part["image_id"])) == part["n_images"]


def test_sharding_uses_every_image_once_per_pass(train_batches):
    """Two workers with two replicas each: one pass hands out each training image exactly once."""
    import itertools

    import tensorflow as tf

    from careless_online.training.distribute import pipeline_slices

    steps = train_batches.steps_per_epoch
    seen = []
    for pipeline in range(2):
        context = tf.distribute.InputContext(num_input_pipelines=2, input_pipeline_id=pipeline,
                                             num_replicas_in_sync=4)
        for part in itertools.islice(pipeline_slices(train_batches, 0, context), 2 * steps):
            seen.extend(np.unique(part["image_id"]).tolist())
    expected = [np.unique(b["image_id"]) for b in itertools.islice(train_batches.epoch(0), steps)]
    expected = np.concatenate(expected)
    assert len(seen) == len(set(seen)) == train_batches.n_images
    assert sorted(seen) == sorted(expected.tolist())


def test_resolve_strategy_refuses_unknown_names_and_clusterless_multi_worker(monkeypatch):
    from careless_online.training.distribute import resolve_strategy

    with pytest.raises(InputError, match="unknown --strategy"):
        resolve_strategy("ring")
    for name in ("TF_CONFIG", "SLURM_PROCID", "SLURM_STEP_NODELIST"):
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(InputError, match="TF_CONFIG or a SLURM"):
        resolve_strategy("multi-worker")


def test_single_strategy_is_the_default_one_replica_chief():
    import tensorflow as tf

    from careless_online.training.distribute import is_chief, resolve_strategy

    strategy = resolve_strategy("single")
    assert strategy is tf.distribute.get_strategy()
    assert strategy.num_replicas_in_sync == 1 and is_chief(strategy)


def test_two_mirrored_replicas_give_the_single_process_gradient_and_step(sim_manifest):
    """Summed (not averaged) over replicas: the gradient and the Adam step equal one process's on the same images."""
    result = _run_worker("gradients", sim_manifest.path)
    assert result["replicas"] == 2
    assert result["dist_loss"] == pytest.approx(result["loss"], rel=1e-5)
    assert result["gradient_error"] < 1e-5  # relative to the largest gradient element
    assert result["step_size"] > 1e-3  # the step moved the weights ...
    assert result["step_error"] < 1e-6  # ... identically


#: A short, small merge (the run's own figures do not matter, only their agreement).
SHORT = ["--spacegroups", "P 43 21 2", "--iterations", "4", "--validation-frequency", "4", "--validation-images", "8",
         "--disable-progress-bar", "--mlp-width", "8", "--image-layers", "1", "--mlp-layers", "1", "--batch-size", "8",
         "--no-predictions"]


def _free_ports(n):
    import socket

    sockets = [socket.socket() for _ in range(n)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def _multi_worker_merge(stream, out, timeout=420):
    """Two local ``--strategy multi-worker`` processes (TF_CONFIG on 127.0.0.1); their stdout, chief first."""
    ports = _free_ports(2)
    cluster = {"worker": [f"127.0.0.1:{p}" for p in ports]}
    processes = []
    for index in range(2):
        config = json.dumps({"cluster": cluster, "task": {"type": "worker", "index": index}})
        env = dict(os.environ, TF_CONFIG=config, TF_CPP_MIN_LOG_LEVEL="3")
        command = [sys.executable, str(WORKER),
                   "cli", "mono", "--strategy", "multi-worker", *SHORT, "dHKL", stream, out]
        processes.append(subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                          env=env))
    outputs = []
    try:
        for process in processes:
            stdout, stderr = process.communicate(timeout=timeout)
            assert process.returncode == 0, stderr[-3000:]
            outputs.append(stdout)
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
    return outputs


def _merged_f(path):
    import reciprocalspaceship as rs

    return rs.read_mtz(str(path))["F"].to_numpy(dtype=float)


def test_two_local_workers_merge_like_two_mirrored_replicas_and_only_the_chief_writes(sim_files, tmp_path):
    """``--strategy multi-worker`` with two processes: the chief's merge equals a two-replica mirrored one."""
    stream = sim_files["stream"]
    chief_log, worker_log = _multi_worker_merge(stream, str(tmp_path / "mw" / "m"))
    written = sorted(p.name for p in (tmp_path / "mw").iterdir() if not p.name.startswith("."))
    assert written == ["m_0.ckpt", "m_0.keras", "m_0.mtz", "m_history.csv"]
    assert f"wrote merged: {tmp_path / 'mw' / 'm'}_0.mtz" in chief_log
    worker_paths = [line.split(": ", 1)[1] for line in worker_log.splitlines() if line.startswith("wrote ")]
    assert worker_paths and not any(p.startswith(str(tmp_path)) for p in worker_paths)
    done = subprocess.run([sys.executable, str(WORKER), "cli", "mono", "--strategy", "mirrored", *SHORT, "dHKL",
                           stream, str(tmp_path / "mirrored" / "m")], capture_output=True, text=True, timeout=300,
                          env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"))
    assert done.returncode == 0, done.stderr[-3000:]
    multi, mirrored = _merged_f(tmp_path / "mw" / "m_0.mtz"), _merged_f(tmp_path / "mirrored" / "m_0.mtz")
    assert np.corrcoef(multi, mirrored)[0, 1] > 0.999
    assert np.max(np.abs(multi - mirrored) / np.abs(mirrored)) < 1e-3


def _cli(*argv, env=None):
    environment = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    for name in ("TF_CONFIG", "SLURM_PROCID", "SLURM_STEP_NODELIST"):
        environment.pop(name, None)
    return subprocess.run([sys.executable, "-c", "from careless_online.cli.main import main; main()", *argv],
                          capture_output=True, text=True, timeout=120, env=dict(environment, **(env or {})))


def test_strategy_flag_refuses_live_mirrored_in_one_line(sim_files, tmp_path):
    done = _cli("mono", "--live", "--dmin", "3", "--strategy", "mirrored", "--spacegroups", "P 43 21 2", "dHKL",
                sim_files["stream"], str(tmp_path / "out" / "m"))
    assert done.returncode == 2
    assert done.stderr.strip().endswith("--live with --strategy mirrored is not supported yet")
    assert len(done.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "out").exists()


def test_strategy_multi_worker_without_a_cluster_is_a_one_line_error(sim_files, tmp_path):
    done = _cli("mono", "--strategy", "multi-worker", "--spacegroups", "P 43 21 2", "dHKL", sim_files["stream"],
                str(tmp_path / "out" / "m"))
    assert done.returncode == 2
    assert "needs TF_CONFIG or a SLURM job step" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1
