"""``--embed``: a shell on the trained merge after its outputs are written."""

import io
import sys

import pytest
import reciprocalspaceship as rs

from careless_online.cli.main import main
from conftest import SIM_SPACEGROUP

KEYS = "dHKL,image_id"


def test_embed_opens_a_shell_holding_the_trained_model_and_the_written_files(sim_files, tmp_path, monkeypatch,
                                                                             capsys):
    out = tmp_path / "embedded"
    commands = ("print('reflections', model.n_reflections, len(manifest.index))\n"
                "import os; print('merged exists', os.path.exists(written['merged']))\n"
                "print('steps', int(trainer.optimizer.iterations.numpy()))\n")
    monkeypatch.setattr(sys, "stdin", io.StringIO(commands))
    assert main(["mono", "--disable-progress-bar", "--no-predictions", "--spacegroups", SIM_SPACEGROUP,
                 "--iterations", "3", "--embed", KEYS, sim_files["stream"], str(out)]) == 0
    captured = capsys.readouterr()
    merged = rs.read_mtz(f"{out}_0.mtz")
    line = next(x for x in captured.out.splitlines() if x.startswith("reflections "))
    in_model, in_index = map(int, line.split()[1:])
    assert in_model == in_index >= len(merged) > 0
    assert "merged exists True" in captured.out
    assert "steps 3" in captured.out
    assert "--embed" in captured.err  # the banner


def test_embed_is_refused_with_naive(sim_files, tmp_path, capsys):
    with pytest.raises(SystemExit) as stopped:
        main(["mono", "--naive", "--embed", "--spacegroups", SIM_SPACEGROUP, KEYS, sim_files["stream"],
              str(tmp_path / "x")])
    assert stopped.value.code == 2 and "--embed" in capsys.readouterr().err
    assert not list(tmp_path.iterdir())
