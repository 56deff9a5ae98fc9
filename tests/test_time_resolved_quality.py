"""The time-resolved quality claim of issue 10 on a tiny simulated dark/light pair.

One pair (:func:`careless_online.simulate.states.simulate_states`: 160 stills per
state to 4 Å, 200 atoms of which 8 move 1.5 Å at full occupancy; the true ΔF and
the implied double-Wilson ``r`` ≈ 0.988 kept) is merged four ways, all with the
same passes over each image (300 steps in all, 150 per separate run):

- ``naive``: ``--naive --separate-files`` (per-image scales, each state alone);
- ``separate``: one ``careless_online mono`` per stream;
- ``coupled``: one model over both (``--separate-files``) with the double-Wilson
  prior, dark the parent of light, ``--double-wilson-r=0.,0.99``;
- ``learned``: the same with ``r`` learned from 0.5 (``--optimize-double-wilson-r``).

Measured by hand (CC of ΔF to the true ΔF after the common scale of
``careless_online.difference``), seeds 1 / 2 / 3 (seed 1 with 200 stills, 400 steps)::

    naive 0.418 / 0.347 / 0.369   separate 0.563 / 0.470 / 0.536
    joint (no coupling) 0.630 / 0.548 / 0.571
    coupled 0.640 / 0.528 / 0.558   learned 0.642 / 0.552 / 0.585
    learned r (from 0.5) 0.768 / 0.708 / 0.713

The test runs seed 3.  The joint coupled model beats two separate merges by
+0.022 / +0.058 / +0.078 and naive by 0.19 / 0.18 / 0.22; with ``r`` learned, by
+0.050 / +0.082 / +0.079 over the separate merges.  Asserted: coupled > separate
+ 0.01, learned > separate + 0.03, both > naive + 0.1.  The coupling itself
(coupled vs. the joint model without it: +0.010 / -0.020 / -0.013) is **not** a
gain at this size (benchmarks/README.md shows the same at 300 stills), so it is
not asserted; most of the gain over separate merges is the shared scale model.
The learned ``r`` moves from 0.5 toward the implied 0.988 but stays well below
it (mean-field posteriors make the empirical-Bayes ``r`` low): asserted above
0.6 and below the implied value.

Cost: about 88 s of CPU (user) in all (the five trainings), i.e. roughly a
minute of wall time on an idle 2-core machine, over the 45 s aimed at.  Smaller
does not keep the claim: with 120 stills and 200 steps (seeds 2 and 3) the
coupled merge fell *below* the separate merges (0.398 vs 0.411, 0.420 vs 0.425)
and the learned ``r`` moved only to 0.57-0.59.
"""

import numpy as np
import pytest
import reciprocalspaceship as rs

from careless_online.cli.main import main
from careless_online.io.layout import to_internal
from careless_online.model.build import load_model
from careless_online.simulate.states import StateChange, implied_r, simulate_states, write_states
from careless_online.stats.difference import difference_table

SG = "P 43 21 2"
KEYS = "dHKL,image_id,XDET,YDET,ewald_offset"
STEPS = 300
R_START = 0.5


@pytest.fixture(scope="module")
def merges(tmp_path_factory):
    """CC of ΔF to the truth of each merge, the learned and the implied ``r``."""
    folder = tmp_path_factory.mktemp("time_resolved")
    states = simulate_states(n_images=160, seed=3, dmin=4.0, n_atoms=200,
                             change=StateChange(n_changed=8, shift=1.5, occupancy=1.0))
    paths = write_states(states, str(folder / "tr"))
    dark, light = paths["dark"]["stream"], paths["light"]["stream"]
    out = folder / "out"

    def mono(*args):
        assert main(["mono", "--disable-progress-bar", "--spacegroups", SG, "--no-predictions", "--test-fraction",
                     "0", "--validation-frequency", str(STEPS), "--cache-dir", str(folder / "cache"),
                     *map(str, args)]) in (0, None)

    def cc(state, reference):
        table, _ = difference_table(to_internal(rs.read_mtz(str(out / state))), to_internal(rs.read_mtz(str(out / reference))))
        truth = states.difference["DF"].reindex(table.index).to_numpy(float)
        known = np.isfinite(truth)
        return float(np.corrcoef(table["DF"].to_numpy(float)[known], truth[known])[0, 1])

    coupled = ["--iterations", STEPS, "--separate-files", "--double-wilson-parents=None,0"]
    mono("--naive", "--separate-files", KEYS, dark, light, out / "naive")
    mono("--iterations", STEPS // 2, KEYS, dark, out / "dark")
    mono("--iterations", STEPS // 2, KEYS, light, out / "light")
    mono(*coupled, "--double-wilson-r=0.,0.99", KEYS, dark, light, out / "coupled")
    mono(*coupled, f"--double-wilson-r=0.,{R_START}", "--optimize-double-wilson-r", KEYS, dark, light,
         out / "learned")
    return {
        "naive": cc("naive_1.mtz", "naive_0.mtz"), "separate": cc("light_0.mtz", "dark_0.mtz"),
        "coupled": cc("coupled_1.mtz", "coupled_0.mtz"), "learned": cc("learned_1.mtz", "learned_0.mtz"),
        "r": float(load_model(str(out / "learned_0.keras")).coupling.r().numpy()[1]),
        "implied_r": implied_r(states.difference),
    }


def test_joint_coupled_merge_recovers_delta_f_better_than_separate_merges_and_naive(merges):
    assert merges["coupled"] > merges["separate"] + 0.01, merges
    assert merges["learned"] > merges["separate"] + 0.03, merges
    assert min(merges["coupled"], merges["learned"]) > merges["naive"] + 0.1, merges


def test_learned_r_moves_from_its_start_toward_the_implied_r(merges):
    assert merges["implied_r"] > 0.95, merges
    assert R_START + 0.1 < merges["r"] < merges["implied_r"], merges
