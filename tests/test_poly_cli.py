"""``careless_online poly`` on the real Laue file: end to end, its flags and its one-line errors.

One short merge (module fixture) serves every assertion about outputs and
saved models; the flags' effects are measured on the observation table they
build (no training).
"""

import json
import os
import shutil
import subprocess
import sys
import zipfile

import numpy as np
import pytest
import reciprocalspaceship as rs

from careless_online.cli import poly
from careless_online.cli.main import main
from careless_online.io.cache import build_cache
from careless_online.io.laue import LaueOptions
from careless_online.io.table import TableOptions

PYP = "pyp_laue_off_small.mtz"
#: A short merge: the assertions are about files and bookkeeping, not quality.
QUICK = ["--iterations", "3", "--batch-size", "2", "--disable-progress-bar", "--validation-frequency", "3",
         "--validation-images", "2", "--no-sigf-calibration"]


@pytest.fixture(scope="module")
def pyp(data_dir):
    return str(data_dir / PYP)


@pytest.fixture(scope="module")
def pyp_merge(pyp, tmp_path_factory):
    out = tmp_path_factory.mktemp("pyp") / "pyp"
    main(["poly", *QUICK, "dHKL,Wavelength", pyp, str(out)])
    return out


def _band_copy(pyp, folder, rename=None):
    """A copy of the PYP file, its wavelength column renamed to ``rename``."""
    ds = rs.read_mtz(pyp)
    if rename:
        ds = ds.rename(columns={"Wavelength": rename})
    path = str(folder / f"pyp_{rename or 'copy'}.mtz")
    ds.write_mtz(path)
    return path


def _error(capsys, argv):
    with pytest.raises(SystemExit) as stop:
        main(argv)
    assert stop.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    return err[0]


def test_pyp_merges_to_mtz_files(pyp_merge):
    merged = rs.read_mtz(f"{pyp_merge}_0.mtz")
    assert {"F", "SigF", "I", "SigI", "N"} <= set(merged.columns) and len(merged) > 50
    assert np.isfinite(merged["F"].to_numpy(float)).all() and (merged["F"].to_numpy(float) > 0).all()
    assert merged.spacegroup.xhm() == "P 63"
    assert os.path.exists(f"{pyp_merge}_history.csv") and os.path.exists(f"{pyp_merge}_0.keras")


def test_pyp_predictions_carry_the_harmonics(pyp_merge, pyp):
    predictions = rs.read_mtz(f"{pyp_merge}_predictions_0.mtz")
    assert {"spot", "harmonic", "Wavelength", "Ipred", "Iobs"} <= set(predictions.columns)
    spots = predictions.groupby(["image_id", "spot"])
    assert spots.ngroups == len(rs.read_mtz(pyp))  # every spot of the file, each once
    multiple = spots.filter(lambda s: len(s) > 1)
    assert len(multiple) >= 2  # the file has a harmonic spot (0,-10,0 and 0,-11,0 in image 0)
    for _, rows in multiple.groupby(["image_id", "spot"]):
        assert rows["Ipred"].nunique() == 1 and rows["Iobs"].nunique() == 1  # one spot, one sum
        wavelength_times_order = (rows["Wavelength"] * rows["harmonic"]).to_numpy(float)
        assert np.allclose(wavelength_times_order, wavelength_times_order[0], rtol=1e-5)  # lambda_1 = n lambda_n


def _harmonic_rows(argv, folder):
    """Rows (harmonics) of the observation table that ``poly`` builds from a command line."""
    args = poly.build_parser().parse_args(argv)
    options = TableOptions(**poly.laue_fields(args))
    return build_cache(args.inputs, options, str(folder)).n_obs


def test_wavelength_range_adds_harmonics(pyp, pyp_merge, tmp_path):
    # 166 spots, one with two harmonics in the file's own band (1.02-1.18 A): 167 rows, all in the merge
    assert int(rs.read_mtz(f"{pyp_merge}_0.mtz")["N"].sum()) == 167
    assert _harmonic_rows(["dHKL", pyp, "m"], tmp_path / "own") == 167
    # a band down to 0.5 A lets orders up to twice as high add up on the spots
    assert _harmonic_rows(["-l", "0.5", "1.2", "dHKL", pyp, "m"], tmp_path / "wide") >= 177


def test_wavelength_key_names_the_column(pyp, tmp_path, capsys):
    renamed = _band_copy(pyp, tmp_path, rename="LAMBDA")
    line = _error(capsys, ["poly", *QUICK, "dHKL", renamed, str(tmp_path / "a" / "m")])
    assert line.endswith(f"{renamed}: no wavelength column 'Wavelength' (columns: H, K, L, X, Y, LAMBDA, I, SigI, "
                         "BATCH, M/ISYM); name it with --wavelength-key")
    assert _harmonic_rows(["-w", "LAMBDA", "dHKL,LAMBDA", renamed, "m"], tmp_path / "b") == 167


def test_spots_outside_the_range_are_refused_or_dropped(pyp, tmp_path, capsys):
    line = _error(capsys, ["poly", *QUICK, "-l", "1.05", "1.15", "dHKL", pyp, str(tmp_path / "a" / "m")])
    assert f"{pyp}: " in line and "spots have a wavelength outside --wavelength-range 1.05 1.15 A" in line
    assert "Traceback" not in line
    options = TableOptions(drop_invalid=True, laue=LaueOptions("Wavelength", (1.05, 1.15)))
    manifest = build_cache([pyp], options, str(tmp_path / "cache"))
    assert 0 < manifest.n_obs < len(rs.read_mtz(pyp))  # --drop-invalid: the spots outside are left out


@pytest.mark.parametrize("band, message", [
    (["0", "1.2"], "argument -l/--wavelength-range: must be greater than 0: 0"),
    (["1.2", "1.0"], "--wavelength-range needs 0 < LO < HI in Angstrom (got 1.2 1)"),
])
def test_bad_range_is_one_line(pyp, tmp_path, capsys, band, message):
    line = _error(capsys, ["poly", "-l", *band, "dHKL", pyp, str(tmp_path / "m")])
    assert message in line


def test_streams_unsupported_flags_and_live_without_a_band_are_refused(pyp, tmp_path, capsys):
    stream = os.path.join(os.path.dirname(__file__), "..", "examples", "example.stream")
    line = _error(capsys, ["poly", "dHKL", stream, str(tmp_path / "m")])
    assert "poly reads unmerged MTZ files" in line and "example.stream" in line
    assert "poly does not support --reindexing-ops" in _error(
        capsys, ["poly", "--reindexing-ops", "auto", "dHKL", pyp, str(tmp_path / "m")])
    assert "needs -l/--wavelength-range" in _error(capsys, ["poly", "--live", "--dmin", "3", "dHKL", pyp,
                                                            str(tmp_path / "m")])


def test_bad_input_exits_2_without_traceback(pyp, tmp_path):
    done = subprocess.run([sys.executable, "-m", "careless_online.cli.main", "poly", "-w", "NOPE", "dHKL", pyp,
                           str(tmp_path / "m")], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PYTHONPATH": os.path.dirname(os.path.dirname(__file__))})
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert done.stderr.strip().splitlines()[-1].endswith(
        f"error: {pyp}: no wavelength column 'NOPE' (columns: H, K, L, X, Y, Wavelength, I, SigI, BATCH, M/ISYM); "
        "name it with --wavelength-key")


def _as_mono_model(keras_path, folder):
    """A copy of a saved poly model that says it is a mono model (its class name rewritten)."""
    copy = str(folder / "mono_0.keras")
    with zipfile.ZipFile(keras_path) as source, zipfile.ZipFile(copy, "w") as target:
        for item in source.infolist():
            data = source.read(item)
            if item.filename == "config.json":
                config = json.loads(data)
                config["class_name"] = "MergingModel"
                data = json.dumps(config).encode()
            target.writestr(item, data)
    return copy


def test_model_in_of_the_other_kind_is_one_line(pyp, pyp_merge, tmp_path, capsys):
    laue_model = f"{pyp_merge}_0.keras"
    line = _error(capsys, ["mono", "--model-in", laue_model, "dHKL,Wavelength", pyp, str(tmp_path / "a" / "m")])
    assert line.endswith(f"{laue_model}: --model-in: the model was trained by poly on Laue data and cannot merge "
                         "monochromatic data (run poly, or start a new model)")
    mono_model = _as_mono_model(laue_model, tmp_path)
    line = _error(capsys, ["poly", "--model-in", mono_model, "dHKL,Wavelength", pyp, str(tmp_path / "b" / "m")])
    assert line.endswith("--model-in: the model was trained by mono on monochromatic data and cannot merge "
                         "Laue data (run mono, or start a new model)")


def test_resume_of_the_other_kind_is_one_line(pyp, pyp_merge, tmp_path, capsys):
    out = tmp_path / "pyp"
    shutil.copytree(f"{pyp_merge}_0.ckpt", f"{out}_0.ckpt")
    line = _error(capsys, ["mono", "--resume", *QUICK, "dHKL,Wavelength", pyp, str(out)])
    assert "--resume: the model was trained by poly on Laue data and cannot merge monochromatic data" in line
    assert "step_00000003" in line
