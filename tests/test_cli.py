"""The command line: parsing, checks before TensorFlow, quiet TensorFlow, progress."""

import io
import json
import os
import re
import shutil
import subprocess
import sys
import textwrap
import zipfile

import pytest

from careless_online.cli import anomalous_peaks, cchalf, mono
from careless_online.cli.main import build_parser, main
from careless_online.cli.parser import Formatter
from careless_online.errors import InputError
from careless_online.progress import LineProgress, progress_display

from conftest import SIM_SPACEGROUP

#: Lines TensorFlow, absl and CUDA print on a CPU-only machine.
TF_NOISE = ("cuInit", "oneDNN", "remapper", "absl::InitializeLog", "cudart_stub", "cpu_feature_guard",
            "I0000 ", "W0000 ", "E0000 ")


def _mono(*argv):
    return build_parser().parse_args(["mono", *argv, "dHKL", "in.mtz", "out/x"])


def _stats_parsers():
    from careless_online.cli import ccanom, ccpred, completeness, image_ccpred, isigi, plot_history, rsplit

    modules = (anomalous_peaks, ccanom, cchalf, ccpred, completeness, image_ccpred, isigi, plot_history, rsplit)
    return [m.build_parser() for m in modules]


def _all_parsers():
    return [mono.build_parser(), build_parser(), *_stats_parsers()]


# ---------------------------------------------------------------- parsing


def test_unknown_flag_prints_subcommand_usage_and_suggestion(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["mono", "--anomolous", "dHKL", "in.mtz", "out/x"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("usage: careless_online mono ")
    assert "unrecognized arguments: --anomolous; did you mean --anomalous?" in err
    assert "Traceback" not in err


@pytest.mark.parametrize("argv", [["mono", "--iter", "5", "dHKL", "in.mtz", "out/x"],
                                  ["mono", "--anomal", "dHKL", "in.mtz", "out/x"]])
def test_abbreviated_mono_flag_is_refused(argv):
    with pytest.raises(InputError, match="unrecognized arguments: --(iter|anomal);"):
        build_parser().parse_args(argv)


def test_abbreviated_stats_flag_is_refused(capsys):
    with pytest.raises(InputError, match="did you mean --overall"):
        cchalf.build_parser().parse_args(["x.mtz", "--overal"])
    assert capsys.readouterr().err.startswith("usage: careless_online.cchalf")


def test_every_parser_refuses_abbreviations():
    assert all(parser.allow_abbrev is False for parser in _all_parsers())


def test_help_names_each_default_once():
    for parser in _all_parsers():
        formatter = Formatter(parser.prog)
        for action in parser._actions:
            if not action.help:
                continue
            action.help = formatter._get_help_string(action)
            text = formatter._expand_help(action)
            assert text.count("default") <= 1, (parser.prog, action.dest, text)
            assert "(default: None)" not in text and "(default: False)" not in text
        assert "(default: None)" not in parser.format_help()


def test_help_keeps_meaningful_defaults():
    text = mono.build_parser().format_help()
    assert "(default: 0.01)" in text  # --learning-rate
    assert "(default: the data's)" in text  # --dmin says what its default means


BAD_MONO_VALUES = [
    ("--learning-rate", "0"), ("--learning-rate", "-1e-3"), ("--learning-rate", "inf"),
    ("--studentt-likelihood-dof", "0"), ("--kl-weight", "-1"), ("--scale-kl-weight", "-0.5"),
    ("--live-timeout", "0"), ("--live-poll", "-2"), ("--mlp-layers", "-3"), ("--image-layers", "-1"),
    ("--mlp-layers", "1.5"), ("--beta-1", "1"), ("--beta-2", "-0.1"), ("--clipnorm", "0"),
    ("--clipvalue", "-1"), ("--global-clipnorm", "-1"), ("--dmin", "0"), ("--cell-tolerance", "0"),
    ("--isigi-cutoff", "nan"), ("--wilson-prior-knots", "1"), ("--wilson-prior-b", "inf"), ("--seed", "-1"),
    ("--iterations", "0"), ("--batch-size", "0"), ("--test-fraction", "1"), ("--lr-decay", "-0.1"),
]


@pytest.mark.parametrize("flag,value", BAD_MONO_VALUES)
def test_out_of_range_number_is_refused(flag, value):
    with pytest.raises(InputError, match=f"argument (-[a-z]/)?{flag}: "):
        _mono(f"{flag}={value}")


def test_bad_value_is_one_line_without_usage(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["mono", "--learning-rate", "0", "dHKL", "in.mtz", "out/x"])
    assert exit_info.value.code == 2
    assert capsys.readouterr().err.strip().splitlines() == [
        "main: error: argument --learning-rate: must be greater than 0: 0"]


@pytest.mark.parametrize("flag,value,dest,expected", [
    ("--mlp-layers", "0", "mlp_layers", 0), ("--kl-weight", "0", "kl_weight", 0.0),
    ("--global-clipnorm", "0", "global_clipnorm", 0.0), ("--beta-2", "0.5", "beta_2", 0.5),
    ("--learning-rate", "1e-4", "learning_rate", 1e-4),
])
def test_boundary_number_is_accepted(flag, value, dest, expected):
    assert getattr(_mono(flag, value), dest) == expected


@pytest.mark.parametrize("argv", [["--exclude", "-1"], ["--sample-rate", "0.5"], ["-n", "0"], ["--peaks", "x"]])
def test_anomalous_peaks_numbers_are_checked(argv):
    with pytest.raises(InputError, match="argument"):
        anomalous_peaks.build_parser().parse_args(["m.mtz", "model.pdb", *argv])


def test_stats_bins_must_be_positive():
    with pytest.raises(InputError, match="argument -b/--bins"):
        cchalf.build_parser().parse_args(["x.mtz", "-b", "0"])


# ---------------------------------------------------------- checks before TensorFlow

_CHECK_SCRIPT = textwrap.dedent("""
    import json, sys
    from careless_online.cli.main import main
    results = []
    for argv in json.loads(sys.argv[1]):
        try:
            code = main(argv)
        except SystemExit as stop:
            code = stop.code
        results.append(code)
    heavy = [m for m in ("tensorflow", "keras", "reciprocalspaceship") if m in sys.modules]
    print(json.dumps({"codes": results, "heavy": heavy}))
""")


def _user_error_cases(sim_files, tmp_path):
    stream, mtz = sim_files["stream"], sim_files["mtz"]
    (tmp_path / "empty.mtz").write_bytes(b"")
    (tmp_path / "folder.mtz").mkdir()
    (tmp_path / "notes.txt").write_text("x")
    out = str(tmp_path / "new" / "run" / "x")
    sg = ["--spacegroups", SIM_SPACEGROUP]
    shutil.copy(stream, tmp_path / "copy.stream")
    model = _fake_model(tmp_path / "model.keras", ["dHKL", "XDET"], SIM_SPACEGROUP)
    return {
        "no such file": ["mono", *sg, "dHKL", str(tmp_path / "exmple.stream"), out],
        "is a folder": ["mono", "dHKL", str(tmp_path / "folder.mtz"), out],
        "the file is empty": ["mono", "dHKL", str(tmp_path / "empty.mtz"), out],
        "unknown file format": ["mono", "dHKL", str(tmp_path / "notes.txt"), out],
        "unknown space group 'P 43 21 7'": ["mono", "--spacegroups", "P 43 21 7", "dHKL", stream, out],
        "do not give a space group": ["mono", "dHKL", stream, out],
        "2 space groups for 1 input files": ["mono", "--spacegroups", "P 1,P 43 21 2", "dHKL", mtz, out],
        "not a file": ["mono", *sg, stream, mtz, out],
        "given twice": ["mono", "dHKL,XDET,dHKL", mtz, out],
        "not a column name": ["mono", "dHKL, X DET", mtz, out],
        "--cell": ["mono", "--cell", "79,79,38,90,90", "dHKL", mtz, out],
        "is a folder; give a name": ["mono", "dHKL", mtz, str(tmp_path) + os.sep],
        "--live cannot be combined": ["mono", "--live", "--naive", "--dmin", "3", *sg, "dHKL", stream, out],
        "--live cannot be combined with": ["mono", "--live", "--resume", "--dmin", "3", *sg, "dHKL",
                                           str(tmp_path / "*.stream"), out],
        "unknown metadata key 'XDETT'": ["mono", "dHKL,XDETT", mtz, out],
        "unknown metadata key 'peek'": ["mono", *sg, "peak,peek", stream, out],
        "--naive cannot be combined with --resume": ["mono", "--naive", "--resume", *sg, "dHKL", stream, out],
        "--naive cannot be combined with --model-in": ["mono", "--naive", "--model-in", str(tmp_path / "notes.txt"),
                                                       *sg, "dHKL", stream, out],
        # the first hour's stumbles (issue 23): refused before any conversion
        "the last argument is the output prefix": ["mono", *sg, "dHKL", stream, mtz],
        "stream: given twice: its images would count twice": ["mono", *sg, "dHKL", stream, stream, out],
        "same contents as": ["mono", *sg, "dHKL", stream, str(tmp_path / "copy.stream"), out],
        "is incompatible with space group P 43 21 2": ["mono", *sg, "--cell", "79,70,38,90,90,90", "dHKL", mtz, out],
        "is incompatible with space group P 61 (check --spacegroups": ["mono", "--spacegroups", "P 61", "dHKL",
                                                                       mtz, out],
        "trained with metadata keys dHKL,XDET, not dHKL": ["mono", *sg, "--model-in", model, "dHKL", stream, out],
        "trained in space group P 43 21 2, not P 41 21 2": ["mono", "--spacegroups", "P 41 21 2", "--model-in",
                                                            model, "dHKL,XDET", stream, out],
        "followed only with --live": ["mono", *sg, "dHKL", str(tmp_path / "incoming") + os.sep, out],
    }


def _fake_model(path, keys, spacegroup):
    """A ``.keras`` archive holding only the ``config.json`` entries the up-front checks read."""
    config = {"standardizer_config": json.dumps({"keys": keys, "mean": [], "std": []}),
              "index_config": json.dumps({"spacegroup": spacegroup})}
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("config.json", json.dumps({"class_name": "MergingModel", "config": config}))
    return str(path)


def test_user_errors_end_before_tensorflow_or_readers_are_imported(sim_files, tmp_path):
    cases = _user_error_cases(sim_files, tmp_path)
    before = sorted(os.listdir(tmp_path))
    run = subprocess.run([sys.executable, "-c", _CHECK_SCRIPT, json.dumps(list(cases.values()))],
                         capture_output=True, text=True, timeout=120, cwd=tmp_path)
    report = json.loads(run.stdout.strip().splitlines()[-1])
    assert report["codes"] == [2] * len(cases)
    assert report["heavy"] == []  # so they end within a second
    errors = [line for line in run.stderr.splitlines() if ": error: " in line]
    assert len(errors) == len(cases)
    for message, line in zip(cases, errors):
        assert message in line, (message, line)
    assert not any(noise in run.stderr for noise in TF_NOISE)
    assert sorted(os.listdir(tmp_path)) == before  # no folder made (no .careless_online_cache either)


def test_failed_merge_leaves_no_new_folder(sim_files, tmp_path, capsys):
    out = tmp_path / "new" / "x"
    with pytest.raises(SystemExit) as exit_info:
        main(["mono", "--iterations", "2", "--disable-progress-bar", "--image-key", "NO_SUCH_COLUMN", "dHKL",
              sim_files["mtz"], str(out)])
    assert exit_info.value.code == 2
    assert "NO_SUCH_COLUMN" in capsys.readouterr().err  # found while converting, after TensorFlow started
    assert not (tmp_path / "new").exists()


def test_disable_progress_bar_reaches_the_training_config(sim_files):
    groups = [SIM_SPACEGROUP]
    on = build_parser().parse_args(["mono", "dHKL", sim_files["mtz"], "o/x"])
    off = build_parser().parse_args(["mono", "--disable-progress-bar", "dHKL", sim_files["mtz"], "o/x"])
    assert mono.settings_from_args(on, ["dHKL"], groups)[1].train.progress is True
    assert mono.settings_from_args(off, ["dHKL"], groups)[1].train.progress is False


# ---------------------------------------------------------- TensorFlow noise, progress


def _quiet_env():
    env = dict(os.environ)
    env.pop("TF_CPP_MIN_LOG_LEVEL", None)
    return env


def test_merge_prints_no_tensorflow_noise_and_progress_lines(sim_files, tmp_path):
    argv = ["careless_online", "mono", "--spacegroups", SIM_SPACEGROUP, "--iterations", "6", "--batch-size", "4",
            "--validation-frequency", "3", "--validation-images", "4", "--no-predictions", "dHKL,XDET,YDET",
            sim_files["stream"], str(tmp_path / "x")]
    run = subprocess.run(argv, capture_output=True, text=True, timeout=300, env=_quiet_env())
    assert run.returncode == 0, run.stderr
    noise = [line for line in run.stderr.splitlines() if any(n in line for n in TF_NOISE)]
    assert noise == []
    # stderr is a pipe here: complete progress lines, no carriage-return bar
    assert "\r" not in run.stderr
    assert any(line.startswith("step 6/6 (100%)") for line in run.stderr.splitlines())
    assert any(re.match(r"MB (\d+)/\1 \(100%\)", line) for line in run.stderr.splitlines())  # the conversion's


def test_tf_debug_brings_tensorflow_messages_back():
    quiet = subprocess.run(["careless_online", "devices"], capture_output=True, text=True, timeout=120,
                           env=_quiet_env())
    loud = subprocess.run(["careless_online", "devices", "--tf-debug"], capture_output=True, text=True,
                          timeout=120, env=_quiet_env())
    assert quiet.returncode == loud.returncode == 0
    assert "CPU" in quiet.stdout and quiet.stdout == loud.stdout
    assert quiet.stderr == ""
    assert any(n in loud.stderr for n in TF_NOISE)


def test_line_progress_prints_rate_and_eta_every_interval():
    now = [0.0]
    stream = io.StringIO()
    progress = LineProgress(100, stream=stream, interval=10.0, clock=lambda: now[0])
    for _ in range(50):
        now[0] += 0.5
        progress.update()
    progress.set_postfix(loss="12.5")
    progress.close()
    progress.close()
    lines = stream.getvalue().splitlines()
    assert lines == ["step 20/100 (20%), 2 step/s, elapsed 0:10, ETA 0:40",
                     "step 40/100 (40%), 2 step/s, elapsed 0:20, ETA 0:30",
                     "step 50/100 (50%), 2 step/s, elapsed 0:25, ETA 0:25, loss=12.5"]


def test_line_progress_rate_counts_only_new_steps_when_resuming():
    now = [0.0]
    stream = io.StringIO()
    progress = LineProgress(100, initial=90, stream=stream, interval=1e9, clock=lambda: now[0])
    now[0] = 5.0
    progress.update(10)
    progress.close()
    assert stream.getvalue() == "step 100/100 (100%), 2 step/s, elapsed 0:05\n"


def test_progress_display_is_a_bar_on_a_terminal_and_lines_elsewhere():
    class Terminal(io.StringIO):
        def isatty(self):
            return True

    from tqdm import tqdm

    bar = progress_display(10, stream=Terminal())
    assert isinstance(bar, tqdm)
    bar.close()
    assert isinstance(progress_display(10, stream=io.StringIO()), LineProgress)
