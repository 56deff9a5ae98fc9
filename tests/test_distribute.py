"""Data-parallel training (careless_online.training.distribute, issue 11).

The checks that need two replicas run in a subprocess
(``tests/distribute_worker.py``): logical CPU devices can only be configured
before TensorFlow initializes its devices.
"""

import json
import os
import subprocess
import sys
import time
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


#: A tiny network and little output: the runs' own figures do not matter, only their agreement.
TINY = ["--spacegroups", "P 43 21 2", "--mlp-width", "8", "--image-layers", "1", "--mlp-layers", "1",
        "--validation-images", "8", "--disable-progress-bar"]

#: ``careless_online`` in a fresh process (its error lines start with ``careless_online: error:``).
COMMAND = [sys.executable, "-c", "import sys; from careless_online.cli.main import main; "
           "sys.argv[0] = 'careless_online'; sys.exit(main())"]


def _free_ports(n):
    import socket

    sockets = [socket.socket() for _ in range(n)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def _start_workers(argv, n=2, started=None):
    """Local ``mono --strategy multi-worker`` processes of a cluster of ``n`` (TF_CONFIG on 127.0.0.1), chief first.

    ``started``: the worker indices to start (default all).
    """
    cluster = {"worker": [f"127.0.0.1:{p}" for p in _free_ports(n)]}
    processes = []
    for index in range(n) if started is None else started:
        config = json.dumps({"cluster": cluster, "task": {"type": "worker", "index": index}})
        env = dict(os.environ, TF_CONFIG=config, TF_CPP_MIN_LOG_LEVEL="3")
        processes.append(subprocess.Popen([*COMMAND, "mono", "--strategy", "multi-worker", *argv],
                                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env))
    return processes


def _finish(processes, timeout=300):
    """Wait for every process; their stdout, after checking each succeeded (killing all otherwise)."""
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


def _start_single(argv):
    """One ``mono --strategy single`` process."""
    return subprocess.Popen([*COMMAND, "mono", "--strategy", "single", *argv], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=_clean_env())


def _against_one_process(argv, folder):
    """Two workers (output ``folder/mw/m``) and, meanwhile, one process (``folder/one/m``); the workers' stdout.

    The workers spend much of their time waiting for each other, so the
    single process runs beside them.
    """
    processes = [*_start_workers([*argv, str(folder / "mw" / "m")]), _start_single([*argv, str(folder / "one" / "m")])]
    return _finish(processes)[:2]


def _clean_env():
    environment = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    for name in ("TF_CONFIG", "SLURM_PROCID", "SLURM_STEP_NODELIST"):
        environment.pop(name, None)
    return environment


def _merged_f(path):
    import reciprocalspaceship as rs

    return rs.read_mtz(str(path))["F"]


def _agreement(multi_path, single_path, truth_path):
    """CC of the two merges' F, and each one's CC with the true F (on the reflections all three have)."""
    import reciprocalspaceship as rs

    truth = rs.read_mtz(str(truth_path))["F"].rename("true")
    table = _merged_f(multi_path).rename("multi").to_frame().join(_merged_f(single_path).rename("single"))
    table = table.join(truth, how="inner").astype(float)
    cc = table.corr()
    return cc.loc["multi", "single"], cc.loc["multi", "true"], cc.loc["single", "true"]


def _same_quality(folder, truth):
    """The multi-worker merge (``folder/mw``) is as good as the single-process one (``folder/one``).

    The two runs see the same images in the same steps from the same start,
    but their Monte Carlo draws differ (each replica folds its id into the
    step's seed), so after ~100 steps their merges differ by that noise
    (measured CC between them 0.978 on both sets, CC with the truth 0.9165
    against 0.9189 and 0.9065 against 0.9083): their CC with the truth must
    agree within 0.01, and the merges must correlate (CC > 0.95).
    """
    cc, cc_multi, cc_single = _agreement(folder / "mw" / "m_0.mtz", folder / "one" / "m_0.mtz", truth)
    assert abs(cc_multi - cc_single) < 0.01, (cc_multi, cc_single)
    assert cc > 0.95, cc


def _user_files(folder):
    return sorted(p.name for p in folder.iterdir() if not p.name.startswith("."))


def _wrote(log):
    return [line.split(": ", 1)[1] for line in log.splitlines() if line.startswith("wrote ")]


@pytest.fixture(scope="module")
def set_2000(tmp_path_factory):
    """A 2,000-image simulated set (5 A, about 80 observations per image), as two streams of 1,000 images."""
    from careless_online.simulate import simulate_to_files

    folder = tmp_path_factory.mktemp("set2000")
    files = simulate_to_files(str(folder / "all"), formats=("stream",), n_images=2000, seed=41, dmin=5.0)
    head, *chunks = Path(files["stream"]).read_text().split(CHUNK)
    halves = []
    for name, part in (("a", chunks[:1000]), ("b", chunks[1000:])):
        (folder / f"{name}.stream").write_text(head + "".join(CHUNK + c for c in part))
        halves.append(str(folder / f"{name}.stream"))
    return halves, files["truth"]


CHUNK = "----- Begin chunk -----"


def test_two_workers_merge_2000_images_like_one_process_each_image_once_per_pass(set_2000, tmp_path):
    """The done-when on a simulated set: quality of one process at equal images seen; shared cache; chief writes."""
    streams, truth = set_2000
    argv = [*TINY, "--epochs", "1", "--batch-size", "20", "--test-fraction", "0", "--validation-frequency", "100",
            "--no-predictions", "dHKL", *streams]
    chief, worker = _against_one_process(argv, tmp_path)
    _same_quality(tmp_path, truth)
    # each worker converted one of the two files into the shared cache
    assert "worker 0: converted input files 1-1 of 2" in chief and "worker 1: converted input files 2-2 of 2" in worker
    # one pass of 100 steps x 20 images: each worker's replica got 1,000 images, none twice
    assert "worker 0 of 2: its 1 replicas trained on 1000 images (1000 distinct)" in chief
    assert "worker 1 of 2: its 1 replicas trained on 1000 images (1000 distinct)" in worker
    assert _user_files(tmp_path / "mw") == ["m_0.ckpt", "m_0.keras", "m_0.mtz", "m_history.csv"]
    assert _wrote(worker) and not any(p.startswith(str(tmp_path)) for p in _wrote(worker))


def test_two_workers_merge_the_shipped_example_like_one_process(tmp_path):
    """The issue's done-when on examples/example.stream (200 stills): equal quality at equal images seen."""
    example = Path(__file__).resolve().parents[1] / "examples"
    argv = [*TINY, "--dmin", "5", "--epochs", "10", "--batch-size", "20", "--validation-frequency", "50",
            "--no-predictions", "dHKL", str(example / "example.stream")]
    _against_one_process(argv, tmp_path)
    _same_quality(tmp_path, example / "example_truth.mtz")


def _history_steps(path):
    import pandas as pd

    return pd.read_csv(path)["step"].tolist()


def test_a_killed_worker_stops_the_run_in_one_line_and_resume_restarts_both_from_the_chief(sim_files, tmp_path):
    from careless_online.training import checkpoint

    out = tmp_path / "out" / "m"
    argv = [*TINY, "--batch-size", "4", "--checkpoint-interval", "5", "--validation-frequency", "5",
            "--worker-timeout", "120", "dHKL", sim_files["stream"], str(out)]
    chief, worker = _start_workers(["--iterations", "100000", "--no-predictions", *argv])
    try:
        deadline = time.monotonic() + 240
        while checkpoint.latest(checkpoint.folder(f"{out}_0.keras")) is None:
            assert time.monotonic() < deadline and chief.poll() is None, "no checkpoint was written"
            time.sleep(0.5)
        worker.kill()
        killed = time.monotonic()
        _, stderr = chief.communicate(timeout=150)
        stopped = time.monotonic() - killed
    finally:
        for process in (chief, worker):
            if process.poll() is None:
                process.kill()
    assert chief.returncode == 2 and "Traceback" not in stderr
    last = stderr.strip().splitlines()[-1]
    assert last.startswith("careless_online: error: training stopped at step ")
    assert "a worker of the cluster died or stopped responding" in last and last.endswith("with --resume")
    assert stopped < 120
    restart = checkpoint.latest(checkpoint.folder(f"{out}_0.keras")).step
    chief_log, worker_log = _finish(_start_workers(["--resume", "--iterations", str(restart + 5), *argv]))
    for log in (chief_log, worker_log):
        assert f"at step {restart}" in log.split("resuming ", 1)[1].splitlines()[0]
    steps = _history_steps(f"{out}_history.csv")
    assert steps[-1] == restart + 5 and steps == sorted(set(steps))
    assert _user_files(out.parent) == ["m_0.ckpt", "m_0.keras", "m_0.mtz", "m_history.csv", "m_predictions_0.mtz"]
    assert not any(p.startswith(str(tmp_path)) for p in _wrote(worker_log))


def test_worker_timeout_bounds_the_wait_for_a_worker_that_never_joins(sim_files, tmp_path):
    """--worker-timeout 3: a cluster of two where only one worker runs ends in one line, not a hang."""
    (process,) = _start_workers([*TINY, "--worker-timeout", "3", "dHKL", sim_files["stream"],
                                 str(tmp_path / "out" / "m")], started=[0])
    started = time.monotonic()
    _, stderr = process.communicate(timeout=120)
    assert process.returncode != 0
    assert stderr.strip().splitlines()[-1] == (
        "careless_online: error: the cluster did not come together: not all 2 workers joined within 3 s "
        "(check every worker runs, TF_CONFIG's addresses and --worker-timeout)")
    assert time.monotonic() - started < 100
    assert not (tmp_path / "out").exists()


def test_live_trains_on_two_mirrored_replicas(sim_files, tmp_path):
    out = tmp_path / "live" / "m"
    done = subprocess.run([sys.executable, str(WORKER), "cli", "mono", "--live", "--strategy", "mirrored", *TINY,
                           "--dmin", "4", "--iterations", "4", "--live-steps", "4", "--live-timeout", "1",
                           "--live-poll", "0.2", "--batch-size", "8", "dHKL", sim_files["stream"], str(out)],
                          capture_output=True, text=True, timeout=300, env=_clean_env())
    assert done.returncode == 0, done.stderr[-3000:]
    assert "data-parallel training: 2 replicas (MirroredStrategy)" in done.stdout
    assert "worker 0 of 1: its 2 replicas trained on 32 images" in done.stdout
    assert (tmp_path / "live" / "m_0.mtz").exists() and (tmp_path / "live" / "m_live" / "index.html").exists()


def _cli(*argv, env=None):
    return subprocess.run([*COMMAND, *argv], capture_output=True, text=True, timeout=120,
                          env=dict(_clean_env(), **(env or {})))


def test_strategy_flag_refuses_live_multi_worker_in_one_line(sim_files, tmp_path):
    done = _cli("mono", "--live", "--dmin", "3", "--strategy", "multi-worker", "--spacegroups", "P 43 21 2",
                "dHKL", sim_files["stream"], str(tmp_path / "out" / "m"))
    assert done.returncode == 2
    assert done.stderr.strip().endswith("use --strategy mirrored on one machine")
    assert len(done.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "out").exists()


def test_strategy_multi_worker_without_a_cluster_is_a_one_line_error(sim_files, tmp_path):
    done = _cli("mono", "--strategy", "multi-worker", "--spacegroups", "P 43 21 2", "dHKL", sim_files["stream"],
                str(tmp_path / "out" / "m"))
    assert done.returncode == 2
    assert "needs TF_CONFIG or a SLURM job step" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1
