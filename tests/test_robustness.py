"""The robustness matrix (benchmarks/robustness.py) on a tiny version: two small crystals, oracle and naive."""

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

import robustness  # noqa: E402
from robustness_configs import CONFIGS, MatrixConfig  # noqa: E402
from robustness_figures import THRESHOLDS, verdict  # noqa: E402

#: Two tiny crystals that differ as the matrix's configurations do.
TINY = [
    MatrixConfig("tiny_se", "uniform atoms, 2 Se", "P 43 21 2", (40.0, 40.0, 30.0, 90.0, 90.0, 90.0), 3.0, "Se",
                 ("--n-atoms", "150", "--n-anomalous", "2", "--mosaicity", "0.4", "--mean-counts", "300")),
    MatrixConfig("tiny_zn_s", "molecule, bulk solvent, Lorentz, Zn + S, fractional sigma", "P 21 21 21",
                 (30.0, 36.0, 42.0, 90.0, 90.0, 90.0), 3.0, "Zn,S",
                 ("--wavelength", "1.27", "--n-atoms", "150", "--anomalous-atoms", "Zn:1,S:2",
                  "--molecule-radius", "8", "--bulk-solvent", "0.75", "--lorentz", "--mosaicity", "0.4",
                  "--sigma-fraction", "0.03", "--mean-counts", "300")),
]


@pytest.fixture(scope="module")
def matrix(tmp_path_factory):
    root = tmp_path_factory.mktemp("robust")
    args = robustness.build_parser().parse_args(
        ["--images", "40", "--tools", "naive,oracle", "--root", str(root), "--results-dir", str(root / "results"),
         "--jobs", "2"])
    rows, facts = robustness.run_matrix(TINY, args, log=lambda *a: None)
    tables = robustness.report(rows, facts, args, log=lambda *a: None)
    return rows, facts, tables, root


def test_every_configuration_has_a_row_per_tool_with_its_figures(matrix):
    rows, facts, tables, _ = matrix
    assert [(r["config"], r["tool"]) for r in rows] == [(c.name, t) for c in TINY for t in ("oracle", "naive")]
    for row in rows:
        assert "error" not in row, row.get("error")
        assert len(row["cc_F_shells"]) == len(row["rms_z_shells"]) == len(row["shell_ratio_after_b"]) == 10
        assert len(row["strongest_errors"]) == 20 and row["strongest_max_err"] >= 0
        assert set(row["peaks"]) == set(next(c for c in TINY if c.name == row["config"]).elements.split(","))
    assert [f["observations"] > 0 for f in facts] == [True, True]
    assert all(c.name in tables["matrix"] for c in TINY) and "verdict" in tables["matrix"]


def test_the_oracle_beats_naive_and_is_its_reference(matrix):
    rows = {(r["config"], r["tool"]): r for r in matrix[0]}
    for config in TINY:
        oracle, naive = rows[config.name, "oracle"], rows[config.name, "naive"]
        assert oracle["cc_F"] > naive["cc_F"] and oracle["cc_anom"] > naive["cc_anom"]
        assert oracle["verdict"] == "ceiling" and naive["verdict"].startswith(("PASS", "FAIL"))
        assert oracle["cc_anom_pct_oracle"] == pytest.approx(100.0)
        assert oracle["strongest_reference"] == "truth" and naive["strongest_reference"] == "oracle"
        assert naive["cc_F_minus_naive"] == 0 and naive["cc_F_shell_margin"] == 0
        # the oracle's amplitudes are honest and follow the truth's fall-off better than naive's
        assert oracle["rms_z"] < naive["rms_z"]
        assert oracle["ratio_flat_after_b_pct"] < naive["ratio_flat_after_b_pct"]


def test_results_json_holds_the_rows(matrix):
    root = matrix[3]
    written = json.loads(next((root / "results").glob("robustness_*.json")).read_text())
    assert len(written["rows"]) == 4 and written["thresholds"] == THRESHOLDS


def test_verdict_names_each_failed_criterion():
    good = {"cc_anom_pct_oracle": 95.0, "peak_pct_min": 93.0, "cc_F_minus_naive": 0.01, "cc_F_shell_margin": 0.0,
            "strongest_max_err": 0.02, "ratio_flat_after_b_pct": 2.0, "rms_z_max": 1.5}
    assert verdict(good) == []
    bad = dict(good, cc_anom_pct_oracle=76.0, cc_F_shell_margin=-0.03, rms_z_max=10.5)
    assert verdict(bad) == ["CCanom<90%", "CC(F)<naive", "rms z>2"]


def test_matrix_spans_the_issue_and_mimics_the_held_out_data():
    assert len(CONFIGS) >= 10
    edges = [e for c in CONFIGS.values() for e in c.cell[:3]]
    assert min(edges) <= 32 and max(edges) >= 150
    options = " ".join(" ".join(c.simulator_options()) for c in CONFIGS.values())
    for flag in ("--bulk-solvent", "--molecule-radius", "--lorentz", "--mosaicity-spread", "--sigma-fraction",
                 "--model-error", "--detector-distance", "--scale-spread", "--image-b-sd", "--background"):
        assert flag in options
    held_out = " ".join(CONFIGS["thermolysin"].simulator_options())
    for part in ("--cell 93.0 93.0 131.0", "--spacegroup P 61 22", "--dmin 2.0", "--wavelength 1.27",
                 "Zn:1,Ca:4,S:8", "--bulk-solvent", "--lorentz", "--sigma-fraction 0.03"):
        assert part in held_out


def test_unknown_configuration_or_tool_is_one_line_error(capsys):
    for argv in (["--configs", "nonesuch"], ["--tools", "oracle,nonesuch"]):
        with pytest.raises(SystemExit) as exit_info:
            robustness.main(argv + ["--list"])
        assert "nonesuch" in str(exit_info.value.code)
