"""Tests of the serial-crystallography simulator against its known truth."""

import gemmi
import numpy as np
import pandas as pd
import pytest
import reciprocalspaceship as rs

from careless_online.errors import InputError
from careless_online.simulate import SimulationConfig, make_crystal, simulate, simulate_to_files, write
from careless_online.simulate.cli import main
from careless_online.simulate.structure import read_model, structure_factors

SMALL = dict(cell=(40.0, 40.0, 30.0, 90.0, 90.0, 90.0), spacegroup="P 43 21 2", dmin=2.5,
             n_atoms=150, n_anomalous=3)
HEXAGONAL = dict(cell=(40.0, 40.0, 50.0, 90.0, 90.0, 120.0), spacegroup="P 63", dmin=2.5,
                 n_atoms=150, n_anomalous=3)


@pytest.fixture(scope="module")
def small_sim():
    return simulate(20, seed=3, **SMALL)


def _tiny_pdb(path, spacegroup="P 1 21 1", cell=(30.0, 35.0, 40.0, 90.0, 105.0, 90.0)):
    """A few atoms (with two sulfurs) written as a PDB file with gemmi."""
    st = gemmi.Structure()
    st.cell = gemmi.UnitCell(*cell)
    st.spacegroup_hm = spacegroup
    model = gemmi.Model("1")
    chain = gemmi.Chain("A")
    rng = np.random.default_rng(7)
    for i, name in enumerate(["C", "N", "O", "C", "S", "C", "O", "S", "N", "C", "C", "O"]):
        res = gemmi.Residue()
        res.name, res.seqid = "UNK", gemmi.SeqId(i + 1, " ")
        atom = gemmi.Atom()
        atom.name, atom.element = name, gemmi.Element(name)
        atom.pos = gemmi.Position(*(rng.uniform(0, 1, 3) * cell[:3]))
        atom.b_iso, atom.occ = 15.0, 1.0
        res.add_atom(atom)
        chain.add_residue(res)
    model.add_chain(chain)
    st.add_model(model)
    st.setup_entities()
    st.write_pdb(str(path))
    return str(path)


@pytest.mark.parametrize("params", [SMALL, HEXAGONAL], ids=["P43212", "P63"])
def test_stream_reads_back_with_reciprocalspaceship(tmp_path, params):
    sim = simulate(15, seed=1, **params)
    paths = write(sim, tmp_path / "sim", formats=["stream"])
    ds = rs.read_crystfel(paths["stream"], spacegroup=sim.spacegroup, num_cpus=1)
    obs = sim.observations
    assert len(ds) == len(obs)
    np.testing.assert_array_equal(ds.get_hkls(), obs.get_hkls())
    np.testing.assert_allclose(ds["I"].to_numpy(float), obs["I"].to_numpy(float), atol=0.006)
    np.testing.assert_allclose(ds["SigI"].to_numpy(float), obs["SIGI"].to_numpy(float), atol=0.006)
    np.testing.assert_allclose(ds["XDET"].to_numpy(float), obs["XDET"].to_numpy(float), atol=0.06)
    np.testing.assert_array_equal(ds["BATCH"].to_numpy() + 1, obs["BATCH"].to_numpy())
    true_offset = obs["ewald_offset"].to_numpy(float)
    rs_offset = ds["ewald_offset"].to_numpy(float)
    assert np.corrcoef(true_offset, rs_offset)[0, 1] > 0.9999
    assert np.abs(rs_offset - true_offset).max() < 0.01 * true_offset.std()
    assert np.allclose(ds.cell.parameters, sim.cell.parameters, atol=1e-3)


def test_unmerged_and_truth_mtz_types(tmp_path, small_sim):
    paths = write(small_sim, tmp_path / "sim", formats=["mtz"])
    mtz = rs.read_mtz(paths["mtz"])
    assert not mtz.merged
    expected = {"BATCH": "B", "I": "J", "SIGI": "Q", "XDET": "R", "YDET": "R", "ewald_offset": "R"}
    assert {c: mtz[c].dtype.mtztype for c in expected} == expected
    assert "PARTIALITY" not in mtz
    np.testing.assert_array_equal(mtz.get_hkls(), small_sim.observations.get_hkls())
    np.testing.assert_allclose(mtz["I"], small_sim.observations["I"], rtol=1e-6)
    assert sorted(mtz["BATCH"].unique()) == list(range(1, 21))
    truth = rs.read_mtz(paths["truth"])
    types = {c: truth[c].dtype.mtztype for c in truth}
    assert types == {"F": "F", "PHI": "P", "F(+)": "G", "PHI(+)": "P", "F(-)": "G",
                     "PHI(-)": "P", "DANO": "D"}
    assert rs.utils.in_asu(truth.get_hkls(), truth.spacegroup).all()
    images = pd.read_csv(paths["images"])
    assert list(images["BATCH"]) == list(range(1, 21))
    assert images["n_reflections"].sum() == len(small_sim.observations)


def test_anomalous_signal_and_centrics(small_sim):
    truth = small_sim.truth
    centric = rs.utils.is_centric(truth.get_hkls(), truth.spacegroup)
    fp, fm = truth["F(+)"].to_numpy(float), truth["F(-)"].to_numpy(float)
    assert np.mean(np.abs(fp - fm)[~centric] / fp[~centric]) > 0.01
    assert centric.sum() > 50
    np.testing.assert_allclose(fp[centric], fm[centric], rtol=1e-5)

    plain = make_crystal(SimulationConfig(seed=3, fpp=0.0, **SMALL)).truth
    np.testing.assert_allclose(plain["F(+)"], plain["F(-)"], rtol=1e-5)
    dphi = (plain["PHI(+)"].to_numpy(float) - plain["PHI(-)"].to_numpy(float) + 180) % 360 - 180
    assert np.abs(dphi).max() < 1e-2
    # The same atoms: only f'' differs, so the Friedel-mean structures agree.
    np.testing.assert_allclose(plain["F"], truth["F"], rtol=1e-5)


def test_truth_amplitudes_follow_wilson_statistics():
    truth = make_crystal(SimulationConfig(cell=(60.0, 60.0, 40.0, 90.0, 90.0, 90.0),
                                          dmin=2.0, n_atoms=200, seed=5)).truth
    centric = rs.utils.is_centric(truth.get_hkls(), truth.spacegroup)
    s2 = 1.0 / truth.compute_dHKL()["dHKL"].to_numpy() ** 2
    shells = np.digitize(s2, np.quantile(s2, np.linspace(0, 1, 9)[1:-1]))
    f = truth["F(+)"].to_numpy(float)
    e = np.empty_like(f)
    for shell in np.unique(shells):
        for sel in (centric, ~centric):
            m = (shells == shell) & sel
            e[m] = f[m] / np.sqrt(np.mean(f[m] ** 2))
    assert (~centric).sum() > 3000
    acentric_ratio = np.mean(e[~centric] ** 2) / np.mean(e[~centric]) ** 2
    centric_ratio = np.mean(e[centric] ** 2) / np.mean(e[centric]) ** 2
    assert abs(acentric_ratio - 4 / np.pi) < 0.06
    assert abs(centric_ratio - np.pi / 2) < 0.15


def test_observations_are_physical(small_sim):
    obs, config = small_sim.observations, small_sim.config
    part = obs["PARTIALITY"].to_numpy(float)
    assert np.all((part >= config.partiality_min) & (part <= 1.0))
    assert np.all(obs.compute_dHKL()["dHKL"] >= config.dmin - 1e-6)
    x, y = obs["XDET"].to_numpy(float), obs["YDET"].to_numpy(float)
    assert np.all((x >= 0) & (x < config.detector_pixels[0]) & (y >= 0) & (y < config.detector_pixels[1]))
    # Poisson noise: I is unbiased with variance S + bg (1 + 1/r), which SIGI² estimates.
    expected = obs["IEXPECTED"].to_numpy(float)
    variance = expected + config.background * (1 + 1 / config.background_ratio)
    z = (obs["I"].to_numpy(float) - expected) / np.sqrt(variance)
    assert abs(z.mean()) < 0.08
    assert 0.93 < z.std() < 1.07
    assert np.mean(obs["SIGI"].to_numpy(float) ** 2) / np.mean(variance) == pytest.approx(1, abs=0.05)
    # The recorded reflections lie near the Ewald sphere: |s1| = 1/λ + offset.
    s1 = obs[["s1x", "s1y", "s1z"]].to_numpy(float)
    np.testing.assert_allclose(np.linalg.norm(s1, axis=1) - 1 / config.wavelength,
                               obs["ewald_offset"].to_numpy(float), atol=1e-6)
    assert np.abs(obs["ewald_offset"]).max() < 0.01


def test_pdb_model_and_asu_mapping_in_monoclinic(tmp_path):
    pdb = _tiny_pdb(tmp_path / "tiny.pdb")
    sim = simulate(10, seed=2, pdb=pdb, dmin=2.5, fpp=2.0, min_reflections=5)
    assert sim.spacegroup.hm == "P 1 21 1"
    assert sim.anomalous == {"S": (pytest.approx(sim.anomalous["S"][0]), 2.0)}
    obs = sim.observations
    # |F(h)| computed directly for the observed, unmapped indices.
    model = read_model(pdb)
    direct, _, _ = structure_factors(model, obs.get_hkls(), sim.anomalous)
    np.testing.assert_allclose(obs["FTRUE"].to_numpy(float), np.abs(direct), rtol=1e-4)
    # Friedel mates differ in the truth (the sulfurs are anomalous).
    assert np.abs(sim.truth["DANO"]).max() > 0.01 * sim.truth["F"].mean()


def test_blockwise_stream_equals_in_memory(tmp_path):
    params = dict(SMALL, n_atoms=60)
    sim = simulate(9, seed=4, **params)
    whole = write(sim, tmp_path / "whole", formats=["stream"])
    blocks = simulate_to_files(tmp_path / "blocks", n_images=9, formats=["stream", "mtz"],
                               seed=4, block_size=4, truth_columns=True, **params)
    assert open(whole["stream"]).read() == open(blocks["stream"]).read()
    mtz = rs.read_mtz(blocks["mtz"])
    np.testing.assert_allclose(mtz["I"], sim.observations["I"], rtol=1e-6)
    np.testing.assert_allclose(mtz["PARTIALITY"], sim.observations["PARTIALITY"], rtol=1e-6)
    pd.testing.assert_frame_equal(pd.read_csv(blocks["images"]), pd.read_csv(whole["images"]))


def test_model_file_gives_the_truth_phases_and_se_sites(tmp_path):
    from careless_online.stats.maps import anomalous_peak_table

    paths = simulate_to_files(tmp_path / "m", n_images=2, seed=5, formats=["stream"], n_atoms=300)
    structure = gemmi.read_structure(paths["model"])
    atoms = [cra.atom for cra in structure[0].all()]
    assert len(atoms) == 304 and sum(a.element.name == "Se" for a in atoms) == 4
    assert structure.spacegroup_hm == "P 43 21 2"
    # the model's atoms give back the truth amplitudes of the simulator
    again = read_model(paths["model"])
    truth = rs.read_mtz(paths["truth"])
    crystal = make_crystal(SimulationConfig(seed=5, n_atoms=300))
    f_plus, _, _ = structure_factors(again, truth.get_hkls(), crystal.anomalous)
    want = truth["F(+)"].to_numpy(float)  # (PDB coordinates are rounded to 0.001 A)
    assert np.corrcoef(np.abs(f_plus), want)[0, 1] > 0.999
    assert np.median(np.abs(np.abs(f_plus) - want) / want) < 0.01
    # the anomalous map of the true F(+), F(-) with the model's phases peaks at the Se atoms
    table = anomalous_peak_table(truth, structure, elements="Se", n_peaks=3)
    at_se = table["element"] == "Se"
    assert table.loc[at_se, "height_sigma"].min() > 3 * table.loc[~at_se, "height_sigma"].max()


def test_default_parameters_give_a_few_hundred_reflections_per_image():
    sim = simulate(5, seed=0)
    counts = sim.images["n_reflections"]
    assert counts.between(150, 400).all()
    assert sim.spacegroup.hm == "P 43 21 2"


def test_cli_writes_files(tmp_path, capsys):
    base = tmp_path / "cli"
    main(["--n-images", "4", "--cell", "40", "40", "30", "90", "90", "90", "--dmin", "3",
          "--n-atoms", "50", "--seed", "1", str(base)])
    for suffix in (".stream", ".mtz", "_truth.mtz", "_images.csv"):
        assert (tmp_path / f"cli{suffix}").is_file()
    ds = rs.read_crystfel(str(base) + ".stream", num_cpus=1)
    assert ds["BATCH"].nunique() == 4


def test_cli_makes_the_output_folder_and_leaves_none_on_bad_values(tmp_path, capsys):
    base = tmp_path / "new" / "run" / "sim"
    main(["--n-images", "2", "--cell", "40", "40", "30", "90", "90", "90", "--dmin", "4",
          "--n-atoms", "20", "--format", "mtz", str(base)])
    assert (tmp_path / "new" / "run" / "sim.mtz").is_file()
    with pytest.raises(SystemExit) as exit_info:
        main(["--dmin", "-1", str(tmp_path / "other" / "sim")])
    assert exit_info.value.code == 2 and not (tmp_path / "other").exists()


@pytest.mark.parametrize("argv", [
    ["--dmin", "-1"],
    ["--spacegroup", "P 7"],
    ["--n-images", "many"],
    ["--format", "stream,hdf5"],
    ["--spacegroup", "P 63"],
])
def test_cli_bad_values_exit_2_with_one_line(tmp_path, capsys, argv):
    with pytest.raises(SystemExit) as exit_info:
        main(argv + [str(tmp_path / "bad")])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "error" in err


def test_api_rejects_bad_parameters():
    with pytest.raises(InputError):
        simulate(2, wavelength=0)
    with pytest.raises(InputError):
        simulate(2, no_such_parameter=1)
    with pytest.raises(InputError):
        simulate(0)


# --- realism options (bulk solvent, several anomalous elements, molecules, Lorentz, error model) ---

#: A thermolysin-like mix of anomalous scatterers at 1.27 Å (f'' from Cromer-Liberman).
METALS = "Zn:1,Ca:2,S:3"


def _mean_intensity_ratio(truth, low=10.0, mid=(3.5, 5.0)):
    """<|F|²> at d > ``low`` over <|F|²> in the ``mid`` d range."""
    d = truth.compute_dHKL()["dHKL"].to_numpy()
    i = truth["F"].to_numpy(float) ** 2
    return i[d > low].mean() / i[(d > mid[0]) & (d < mid[1])].mean()


def test_bulk_solvent_depresses_low_resolution_and_keeps_anomalous_differences():
    params = dict(SMALL, cell=(60.0, 60.0, 40.0, 90.0, 90.0, 90.0), dmin=3.0, seed=2)
    dry = make_crystal(SimulationConfig(**params)).truth
    wet = make_crystal(SimulationConfig(bulk_solvent=0.8, **params)).truth
    assert (wet.compute_dHKL()["dHKL"] > 10).sum() > 20
    assert _mean_intensity_ratio(wet) < 0.25 * _mean_intensity_ratio(dry)
    # Babinet factor: F_N falls by (1 - k exp(-B s²/4)) exactly; the solvent has no f''
    s2 = 1 / wet.compute_dHKL()["dHKL"].to_numpy() ** 2
    np.testing.assert_allclose(wet["F"], dry["F"] * (1 - 0.8 * np.exp(-46.0 * s2 / 4)), rtol=1e-4)
    dano_dry, dano_wet = dry["DANO"].to_numpy(float), wet["DANO"].to_numpy(float)
    assert np.corrcoef(dano_dry, dano_wet)[0, 1] > 0.9


def test_several_anomalous_elements_are_placed_and_written_to_the_model(tmp_path):
    paths = simulate_to_files(tmp_path / "m", n_images=2, formats=["stream"], seed=1, n_atoms=100,
                              dmin=3.0, wavelength=1.27, anomalous_atoms=METALS + ",Se:2:3.5")
    atoms = [cra.atom for cra in gemmi.read_structure(paths["model"])[0].all()]
    counts = {el: sum(a.element.name == el for a in atoms) for el in ("Zn", "Ca", "S", "Se")}
    assert counts == {"Zn": 1, "Ca": 2, "S": 3, "Se": 2}
    crystal = make_crystal(SimulationConfig(n_atoms=100, dmin=3.0, wavelength=1.27, seed=1,
                                            anomalous_atoms=METALS + ",Se:2:3.5"))
    fpp = {el: terms[1] for el, terms in crystal.anomalous.items()}
    assert fpp["Se"] == 3.5 and fpp["Zn"] > fpp["Ca"] > fpp["S"] > 0  # above the Zn K edge
    assert np.abs(crystal.truth["DANO"]).max() > 0


def test_molecules_give_a_few_very_strong_low_order_reflections():
    params = dict(SMALL, cell=(60.0, 60.0, 40.0, 90.0, 90.0, 90.0), dmin=3.0, n_atoms=300, seed=4)
    ratios = []
    for radius in (0.0, 10.0):
        truth = make_crystal(SimulationConfig(molecule_radius=radius, **params)).truth
        i = truth["F"].to_numpy(float) ** 2
        ratios.append(np.sort(i)[-3:] / i.mean())
        d_strongest = truth.compute_dHKL()["dHKL"].to_numpy()[np.argmax(i)]
    assert ratios[1].min() > 10 and ratios[1].max() > 3 * ratios[0].max()
    assert d_strongest > 10


@pytest.fixture(scope="module")
def realistic_pair():
    """The same images without and with the Lorentz factor, mosaicity spread and error model."""
    params = dict(SMALL, seed=6, mosaicity=0.3, dmin=2.0)
    plain = simulate(12, **params)
    real = simulate(12, lorentz=True, mosaicity_spread=0.5, sigma_fraction=0.05, model_error=0.3,
                    anomalous_atoms=METALS, bulk_solvent=0.75, **params)
    return plain, real


def test_lorentz_factor_favours_narrow_low_resolution_profiles(realistic_pair):
    plain, real = realistic_pair
    for sim, lorentz in ((plain, False), (real, True)):
        obs = sim.observations
        d = obs.compute_dHKL()["dHKL"].to_numpy()
        part = obs["PARTIALITY"].to_numpy(float)
        low, high = part[d > 6].mean(), part[d < 2.5].mean()
        assert (low > 1.2 * high) == lorentz
        assert (part.max() > 1) == lorentz


def test_mosaicity_spread_varies_the_images(realistic_pair):
    plain, real = realistic_pair
    assert "mosaicity" not in plain.images
    mosaicity = real.images["mosaicity"].to_numpy()
    assert mosaicity.std() > 0.2 * mosaicity.mean()
    assert np.corrcoef(mosaicity, real.images["n_reflections"])[0, 1] > 0.5


def test_fractional_sigma_raises_sigi_of_strong_reflections():
    params = dict(SMALL, seed=3, n_atoms=60)
    plain = simulate(4, **params).observations
    frac = simulate(4, sigma_fraction=0.05, **params).observations
    i = plain["I"].to_numpy(float)
    np.testing.assert_array_equal(frac["I"].to_numpy(float), i)
    np.testing.assert_allclose(frac["SIGI"].to_numpy(float) ** 2,
                               plain["SIGI"].to_numpy(float) ** 2 + (0.05 * i) ** 2, rtol=1e-4)
    strong = i > np.quantile(i, 0.95)
    assert np.median(frac["SIGI"][strong] / plain["SIGI"][strong]) > 1.1


def test_model_error_is_not_described_by_sigi(realistic_pair):
    rms_z = []
    for sim in realistic_pair:
        obs = sim.observations
        expected = obs["IEXPECTED"].to_numpy(float)
        strong = expected > np.quantile(expected, 0.8)
        z = (obs["I"].to_numpy(float) - expected) / obs["SIGI"].to_numpy(float)
        rms_z.append(np.sqrt(np.mean(z[strong] ** 2)))
    assert rms_z[0] < 1.2 and rms_z[1] > 1.5 * rms_z[0]


def test_oracle_divides_out_every_hidden_correction(realistic_pair):
    from careless_online.simulate.oracle import true_correction

    obs = realistic_pair[1].observations
    # IEXPECTED / c is mean_counts |F|²/<|F|²>: nothing hidden is left in it
    ratio = obs["IEXPECTED"].to_numpy(float) / true_correction(obs) / obs["FTRUE"].to_numpy(float) ** 2
    np.testing.assert_allclose(ratio, ratio.mean(), rtol=1e-4)


def test_reflections_off_the_panel_are_not_recorded():
    params = dict(SMALL, seed=2, dmin=2.0, mosaicity=0.3)
    near = simulate(6, **params)
    far = simulate(6, detector_distance=400.0, detector_pixels=(1000, 1000), **params)
    for sim in (near, far):
        obs, config = sim.observations, sim.config
        x, y = obs["XDET"].to_numpy(float), obs["YDET"].to_numpy(float)
        assert np.all((x >= 0) & (x < config.detector_pixels[0]) & (y >= 0) & (y < config.detector_pixels[1]))
    # the far, small panel (half-diagonal 70.7 mm at 400 mm) sees 2θ <= 10.0°, d >= 5.6 Å
    corner = np.hypot(*far.config.detector_pixels) / 2 * far.config.pixel_size
    d_limit = far.config.wavelength / (2 * np.sin(np.arctan(corner / far.config.detector_distance) / 2))
    assert far.observations.compute_dHKL()["dHKL"].min() >= d_limit - 1e-3
    assert near.observations.compute_dHKL()["dHKL"].min() < d_limit


def test_cli_passes_the_realism_options(tmp_path, capsys):
    base = tmp_path / "real"
    main(["--n-images", "3", "--cell", "40", "40", "30", "90", "90", "90", "--dmin", "3", "--n-atoms", "50",
          "--anomalous-atoms", "Zn:1,Ca:2", "--molecule-radius", "8", "--bulk-solvent", "0.7",
          "--bulk-solvent-b", "60", "--lorentz", "--mosaicity-spread", "0.4", "--sigma-fraction", "0.03",
          "--model-error", "0.1", "--format", "mtz", "--mtz-truth-columns", str(base)])
    atoms = [cra.atom.element.name for cra in gemmi.read_structure(f"{base}_model.pdb")[0].all()]
    assert atoms.count("Zn") == 1 and atoms.count("Ca") == 2
    assert "mosaicity" in pd.read_csv(f"{base}_images.csv")
    assert rs.read_mtz(f"{base}.mtz")["PARTIALITY"].max() > 1


@pytest.mark.parametrize("argv", [
    ["--bulk-solvent", "1.2"],
    ["--anomalous-atoms", "Xx:1"],
    ["--anomalous-atoms", "Zn"],
    ["--anomalous-atoms", "Zn:1", "--fpp", "2"],
    ["--sigma-fraction", "-0.1"],
])
def test_cli_bad_realism_values_exit_2_with_one_line(tmp_path, capsys, argv):
    with pytest.raises(SystemExit) as exit_info:
        main(argv + [str(tmp_path / "bad")])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "error" in err
