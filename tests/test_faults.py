"""Faults contained (docs/reliability.md): outliers, resumes with other flags, signals, changed live streams."""

import os
import re
import signal
import subprocess
import sys
import time

import numpy as np
import pandas as pd
import pytest

from careless_online.cli.main import main
from careless_online.io import readers
from careless_online.io.live import LiveCache
from careless_online.io.outliers import REASON, distances, implausible
from careless_online.io.table import TableOptions, build_index, make_observations
from careless_online.simulate import simulate_to_files
from careless_online.training import checkpoint
from careless_online.training.loop import Trainer

SG = "P 43 21 2"
#: A small, fast merge of the shared simulation.
COMMON = ["--spacegroups", SG, "--mlp-width", 8, "--mlp-layers", 1, "--image-layers", 1, "--validation-images", 8,
          "--no-predictions", "--disable-progress-bar"]


def _mono(*args):
    return main(["mono", *map(str, args)])


def _refused(capsys, *args):
    """Run a command that must be refused: its one stderr line."""
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_info:
        _mono(*args)
    err = capsys.readouterr().err.strip().splitlines()
    assert exit_info.value.code == 2 and len(err) == 1, err
    return err[0]


# ---- outliers ---------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("value", [4294967295.0, 1e6, 1e14])
def test_an_impossible_intensity_is_dropped_and_counted_and_nothing_else(sim_files, value):
    raw = readers.read_stream(sim_files["stream"])
    clean = raw.data.copy()
    data = raw.data
    row = int(np.flatnonzero(data["image"].to_numpy() == 3)[5])
    data.iloc[row, data.columns.get_loc("I")] = np.float32(value)  # its sigma stays an ordinary one
    options = TableOptions(spacegroup=SG)
    index = build_index(raw, options)
    table, report = make_observations(raw, index, 0, 0, options)
    raw.data = clean
    reference, _ = make_observations(raw, index, 0, 0, options)
    assert report.dropped[REASON] == 1 and REASON in report.summary()
    assert len(table) == len(reference) - 1
    assert table["I"].max() < 1e5


def test_no_real_or_shipped_file_loses_an_observation_to_the_outlier_rule(data_dir):
    """The rule's margin: every observation of the real files lies far inside it."""
    files = [data_dir / name for name in ("hewl_rotation_unmerged.mtz", "hewl_unmerged_1000.mtz",
                                          "lysozyme_pal.stream", "pyp_laue_off_small.mtz", "stills.refl")]
    for path in files:
        data = readers.read_file(str(path)).data
        usable = np.isfinite(data["I"]) & (data["SigI"] > 0)
        data = data[usable]
        snr, scale = distances(data["I"].to_numpy(), data["SigI"].to_numpy(), data["image"].to_numpy())
        assert not implausible(data["I"].to_numpy(), data["SigI"].to_numpy(), data["image"].to_numpy()).any()
        assert snr.max() < 100 and scale.max() < 1000, path  # margins of 10 under the bounds at least


def test_a_diverging_fit_names_the_outlier_not_the_learning_rate():
    from careless_online.training.loop import _likely_cause

    batch = {"I": np.array([10.0, 20.0, 4294967295.0, 5.0]), "SigI": np.array([3.0, 4.0, 10.0, 3.0]),
             "image_id": np.array([0, 0, 7, 1])}
    cause = _likely_cause(batch)
    assert "outlier: I = 4.295e+09, SigI = 10 in image 7" in cause and "learning-rate" not in cause
    batch["I"][2] = 30.0
    assert "learning-rate" in _likely_cause(batch)


# ---- --resume with other flags, --model-in, no checkpoint yet, an unfinished run ------------------------------

def test_resume_refuses_model_shape_flags_and_says_schedule_changes(sim_files, tmp_path, capsys):
    out = tmp_path / "o"
    run = [*COMMON, "--validation-frequency", 2, "--checkpoint-interval", 2]
    assert _mono(*run, "--iterations", 2, "dHKL", sim_files["stream"], out) == 0
    for flag in (["--anomalous"], ["--mlp-width", 16], ["--dmin", 4.0]):
        line = _refused(capsys, *run, "--resume", "--iterations", 4, *flag, "dHKL", sim_files["stream"], out)
        assert "--resume" in line and flag[0] in line and "o_0.ckpt" in line
    line = _refused(capsys, *run, "--resume", "--iterations", 4, "dHKL,XDET", sim_files["stream"], out)
    assert "metadata keys dHKL -> dHKL,XDET" in line
    assert _mono(*run, "--resume", "--iterations", 4, "--batch-size", 4, "--learning-rate", 0.005, "dHKL",
                 sim_files["stream"], out) == 0
    said = [line for line in capsys.readouterr().out.splitlines() if "changed since the checkpoint" in line]
    assert len(said) == 1
    assert all(part in said[0] for part in ("--iterations 2 -> 4", "--learning-rate 0.01 -> 0.005",
                                            "--batch-size 8 -> 4"))
    assert checkpoint.latest(str(tmp_path / "o_0.ckpt")).step == 4
    # --model-in: the model's shape wins, and the command is told which of its flags do not apply
    assert _mono(*run, "--model-in", tmp_path / "o_0.keras", "--mlp-width", 16, "--anomalous", "--iterations", 2,
                 "dHKL", sim_files["stream"], tmp_path / "m") == 0
    said = [line for line in capsys.readouterr().out.splitlines() if line.startswith("--model-in")]
    assert len(said) == 1 and "--mlp-width 8 (command: 16)" in said[0] and "--anomalous off (command: on)" in said[0]


def test_resume_without_a_checkpoint_starts_from_step_0_unless_something_contradicts_it(sim_files, tmp_path, capsys):
    out = tmp_path / "o"
    run = [*COMMON, "--validation-frequency", 2, "--checkpoint-interval", 2, "--iterations", 2, "dHKL",
           sim_files["stream"]]
    assert _mono("--resume", *run, out) == 0
    said = [line for line in capsys.readouterr().out.splitlines() if line.startswith("--resume")]
    assert len(said) == 1 and "no checkpoint yet" in said[0] and "starting from step 0" in said[0]
    assert checkpoint.latest(str(tmp_path / "o_0.ckpt")).step == 2
    # a damaged unit, or a model without a checkpoint, contradicts a fresh start
    unit = checkpoint.latest(str(tmp_path / "o_0.ckpt")).path
    os.remove(os.path.join(unit, checkpoint.STATE_FILE))
    line = _refused(capsys, "--resume", *run, out)
    assert "no complete checkpoint" in line and "o_0.keras is intact" in line and "--model-in" in line
    os.rename(unit, str(tmp_path / "elsewhere"))
    line = _refused(capsys, "--resume", *run, out)
    assert "no checkpoint to resume from" in line and "o_0.keras" in line


def _interrupted_after_save(monkeypatch, at_step):
    """Make the run stop (as by Ctrl-C) right after the checkpoint of ``at_step``; returns the restore function."""
    save = Trainer.save

    def save_then_interrupt(self, step):
        save(self, step)
        if step == at_step:
            raise KeyboardInterrupt

    monkeypatch.setattr(Trainer, "save", save_then_interrupt)
    return lambda: monkeypatch.setattr(Trainer, "save", save)


def test_an_unfinished_run_is_not_started_over_and_its_resumed_history_averages_since_the_last_evaluation(
        sim_files, tmp_path, capsys, monkeypatch):
    """Evaluations every 4 steps, checkpoints every 2: the resume at step 6 restores two steps' sums."""
    run = [*COMMON, "--validation-frequency", 4, "--checkpoint-interval", 2, "--iterations", 12, "--lr-decay", 0,
           "dHKL", sim_files["stream"]]
    restore = _interrupted_after_save(monkeypatch, 6)
    with pytest.raises(SystemExit) as stopped:
        _mono(*run, tmp_path / "a")
    assert stopped.value.code == 130
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "step_00000006 (step 6)" in err[0] and "--resume" in err[0]
    restore()
    line = _refused(capsys, *run, tmp_path / "a")
    assert "unfinished run" in line and "step 6 of 12" in line and "--resume" in line
    assert _mono(*run, "--resume", tmp_path / "a") == 0
    assert _mono(*run, tmp_path / "b") == 0
    resumed, straight = pd.read_csv(tmp_path / "a_history.csv"), pd.read_csv(tmp_path / "b_history.csv")
    assert list(resumed["step"]) == list(straight["step"]) == [4, 8, 12]
    np.testing.assert_allclose(resumed["loss"], straight["loss"], rtol=1e-3)
    np.testing.assert_allclose(resumed["grad_norm"], straight["grad_norm"], rtol=1e-3)
    # a finished run may be started over
    assert _mono(*run, tmp_path / "b") == 0


# ---- signals ----------------------------------------------------------------------------------------------------

def test_a_signal_in_training_is_acted_on_at_the_next_check_or_after_the_grace_period():
    from careless_online.training.interrupt import GRACE_S, Interrupted, SignalStop

    with SignalStop() as stop, stop.deferred(lambda: "unused"):
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(0.05)
        assert stop.requested == signal.SIGINT  # noted, not raised
        with pytest.raises(Interrupted, match="stopped at step 3") as stopped:
            stop.check(lambda: "stopped at step 3")
        stop.disarm()
    assert stopped.value.exit_status == 130
    started = time.monotonic()
    with pytest.raises(Interrupted) as stopped:
        with SignalStop() as stop, stop.deferred(lambda: "unused"):
            os.kill(os.getpid(), signal.SIGTERM)
            try:
                while True:  # a step that never looks at the flag
                    time.sleep(0.01)
            finally:
                stop.disarm()
    assert stopped.value.exit_status == 143 and GRACE_S <= time.monotonic() - started < GRACE_S + 1.0
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # the handlers are restored


#: Run before ``main`` in the subprocess: with $FAULTS_SLOW_SAVE, replacing ``<out>_0.keras`` takes 30 s more.
HOOK = r"""
import os, sys, time
if os.environ.get("FAULTS_SLOW_SAVE"):
    import keras
    save = keras.Model.save
    def slow_save(self, path, *args, **kwargs):
        save(self, path, *args, **kwargs)
        if ".tmp" in str(path):
            time.sleep(30)
    keras.Model.save = slow_save
from careless_online.cli.main import main
sys.exit(main(sys.argv[1:]))
"""


def _wait_for(condition, process, timeout=600):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and process.poll() is None and not condition():
        time.sleep(0.05)
    assert process.poll() is None and condition(), process.communicate()[0]


@pytest.mark.parametrize("signum, slow_save", [(signal.SIGINT, False), (signal.SIGTERM, True)])
def test_a_signal_stops_the_run_within_2_s_leaving_no_temporary_file(sim_files, tmp_path, signum, slow_save):
    out = tmp_path / "o"
    args = [*COMMON, "--iterations", 100000, "--validation-frequency", 5, "--checkpoint-interval", 20, "dHKL",
            sim_files["stream"], out]
    env = dict(os.environ, OMP_NUM_THREADS="1", FAULTS_SLOW_SAVE="1" if slow_save else "")
    process = subprocess.Popen([sys.executable, "-c", HOOK, "mono", *map(str, args)], env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if slow_save:  # in the middle of replacing the output model o_0.keras
        _wait_for(lambda: any(".tmp" in name for name in os.listdir(tmp_path)), process)
    else:
        _wait_for(lambda: (tmp_path / "o_history.csv").exists()
                  and len(open(tmp_path / "o_history.csv").read().splitlines()) > 1, process)
    sent = time.monotonic()
    process.send_signal(signum)
    output, _ = process.communicate(timeout=60)
    took = time.monotonic() - sent
    assert process.returncode == 128 + signum, output
    assert took < 2.0, (took, output)
    message = output.strip().splitlines()[-1]
    assert re.search(r"interrupted at step \d+", message) and "--resume" in message
    stray = [name for _, _, names in os.walk(tmp_path) for name in names if ".tmp" in name]
    partial = [name for name in os.listdir(tmp_path / "o_0.ckpt") if name.endswith(".partial")] \
        if (tmp_path / "o_0.ckpt").exists() else []
    assert stray == [] and partial == []


# ---- live mode: a followed stream truncated or replaced ---------------------------------------------------------

def _chunks(path):
    text = open(path).read()
    first = text.index("----- Begin chunk -----")
    ends = [m.end() for m in re.finditer(r"----- End chunk -----\n", text)]
    return text[:first], [text[a:b] for a, b in zip([first] + ends[:-1], ends)]


def test_a_followed_stream_truncated_or_replaced_is_read_again_from_its_first_changed_chunk(tmp_path):
    header, first = _chunks(simulate_to_files(str(tmp_path / "a"), n_images=12, seed=2, formats=("stream",))["stream"])
    _, second = _chunks(simulate_to_files(str(tmp_path / "b"), n_images=12, seed=5, formats=("stream",))["stream"])
    followed = tmp_path / "grow.stream"
    followed.write_text(header + "".join(first[:8]))
    said = []
    cache = LiveCache([str(followed)], TableOptions(spacegroup=SG, dmin=3.0), str(tmp_path / "cache"),
                      log=said.append)
    assert cache.poll() == 8 and said == []
    with open(followed, "r+") as handle:  # truncated to 3 chunks, then 6 new ones written
        handle.truncate(len(header + "".join(first[:3])))
    assert cache.poll() == 0
    assert len(said) == 1 and "truncated" in said[0] and "first 3 chunks are unchanged" in said[0]
    with open(followed, "a") as handle:
        handle.write("".join(second[:6]))
    assert cache.poll() == 6 and len(said) == 1
    # replaced by another file: all of it is new, except chunks already read (not counted twice)
    replacement = tmp_path / "new.stream"
    replacement.write_text(header + "".join(second[:6]) + "".join(second[6:10]))
    os.replace(replacement, followed)
    assert cache.poll() == 4
    assert "replaced by another file" in said[1] and "first 0 chunks" in said[1]
    assert "6 chunks identical to chunks read before skipped" in said[2]
    assert cache.n_images == 18 and cache.manifest.n_images == 18
    with open(followed, "a") as handle:  # and it is followed on as it grows
        handle.write("".join(second[10:]))
    assert cache.poll() == 2 and len(said) == 3
