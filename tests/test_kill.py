"""Kill-and-resume: real merges SIGKILLed at every phase, then resumed.

One output prefix goes through a chain of runs, each a ``careless_online mono``
subprocess killed with SIGKILL at a different moment:

1. ``convert``: right after the first cache shard is written, before the
   cache is complete;
2. ``checkpoint``: in the middle of writing the second checkpoint;
3. ``training``: at a random moment of training (the test draws the delay);
4. ``merged``: halfway through writing the merged MTZ;
5. ``predictions``: halfway through streaming the predictions MTZ;

then a last ``--resume`` finishes.  The kills at fixed phases are made by the
dying process itself (a few lines run before ``main`` patch the writer of that
phase to write part of its data and SIGKILL the process), so the phase is hit
whatever the machine's speed.  After every kill, every visible output file
must read back with gemmi and reciprocalspaceship (a killed write leaves no
partial file under the output's name); every resume must restart at most one
checkpoint interval behind the last step the killed run reported; the
history must list each evaluation step once, in order; and the final merge
must match an uninterrupted run with the same seed.
"""

import os
import re
import signal
import subprocess
import sys
import time

import gemmi
import numpy as np
import pandas as pd
import pytest
import reciprocalspaceship as rs

from careless_online.cli.main import main
from careless_online.io.layout import to_internal
from careless_online.training import checkpoint

KEYS = "dHKL,XDET,YDET"
ITERATIONS = 40
INTERVAL = 10
FLAGS = ["--disable-progress-bar", "--spacegroups", "P 43 21 2", "--anomalous", "--iterations", ITERATIONS,
         "--checkpoint-interval", INTERVAL, "--validation-frequency", 5, "--validation-images", 8,
         "--mlp-width", 8, "--mlp-layers", 1, "--image-layers", 1, "--seed", 3, "--parse-workers", 1]

#: Run in the subprocess before ``main``: arm the kill of the phase named by $H4_KILL_PHASE.
HOOK = r"""
import os, signal, sys, time
import numpy as np

def die():
    sys.stdout.flush(); sys.stderr.flush()
    os.kill(os.getpid(), signal.SIGKILL)

phase = os.environ.get("H4_KILL_PHASE", "")
if phase == "convert":
    for name in ("save", "savez", "savez_compressed"):
        original = getattr(np, name)
        def saved_then_die(*args, _original=original, **kwargs):
            _original(*args, **kwargs)
            die()
        setattr(np, name, saved_then_die)
elif phase == "checkpoint":
    import zipfile
    opened = {True: 0, False: 0}  # .keras archives written inside a checkpoint folder (*.ckpt) or not
    init, writestr = zipfile.ZipFile.__init__, zipfile.ZipFile.writestr
    def counting_init(self, file, mode="r", *args, **kwargs):
        init(self, file, mode, *args, **kwargs)
        name = str(getattr(file, "name", file))
        if mode == "w" and name.endswith(".keras"):
            opened[".ckpt" + os.sep in name] += 1
    def half_then_die(self, *args, **kwargs):
        writestr(self, *args, **kwargs)
        # the second checkpoint's model, after its first member
        if opened[True] >= 2 or (opened[True] == 0 and opened[False] >= 2):
            die()
    zipfile.ZipFile.__init__, zipfile.ZipFile.writestr = counting_init, half_then_die
elif phase == "training":
    from careless_online.io.pipeline import ImageBatches
    epoch = ImageBatches.epoch
    def slow_epoch(self, *args, **kwargs):  # a step of a real merge takes longer: give the kill time to land
        for batch in epoch(self, *args, **kwargs):
            time.sleep(0.05)
            yield batch
    ImageBatches.epoch = slow_epoch
elif phase == "merged":
    import gemmi
    def half_mtz_then_die(self, path):
        data = self.write_to_bytes()
        with open(path, "wb") as handle:
            handle.write(data[: len(data) // 2])
        die()
    gemmi.Mtz.write_to_file = half_mtz_then_die
elif phase == "predictions":
    from careless_online.io import writers
    block = writers._prediction_block
    calls = []
    def second_part_dies(*args):
        calls.append(1)
        if len(calls) == 2:
            die()
        return block(*args)
    writers._prediction_block = second_part_dies

from careless_online.cli.main import main
sys.exit(main(sys.argv[1:]))
"""


def start(args, phase):
    env = dict(os.environ, H4_KILL_PHASE=phase, TF_CPP_MIN_LOG_LEVEL="2", OMP_NUM_THREADS="1")
    return subprocess.Popen([sys.executable, "-c", HOOK, "mono", *map(str, args)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def finish(process, timeout=120):
    out, _ = process.communicate(timeout=timeout)
    return process.returncode, out


def kill_during_training(args, out_dir, rng):
    """Start a run and SIGKILL it a random time after its first new history row.

    A resumed run first rewrites the history (a new file) without the rows
    past its checkpoint; its first new row is the first one past that step.
    """
    history = out_dir / "m_history.csv"
    old_file = os.stat(history).st_ino if history.exists() else None
    restored = restored_step(out_dir)
    process = start(args, "training")
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and process.poll() is None:
        if _inode(history) not in (None, old_file) and any(s > restored for s in _history_steps(history)):
            break
        time.sleep(0.02)
    time.sleep(rng.uniform(0.0, 0.6))
    process.send_signal(signal.SIGKILL)
    return finish(process)


def _inode(path):
    try:
        return os.stat(path).st_ino
    except FileNotFoundError:
        return None


def restored_step(out_dir):
    """The step a ``--resume`` of ``out_dir/m`` restarts from (0: no complete checkpoint)."""
    unit = checkpoint.latest(str(out_dir / "m_0.ckpt"))
    return 0 if unit is None else unit.step


def _history_steps(path):
    try:
        return list(pd.read_csv(path)["step"])
    except (FileNotFoundError, pd.errors.EmptyDataError, KeyError):
        return []


def check_outputs(out_dir):
    """Every visible MTZ reads back with gemmi and rs; the history CSV with pandas."""
    checked = []
    for path in sorted(out_dir.iterdir()):
        if path.name.endswith(".mtz") and not path.name.startswith("."):
            mtz = gemmi.read_mtz_file(str(path))
            ds = to_internal(rs.read_mtz(str(path)))
            assert mtz.nreflections == len(ds) > 0, path
            column = "Ipred" if "predictions" in path.name else "F"
            assert np.isfinite(ds[column].to_numpy()).all(), path
            checked.append(path.name)
    if (out_dir / "m_history.csv").exists():
        pd.read_csv(out_dir / "m_history.csv")
    return checked


def resumed_from(log):
    match = re.search(r"resuming .* at step (\d+)", log)
    return int(match.group(1)) if match else 0


@pytest.fixture(scope="module")
def reference(sim_files, tmp_path_factory):
    """The uninterrupted merge with the same flags and seed (in this process)."""
    out = tmp_path_factory.mktemp("reference")
    assert main(["mono", *map(str, FLAGS), "--no-predictions", KEYS, sim_files["stream"], str(out / "m")]) == 0
    return to_internal(rs.read_mtz(str(out / "m_0.mtz")))


def test_kill_at_every_phase_then_resume(sim_files, reference, tmp_path):
    rng = np.random.default_rng(int(time.time()))
    out_dir = tmp_path / "out"
    args = [*FLAGS, "--cache-dir", tmp_path / "cache", KEYS, sim_files["stream"], out_dir / "m"]
    report = []

    def resume_args():
        """``--resume`` once a complete checkpoint exists (a run killed before its first one is started again)."""
        return ["--resume", *args] if restored_step(out_dir) > 0 else args

    for phase in ("convert", "checkpoint", "training", "merged", "predictions"):
        history = out_dir / "m_history.csv"
        if phase == "training":
            code, log = kill_during_training(resume_args(), out_dir, rng)
        else:
            code, log = finish(start(resume_args(), phase))
        assert code == -signal.SIGKILL, f"{phase}: the run was not killed ({code})\n{log[-2000:]}"
        start_step = resumed_from(log)
        reached = _history_steps(history)[-1] if history.exists() and _history_steps(history) else 0
        visible = check_outputs(out_dir)
        temporaries = [p.name for p in out_dir.iterdir() if p.name.startswith(".") and ".tmp" in p.name] \
            if out_dir.exists() else []
        report.append((phase, start_step, reached, visible))
        if phase == "training":
            assert INTERVAL < reached < ITERATIONS and reached > start_step
        if phase == "merged":
            assert "m_0.mtz" not in visible and any(t.startswith(".m_0.tmp") for t in temporaries)
        if phase == "predictions":
            assert "m_0.mtz" in visible and "m_predictions_0.mtz" not in visible
            assert any(t.startswith(".m_predictions_0.tmp") for t in temporaries)
        assert reached >= start_step
        steps = _history_steps(history)
        assert np.all(np.diff(steps) > 0), (phase, steps)  # no row written twice
    code, log = finish(start(resume_args(), "none"))
    assert code == 0, log[-3000:]
    restart = resumed_from(log)
    visible = check_outputs(out_dir)
    assert {"m_0.mtz", "m_predictions_0.mtz"} <= set(visible)
    assert not [p for p in out_dir.iterdir() if p.name.startswith(".") and ".tmp" in p.name]

    # each resume restarted at most one checkpoint interval behind the step the killed run had reached
    restarts = [s for _, s, _, _ in report[1:]] + [restart]
    for (phase, _, reached, _), restarted in zip(report, restarts):
        assert reached - restarted <= INTERVAL, (phase, reached, restarted)
    assert restarts[1] >= INTERVAL  # the checkpoint kill kept the first checkpoint
    print("kill-test:", [(p, r) for p, _, r, _ in report], "restarts:", restarts)

    merged = to_internal(rs.read_mtz(str(out_dir / "m_0.mtz")))
    common = merged.index.intersection(reference.index)
    assert len(common) == len(reference)
    cc = np.corrcoef(merged.loc[common, "F"], reference.loc[common, "F"])[0, 1]
    assert cc > 0.99
    # every evaluation step once, in order, whatever the kills
    assert _history_steps(out_dir / "m_history.csv") == list(range(5, ITERATIONS + 1, 5))
