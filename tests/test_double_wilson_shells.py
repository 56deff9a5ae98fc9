"""The double-Wilson r per resolution shell: layer, model wiring, saving, --double-wilson-r-shells."""

import json
import zipfile

import numpy as np
import pytest
import tensorflow as tf

from careless_online.cli.main import main
from careless_online.distributions import StructureFactorPosterior
from careless_online.distributions.double_wilson import DoubleWilsonCoupling, resolution_shells
from careless_online.io.cache import build_cache
from careless_online.io.table import TableOptions
from careless_online.simulate.states import StateChange, simulate_states, write_states

SG = "P 43 21 2"
KEYS = "dHKL,image_id,XDET,YDET,ewald_offset"
N_HKL = 12


def _posterior(n_hkl, values, scale):
    q = StructureFactorPosterior(2 * n_hkl, centric=np.zeros(2 * n_hkl, bool), epsilon=np.ones(2 * n_hkl))
    q.set_initial(values, scale)
    return q


def _kl(coupling, q, seed=(7, 8)):
    ids = tf.range(2 * coupling.n_hkl)
    F = q.sample(ids, 2, seed=(1, 2))
    return coupling.kl(q, ids, F, tf.fill([2 * coupling.n_hkl], 1.1), seed=seed).numpy()


# ----------------------------------------------------------------------------- the layer
def test_resolution_shells_hold_equal_counts_lowest_resolution_first():
    inverse_d2 = np.random.default_rng(0).uniform(0.01, 0.25, 103)
    shells = resolution_shells(inverse_d2, 4)
    assert np.bincount(shells).tolist() == [26, 26, 26, 25]
    assert all(inverse_d2[shells == s].max() <= inverse_d2[shells == s + 1].min() for s in range(3))
    with pytest.raises(ValueError, match="at least 1"):
        resolution_shells(inverse_d2, 0)


def test_without_shells_the_kl_is_the_one_shell_kl_and_each_shell_uses_its_own_r():
    q = _posterior(N_HKL, np.linspace(0.4, 2.2, 2 * N_HKL), np.full(2 * N_HKL, 0.3))
    plain = DoubleWilsonCoupling(N_HKL, [None, 0], [0.0, 0.7])
    one = DoubleWilsonCoupling(N_HKL, [None, 0], [0.0, 0.7], shells=np.zeros(N_HKL, int))
    assert plain.n_shells == one.n_shells == 1 and plain.r_logit.shape == (2, 1)
    np.testing.assert_array_equal(_kl(plain, q), _kl(one, q))
    # a given r is the same in every shell: three shells change nothing
    shells = np.repeat([0, 1, 2], N_HKL // 3)
    three = DoubleWilsonCoupling(N_HKL, [None, 0], [0.0, 0.7], shells=shells)
    assert three.r_logit.shape == (2, 3)
    np.testing.assert_allclose(_kl(three, q), _kl(plain, q), rtol=1e-6)
    # different r per shell: each shell's reflections get the KL of a one-shell layer with that shell's r
    r_shells = np.array([0.2, 0.6, 0.95])
    three.r_logit.assign(np.stack([three.r_logit.numpy()[0], np.log(r_shells / (0.999 - r_shells))]))
    got = _kl(three, q)
    for s, r in enumerate(r_shells):
        rows = N_HKL + np.flatnonzero(shells == s)
        want = _kl(DoubleWilsonCoupling(N_HKL, [None, 0], [0.0, float(r)]), q)
        np.testing.assert_allclose(got[rows], want[rows], rtol=1e-4)
    np.testing.assert_allclose(three.r().numpy()[1], r_shells.mean(), atol=1e-5)
    np.testing.assert_allclose(three.r_per_shell().numpy()[1], r_shells, atol=1e-5)


@pytest.mark.parametrize("options, message", [
    (dict(n_shells=0), "n_shells must be an integer of at least 1"),
    (dict(n_shells=2.5), "n_shells must be an integer"),
    (dict(shells=np.zeros(N_HKL - 1, int)), "shells must have shape"),
    (dict(shells=np.full(N_HKL, 0.5)), "shells must be integers"),
    (dict(shells=np.full(N_HKL, 3), n_shells=2), "shells must lie in 0..1"),
    (dict(shells=np.full(N_HKL, -1), n_shells=2), "shells must lie in 0..1"),
])
def test_bad_shells_are_refused_at_construction(options, message):
    with pytest.raises(ValueError, match=message):
        DoubleWilsonCoupling(N_HKL, [None, 0], 0.5, **options)


def test_config_round_trip_keeps_the_shells_and_a_config_without_shells_is_one_shell():
    shells = np.repeat([0, 1, 2, 3], N_HKL // 4)
    coupling = DoubleWilsonCoupling(N_HKL, [None, 0], [0.0, 0.6], learn_r=True, shells=shells)
    config = coupling.get_config()
    again = DoubleWilsonCoupling.from_config(config)
    assert again.n_shells == 4 and again.learn_r and again.r_logit.shape == (2, 4)
    np.testing.assert_allclose(again.r_per_shell().numpy()[1], 0.6, atol=1e-5)
    again.set_weights(coupling.get_weights())  # the shells come back with the weights, as from a saved model
    np.testing.assert_array_equal(again.shell.numpy(), shells)
    old = {k: v for k, v in config.items() if k != "n_shells"}
    assert DoubleWilsonCoupling.from_config(old).n_shells == 1
    # weights saved before shells existed: r_logit of shape [n_datasets]
    legacy = DoubleWilsonCoupling.from_config({**old, "r": [0.0, 0.5]})
    legacy.load_own_variables({"0": np.array([0.0, 1.5], np.float32)})
    np.testing.assert_allclose(legacy.r().numpy(), 0.999 / (1 + np.exp([0.0, -1.5])), rtol=1e-6)


def test_learned_r_is_high_where_the_states_agree_and_low_where_they_do_not():
    """Child = parent in the low-resolution shell, an independent Wilson draw in the high one: r splits."""
    rng = np.random.default_rng(4)
    n = 200

    def wilson(size):  # acentric amplitudes of Sigma = 1
        return np.abs(rng.normal(size=size) + 1j * rng.normal(size=size)) / np.sqrt(2)

    shells = resolution_shells(np.linspace(0.01, 0.2, n), 2)
    parent = wilson(n)
    child = np.where(shells == 0, parent, wilson(n))
    q = _posterior(n, np.concatenate([parent, child]), np.full(2 * n, 1e-3))
    F = tf.constant(np.concatenate([parent, child])[None], tf.float32)  # the child's draw: q is pinned there
    # two shells, and one r for both for comparison (trained side by side: one traced step)
    layers = [DoubleWilsonCoupling(n, [None, 0], 0.5, learn_r=True, shells=shells),
              DoubleWilsonCoupling(n, [None, 0], 0.5, learn_r=True)]
    variables = [layer.r_logit for layer in layers]
    optimizer = tf.keras.optimizers.Adam(0.1)
    ids, sigma = tf.range(2 * n), tf.ones([2 * n])

    @tf.function
    def step(seed):
        with tf.GradientTape() as tape:
            loss = tf.add_n([tf.reduce_sum(layer.kl(q, ids, F, sigma, seed=seed)) for layer in layers])
        optimizer.apply_gradients(zip(tape.gradient(loss, variables), variables))

    for i in range(80):
        step(tf.constant([i, 11]))
    (low, high), (one,) = (layer.r_per_shell().numpy()[1] for layer in layers)
    assert low > 0.95 and high < 0.25, (low, high)
    assert high + 0.2 < one < low - 0.02, (low, high, one)  # one r for both lies in between


# ----------------------------------------------------------------------------- model and command line
@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    """A tiny dark/light pair: the two streams and a cache of both."""
    folder = tmp_path_factory.mktemp("shells")
    states = simulate_states(n_images=8, seed=3, dmin=5.0, n_atoms=200,
                             change=StateChange(n_changed=2, shift=1.5, occupancy=0.8))
    paths = write_states(states, str(folder / "tr"))
    files = [paths["dark"]["stream"], paths["light"]["stream"]]
    manifest = build_cache(files, TableOptions(spacegroup=SG), str(folder / "cache"), shard_images=8,
                           log=lambda m: None, progress=False)
    return folder, files, manifest


def _coupled_model(**options):
    """A two-dataset model with the coupling, without data (1/d^2 of 40 reflections)."""
    from careless_online.model.merging import MergingModel

    return MergingModel(40, 0, n_datasets=2, d_model=4, encoder_layers=0, scale_layers=0,
                        inverse_d2=np.linspace(0.01, 0.1, 40), double_wilson_parents=[None, 0],
                        double_wilson_r=[0.0, 0.7], **options)


def test_model_option_r_shells_is_checked_and_saved_in_the_config():
    from careless_online.model.merging import MergingModel

    plain = _coupled_model()
    assert plain.coupling.r_logit.shape == (2, 1) and plain.coupling.shell is None
    model = _coupled_model(double_wilson_r_shells=4)
    np.testing.assert_array_equal(model.coupling.shell.numpy(), np.repeat([0, 1, 2, 3], 10))
    assert MergingModel.from_config(model.get_config()).coupling.n_shells == 4
    with pytest.raises(ValueError, match="double_wilson_r_shells must be"):
        _coupled_model(double_wilson_r_shells=0)
    with pytest.raises(ValueError, match="double_wilson_r_shells needs double_wilson_parents"):
        MergingModel(40, 0, n_datasets=2, double_wilson_r_shells=2)


def _model_from_flags(files, manifest, *flags):
    """The model ``mono`` builds from its flags (without training it)."""
    from careless_online.cli.datasets import double_wilson_options, group_spec
    from careless_online.cli.mono import build_parser, settings_from_args
    from careless_online.io.pipeline import Standardizer
    from careless_online.model.build import new_model

    args = build_parser().parse_args(["--separate-files", "--double-wilson-parents=None,0",
                                      "--optimize-double-wilson-r", *flags, KEYS, *files, "o/x"])
    spec = group_spec(args)
    _, settings = settings_from_args(args, KEYS.split(","), [SG, SG], spec, double_wilson_options(args, spec))
    return new_model(manifest, Standardizer([], [], []), n_datasets=2, **settings.model_options)


def test_r_shells_flag_gives_each_dataset_an_r_per_equal_count_shell_that_is_saved(pair, tmp_path):
    from careless_online.model.build import load_model

    _, files, manifest = pair
    plain = _model_from_flags(files, manifest)
    assert plain.coupling.r_logit.shape == (2, 1) and plain.coupling.shell is None
    built = _model_from_flags(files, manifest, "--double-wilson-r-shells", "3")
    assert built.coupling.r_logit.shape == (2, 3) and built.coupling.r_logit.trainable
    # the shells are the equal-count shells of the model's own 1/d^2, lowest resolution first
    inverse_d2 = built.wilson_sigma.inverse_d2.numpy()
    shells = built.coupling.shell.numpy()
    np.testing.assert_array_equal(shells, resolution_shells(inverse_d2, 3))
    assert np.ptp(np.bincount(shells)) <= 1 and inverse_d2[shells == 0].max() <= inverse_d2[shells == 2].min()
    built.coupling.r_logit.assign([[0.0, 0.0, 0.0], [0.5, 1.5, 2.5]])
    built.save(str(tmp_path / "m.keras"))
    model = load_model(str(tmp_path / "m.keras"))
    assert model.get_config()["double_wilson_r_shells"] == 3
    np.testing.assert_array_equal(model.coupling.shell.numpy(), shells)
    np.testing.assert_allclose(model.coupling.r_per_shell().numpy(), built.coupling.r_per_shell().numpy())


def test_a_model_saved_before_shells_existed_loads_with_one_r_per_dataset(tmp_path):
    """Rewrite a saved one-shell model into the old layout (no shells in the config, r_logit [n_datasets])."""
    import h5py

    from careless_online.model.build import load_model

    saved = _coupled_model()
    saved.coupling.r_logit.assign([[0.0], [1.7]])
    path = str(tmp_path / "new.keras")
    saved.save(path)
    want = saved.coupling.r().numpy()
    old = tmp_path / "old.keras"
    with zipfile.ZipFile(path) as source, zipfile.ZipFile(old, "w") as target:
        for item in source.infolist():
            data = source.read(item.filename)
            if item.filename == "config.json":
                config = json.loads(data)
                config["config"].pop("double_wilson_r_shells")
                data = json.dumps(config).encode()
            elif item.filename.endswith(".h5"):
                data = _legacy_weights(h5py, data, tmp_path)
            target.writestr(item, data)
    model = load_model(str(old))
    assert model.coupling.n_shells == 1 and "double_wilson_r_shells" not in json.loads(
        zipfile.ZipFile(old).read("config.json"))["config"]
    np.testing.assert_allclose(model.coupling.r().numpy(), want, rtol=1e-6)


def _legacy_weights(h5py, data, folder):
    """The weights file with the coupling's r_logit ``[n_datasets, 1]`` stored as ``[n_datasets]``."""
    path = folder / "weights.h5"
    path.write_bytes(data)
    with h5py.File(path, "r+") as h5:
        found = []
        h5.visititems(lambda name, item: found.append(name) if name.startswith("coupling/") and
                      name.endswith("vars/0") else None)
        assert len(found) == 1, found
        value = h5[found[0]][()]
        assert value.shape == (2, 1)
        del h5[found[0]]
        h5[found[0]] = value[:, 0]
    return path.read_bytes()


@pytest.mark.parametrize("args, message", [
    (["--separate-files", "--double-wilson-r-shells", "3"], "--double-wilson-r-shells needs --double-wilson-parents"),
    (["--separate-files", "--double-wilson-parents=None,0", "--double-wilson-r=0,.9", "--double-wilson-r-shells",
      "0"], "argument --double-wilson-r-shells: must be at least 1: 0"),
])
def test_r_shells_flag_errors_are_one_line(pair, tmp_path, capsys, args, message):
    folder, files, _ = pair
    with pytest.raises(SystemExit) as exit_info:
        main(["mono", "--spacegroups", SG, "--cache-dir", str(folder / "cache"), *args, KEYS, *files,
              str(tmp_path / "o")])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0], err


def test_the_learned_r_is_said_per_shell_and_a_fixed_r_is_not():
    from careless_online.training.merge import log_learned_r

    said = []
    log_learned_r(_coupled_model(learn_double_wilson_r=True, double_wilson_r_shells=3), said.append)
    assert len(said) == 1 and said[0].startswith("learned double-Wilson r of dataset 1 with its parent 0: 0.700")
    assert said[0].count("0.700") == 4  # the mean, then each of the 3 shells (all still at the start)
    log_learned_r(_coupled_model(), said.append)
    assert len(said) == 1
