"""Tests of the dark/light simulator, the difference statistics and ``careless_online.difference``."""

import gemmi
import numpy as np
import pandas as pd
import pytest
import reciprocalspaceship as rs

from careless_online.cli.difference import main
from careless_online.errors import InputError
from careless_online.simulate import structure
from careless_online.simulate.states import StateChange, simulate_states, write_states
from careless_online.stats.difference import difference_table, q_weights, relative_scale, common_reflections

NOISE = 0.01  # SIGF as a fraction of the rms amplitude


@pytest.fixture(scope="module")
def states():
    return simulate_states(n_images=2, seed=5, dmin=3.0, n_atoms=200,
                           change=StateChange(n_changed=2, shift=1.5, occupancy=0.8))


def merged(F, index, cell, spacegroup, seed, noise=NOISE, names=("F", "SIGF")):
    """A merged dataset of noisy amplitudes ``F`` (noise ``noise`` x rms F)."""
    F = np.asarray(F, dtype=float)
    sigma = np.full(len(F), noise * np.sqrt(np.mean(F**2)))
    observed = np.abs(F + np.random.default_rng(seed).normal(size=len(F)) * sigma)
    ds = rs.DataSet({names[0]: observed, names[1]: sigma}, index=index, cell=cell, spacegroup=spacegroup,
                    merged=True)
    return ds.astype({names[0]: "F", names[1]: "Q"})


@pytest.fixture(scope="module")
def files(states, tmp_path_factory):
    """Light (on another scale, k = 2, B = 10) and dark merged files, the dark model and truth."""
    folder = tmp_path_factory.mktemp("difference")
    truth = states.difference
    s2 = 1.0 / np.square(truth.compute_dHKL()["dHKL"].to_numpy())
    light = truth["F_LIGHT"].to_numpy() * 2.0 * np.exp(-10.0 * s2 / 4.0)
    paths = {"light": str(folder / "light.mtz"), "dark": str(folder / "dark.mtz"),
             "model": str(folder / "dark.pdb"), "phases": str(folder / "phases.mtz")}
    merged(light, truth.index, truth.cell, truth.spacegroup, 1).write_mtz(paths["light"])
    merged(truth["F_DARK"], truth.index, truth.cell, truth.spacegroup, 2).write_mtz(paths["dark"])
    structure.write_model(states.dark.model, paths["model"])
    phased = truth[["PHI_DARK"]].rename(columns={"PHI_DARK": "PHI"})
    rs.DataSet(phased, cell=truth.cell, spacegroup=truth.spacegroup, merged=True).write_mtz(paths["phases"])
    paths["folder"] = folder
    return paths


def changed_positions(states):
    """Cartesian old and new positions of the changed atoms."""
    cell, frac = states.dark.cell, states.dark.model.frac
    old = [cell.orthogonalize(gemmi.Fractional(*frac[i])) for i in states.changed]
    new = [cell.orthogonalize(gemmi.Fractional(*f)) for f in states.moved]
    return old, new


def nearest(states, position, references):
    """Distance (Å) from ``position`` to the closest symmetry or lattice copy of a reference."""
    cell = states.dark.cell
    frac = np.array([list(cell.fractionalize(r)) for r in references])
    copies = structure.expand_to_cell(frac, states.dark.spacegroup)
    delta = copies - np.array(list(cell.fractionalize(position)))
    delta -= np.round(delta)
    orth = np.array(cell.orth.mat.tolist())
    return float(np.min(np.linalg.norm(delta @ orth.T, axis=1)))

# ----------------------------------------------------------------------------- simulator
def test_states_keep_the_true_difference_of_the_two_truths(states):
    truth = states.difference
    np.testing.assert_allclose(truth["DF"], states.light.truth["F"].reindex(truth.index) - states.dark.truth["F"])
    relative = np.sqrt(np.mean(truth["DF"] ** 2) / np.mean(truth["F_DARK"] ** 2))
    assert 0.005 < relative < 0.3
    assert len(states.changed) == 2 and len(states.light.observations) > 0


def test_states_move_the_changed_atoms_by_the_shift(states):
    old, new = changed_positions(states)
    distances = [states.dark.cell.find_nearest_image(a, b, gemmi.Asu.Same).dist() for a, b in zip(old, new)]
    np.testing.assert_allclose(distances, 1.5, atol=1e-6)


def test_write_states_writes_both_streams_and_the_truth(states, tmp_path):
    paths = write_states(states, str(tmp_path / "tr"))
    assert paths["dark"]["stream"].endswith("tr_dark.stream") and paths["light"]["stream"].endswith("tr_light.stream")
    table = pd.read_csv(paths["difference"])
    assert len(table) == len(states.difference)
    assert len(pd.read_csv(paths["changed"])) == 2


@pytest.mark.parametrize("change, match", [(StateChange(n_changed=0), "changed atoms"),
                                           (StateChange(shift=0.0), "shift"),
                                           (StateChange(occupancy=1.5), "occupancy")])
def test_states_refuse_a_bad_change(change, match):
    with pytest.raises(InputError, match=match):
        simulate_states(n_images=1, seed=1, dmin=4.0, n_atoms=20, change=change)


# ----------------------------------------------------------------------------- statistics
def test_relative_scale_recovers_k_and_b(states):
    truth = states.difference
    s2 = 1.0 / np.square(truth.compute_dHKL()["dHKL"].to_numpy())
    ref = merged(truth["F_DARK"], truth.index, truth.cell, truth.spacegroup, 3, noise=1e-6)
    state = merged(truth["F_DARK"].to_numpy() * 3.0 * np.exp(-12.0 * s2 / 4.0), truth.index, truth.cell,
                   truth.spacegroup, 4, noise=1e-6)
    k, b = relative_scale(common_reflections(state, ref))
    assert k == pytest.approx(1 / 3.0, rel=5e-3)  # shells of finite width: not exact
    assert b == pytest.approx(-12.0, abs=0.3)


def test_q_weights_down_weight_noisy_and_large_differences():
    df = np.array([1.0, 1.0, 1.0, 8.0])
    sigdf = np.array([0.5, 0.5, 3.0, 0.5])
    w = q_weights(df, sigdf, alpha=0.5)
    assert w.mean() == pytest.approx(1.0)
    assert w[2] < w[0] and w[3] < w[0]
    assert q_weights(df, sigdf, alpha=0.0)[3] == pytest.approx(q_weights(df, sigdf, alpha=0.0)[0])


def test_differences_on_a_common_scale_follow_the_truth(states):
    truth = states.difference
    s2 = 1.0 / np.square(truth.compute_dHKL()["dHKL"].to_numpy())
    light = merged(truth["F_LIGHT"].to_numpy() * 2.0 * np.exp(-10.0 * s2 / 4.0), truth.index, truth.cell,
                   truth.spacegroup, 1)
    dark = merged(truth["F_DARK"], truth.index, truth.cell, truth.spacegroup, 2)
    table, _ = difference_table(light, dark)
    cc = np.corrcoef(table["DF"], truth["DF"].reindex(table.index))[0, 1]
    unscaled = np.corrcoef(light["F"] - dark["F"], truth["DF"])[0, 1]
    assert cc > 0.8 and cc > unscaled + 0.3


# ----------------------------------------------------------------------------- command
def run(argv, capsys):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_command_writes_an_mtz_that_rs_and_gemmi_read(files, capsys, states):
    out = files["folder"] / "diff.mtz"
    code, _, err = run([files["light"], files["dark"], out], capsys)
    k = float(err.split("k = ")[1].split(",")[0])
    assert code == 0 and k == pytest.approx(0.5, rel=0.02)
    ds = rs.read_mtz(str(out))
    assert {"DF", "SIGDF", "W", "WDF", "F_REF", "F_STATE"} <= set(ds.columns)
    assert np.all(ds["SIGDF"] > 0)
    mtz = gemmi.read_mtz_file(str(out))
    assert mtz.column_with_label("WDF").type == "F" and mtz.column_with_label("SIGDF").type == "Q"
    cc = np.corrcoef(ds["DF"], states.difference["DF"].reindex(ds.index))[0, 1]
    assert cc > 0.8


def test_alpha_changes_the_weights(files, capsys):
    cc = []
    for alpha in (0.0, 1.0):
        out = files["folder"] / f"alpha_{alpha}.mtz"
        run([files["light"], files["dark"], out, "--alpha", alpha], capsys)
        ds = rs.read_mtz(str(out))
        cc.append(np.corrcoef(ds["W"], ds["DF"] ** 2)[0, 1])
    # the outlier term down-weights large differences
    assert cc[1] < cc[0] - 0.2


def test_scale_bins_one_fits_no_b(files, capsys):
    _, _, err = run([files["light"], files["dark"], files["folder"] / "bins.mtz", "--scale-bins", 1], capsys)
    assert "B = 0 A^2" in err


def test_other_column_names(files, capsys, states):
    truth = states.difference
    renamed = files["folder"] / "renamed_dark.mtz"
    merged(truth["F_DARK"], truth.index, truth.cell, truth.spacegroup, 2,
           names=("FP", "SIGFP")).write_mtz(str(renamed))
    renamed_light = files["folder"] / "renamed_light.mtz"
    merged(truth["F_LIGHT"], truth.index, truth.cell, truth.spacegroup, 1,
           names=("FP", "SIGFP")).write_mtz(str(renamed_light))
    code, _, _ = run([renamed_light, renamed, files["folder"] / "renamed.mtz", "--column", "FP",
                      "--sigma-column", "SIGFP"], capsys)
    assert code == 0
    with pytest.raises(SystemExit) as exit_info:
        run([renamed_light, renamed, files["folder"] / "x.mtz"], capsys)
    assert exit_info.value.code == 2


def test_map_peaks_sit_at_the_changed_atoms(files, capsys, states):
    out = files["folder"] / "mapped.mtz"
    csv = files["folder"] / "peaks.csv"
    code, printed, err = run([files["light"], files["dark"], out, "--phases", files["model"], "-n", 3,
                              "-o", csv], capsys)
    assert code == 0
    grid = gemmi.read_ccp4_map(str(files["folder"] / "mapped.ccp4")).grid
    assert grid.unit_cell.a == pytest.approx(states.dark.cell.a)
    peaks = pd.read_csv(csv)
    assert list(peaks["peak"]) == [f"{sign} {i}" for sign in ("positive", "negative") for i in (1, 2, 3)]
    old, new = changed_positions(states)
    # the deepest two negative peaks are at the old places, the highest two positive at the new ones
    negative = peaks[peaks["height_sigma"] < 0].head(2)
    positive = peaks[peaks["height_sigma"] > 0].head(2)
    for _, row in negative.iterrows():
        assert nearest(states, gemmi.Position(row.x, row.y, row.z), old) < 1.0
    for _, row in positive.iterrows():
        assert nearest(states, gemmi.Position(row.x, row.y, row.z), new) < 1.0
    assert negative["height_sigma"].max() < -5 and positive["height_sigma"].min() > 5
    assert printed.startswith("peak,height_sigma")


def test_map_coefficients_and_sample_rate_change_the_map(files, capsys):
    grids = {}
    for name, extra in (("wdf", []), ("df", ["--map-coefficients", "DF"]), ("fine", ["--sample-rate", 5])):
        path = files["folder"] / f"{name}.ccp4"
        run([files["light"], files["dark"], files["folder"] / f"{name}.mtz", "--phases", files["model"],
             "--map", path, *extra], capsys)
        grids[name] = np.array(gemmi.read_ccp4_map(str(path)).grid, copy=True)
    assert grids["fine"].size > grids["wdf"].size
    assert grids["df"].shape == grids["wdf"].shape and not np.allclose(grids["df"], grids["wdf"])


def test_phases_from_an_mtz_need_a_model_for_peaks(files, capsys):
    out = files["folder"] / "mtzphases.mtz"
    code, printed, err = run([files["light"], files["dark"], out, "--phases", files["phases"]], capsys)
    assert code == 0 and printed == "" and "no --model" in err
    assert gemmi.read_ccp4_map(str(files["folder"] / "mtzphases.ccp4")).grid.nu > 0
    _, printed, _ = run([files["light"], files["dark"], out, "--phases", files["phases"], "--phase-column", "PHI",
                         "--model", files["model"], "-n", 1], capsys)
    assert printed.count("\n") == 3  # header, one positive and one negative peak


def test_halves_report_the_cc_of_the_differences(files, capsys, states):
    truth = states.difference
    paths = []
    for name, F, seed in (("light", truth["F_LIGHT"], 10), ("dark", truth["F_DARK"], 20)):
        halves = [merged(F, truth.index, truth.cell, truth.spacegroup, seed + h, noise=0.02) for h in (0, 1)]
        for h, ds in enumerate(halves):
            ds["repeat"], ds["half"] = 0, h
        path = files["folder"] / f"{name}_xval.mtz"
        rs.concat(halves).astype({"repeat": "I", "half": "I"}).write_mtz(str(path))
        paths.append(path)
    _, _, err = run([files["light"], files["dark"], files["folder"] / "h.mtz", "--halves", *paths], capsys)
    cc = float(err.split("CC1/2 of DF = ")[1].split()[0])
    assert 0.3 < cc < 1.0


def test_bad_inputs_are_one_line_errors(files, capsys, tmp_path):
    bogus = tmp_path / "bogus.mtz"
    bogus.write_text("not an mtz")
    for argv in ([bogus, files["dark"], tmp_path / "x.mtz"],
                 [files["light"], files["dark"], tmp_path / "x.mtz", "--phases", bogus],
                 [files["light"], files["dark"], tmp_path / "x.mtz", "--alpha", -1]):
        with pytest.raises(SystemExit) as exit_info:
            run(argv, capsys)
        assert exit_info.value.code == 2
        err = capsys.readouterr().err
        assert err.count("\n") <= 2 and "Traceback" not in err
