"""Simulated DIALS stills: the pairs read back as the simulator's observations."""

import json
import os

import msgpack
import numpy as np
import pytest

from careless_online.io import readers
from careless_online.simulate import simulate, simulate_to_files, write
from careless_online.simulate.cli import main as simulate_main
from careless_online.simulate.dials import TO_DIALS, delta_psi

PARAMS = dict(seed=3, dmin=4.0)


@pytest.fixture(scope="module")
def small():
    """Six simulated images (and their observation table) in memory."""
    return simulate(n_images=6, **PARAMS)


def _read_folder(folder):
    """Every pair of a folder read with careless_online's reader, images numbered across pairs."""
    frames, offset = [], 0
    for name in sorted(os.listdir(folder)):
        if name.endswith(".refl"):
            raw = readers.read_dials(os.path.join(folder, name))
            frame = raw.data.assign(image=raw.data["image"] + offset)
            frames.append((frame, raw))
            offset += int(raw.data["image"].max()) + 1
    return frames


def _sorted(table, columns):
    return table.sort_values(columns, kind="stable").reset_index(drop=True)


def test_dials_pair_reads_back_as_the_simulated_observations(tmp_path, small):
    paths = write(small, str(tmp_path / "sim"), formats=("dials",))
    ((read, raw),) = _read_folder(paths["dials"])
    truth = small.observations.reset_index()
    expected = truth.assign(image=truth["BATCH"].astype(int) - 1)
    keys = ["image", "H", "K", "L", "XDET"]
    read, expected = _sorted(read, keys), _sorted(expected, keys)
    assert len(read) == len(expected) > 0
    for column in ("image", "H", "K", "L"):
        np.testing.assert_array_equal(read[column].to_numpy(), expected[column].to_numpy())
    for ours, theirs in (("I", "I"), ("SigI", "SIGI"), ("XDET", "XDET"), ("YDET", "YDET")):
        np.testing.assert_allclose(read[ours].to_numpy(), expected[theirs].to_numpy(), rtol=1e-6, atol=1e-4)
    s1 = expected[["s1x", "s1y", "s1z"]].to_numpy(float) @ TO_DIALS.T  # DIALS's beam travels along -z
    np.testing.assert_allclose(read[["s1x", "s1y", "s1z"]].to_numpy(), s1, rtol=1e-6)
    assert raw.spacegroup.hm == small.spacegroup.hm
    cells = np.array([raw.image_cells[i] for i in range(6)])
    np.testing.assert_allclose(cells, small.images[["a", "b", "c", "alpha", "beta", "gamma"]].to_numpy(), rtol=1e-9)


def test_the_experiment_list_predicts_the_table_geometry(tmp_path, small):
    """s1 = s0 + A h with the .expt's beam and crystal; the pixel lies on s1; d = 1/|A h|."""
    folder = write(small, str(tmp_path / "sim"), formats=("dials",))["dials"]
    expt = json.load(open(os.path.join(folder, "sim_000001.expt")))
    pack = msgpack.load(open(os.path.join(folder, "sim_000001.refl"), "rb"), strict_map_key=False)
    assert pack[0] == "dials::af::reflection_table" and pack[1] == 1
    data = pack[2]["data"]

    def column(name, dtype, width):
        return np.frombuffer(data[name][1][1], dtype=dtype).reshape(-1, width)

    ids, hkl = column("id", "<i4", 1)[:, 0], column("miller_index", "<i4", 3).astype(float)
    s1, xyz, d = column("s1", "<f8", 3), column("xyzcal.px", "<f8", 3), column("d", "<f8", 1)[:, 0]
    beam, panel = expt["beam"][0], expt["detector"][0]["panels"][0]
    s0 = -np.array(beam["direction"]) / beam["wavelength"]
    real = [np.array([c[k] for k in ("real_space_a", "real_space_b", "real_space_c")]) for c in expt["crystal"]]
    q = np.einsum("nij,nj->ni", np.linalg.inv(np.array(real))[ids], hkl)
    np.testing.assert_allclose(s1, s0 + q, atol=1e-9)  # no energy jitter: the nominal wavelength
    np.testing.assert_allclose(d, 1 / np.linalg.norm(q, axis=1))
    pixel = (np.array(panel["origin"]) + np.outer(xyz[:, 0] * panel["pixel_size"][0], panel["fast_axis"])
             + np.outer(xyz[:, 1] * panel["pixel_size"][1], panel["slow_axis"]))
    np.testing.assert_allclose(np.cross(pixel, s1), 0, atol=1e-6 * np.abs(pixel).max())
    assert (pixel @ s0 > 0).all()  # downstream of the crystal
    assert pack[2]["identifiers"] == {i: e["identifier"] for i, e in enumerate(expt["experiment"])}


def test_delta_psi_rotates_the_point_onto_the_ewald_sphere():
    wavelength, q = 1.0, np.array([[0.3, 0.1, -0.04]])
    psi = delta_psi(q, wavelength)[0]
    axis = np.cross([0, 0, 1 / wavelength], q[0])
    axis /= np.linalg.norm(axis)
    rotated = q[0] * np.cos(psi) + np.cross(axis, q[0]) * np.sin(psi)  # q is perpendicular to the axis
    before = np.linalg.norm(q[0] + [0, 0, 1 / wavelength]) - 1 / wavelength
    after = np.linalg.norm(rotated + [0, 0, 1 / wavelength]) - 1 / wavelength
    assert abs(after) < 1e-2 * abs(before) and abs(before) > 1e-3


def test_reader_maps_rows_to_experiments_by_identifier(tmp_path, small):
    """rs numbers identifiers in set order; the reader must follow the .expt's order."""
    folder = write(small, str(tmp_path / "sim"), formats=("dials",))["dials"]
    refl = os.path.join(folder, "sim_000001.refl")
    pack = msgpack.load(open(refl, "rb"), strict_map_key=False)
    names = pack[2]["identifiers"]
    pack[2]["identifiers"] = {key: names[(key + 1) % len(names)] for key in names}  # id k is experiment k + 1
    with open(refl, "wb") as handle:
        handle.write(msgpack.packb(pack))
    raw = readers.read_dials(refl)
    truth = small.observations.reset_index()
    first = truth[truth["BATCH"] == 1]  # the rows of id 0: now the second experiment's, image 1
    rows = raw.data[raw.data["image"] == 1]
    assert sorted(map(tuple, rows[["H", "K", "L"]].to_numpy())) == sorted(map(tuple, first[["H", "K", "L"]].to_numpy()))
    np.testing.assert_allclose(np.sort(rows["I"].to_numpy()), np.sort(first["I"].to_numpy()), rtol=1e-6)
    assert raw.image_cells[1] == pytest.approx(tuple(small.images.loc[1, ["a", "b", "c", "alpha", "beta", "gamma"]]))
    pack[2]["identifiers"] = {key: "not-in-the-expt" for key in names}
    with open(refl, "wb") as handle:
        handle.write(msgpack.packb(pack))
    with pytest.raises(readers.InputError, match="identifier"):
        readers.read_dials(refl)


def test_blockwise_pairs_hold_the_same_observations(tmp_path, small):
    paths = simulate_to_files(str(tmp_path / "blocks"), n_images=6, formats=("dials",), block_size=2, **PARAMS)
    names = sorted(os.listdir(paths["dials"]))
    assert names == [f"blocks_{n:06d}.{ext}" for n in (1, 3, 5) for ext in ("expt", "refl")]
    read = [frame for frame, _ in _read_folder(paths["dials"])]
    assert [frame["image"].nunique() for frame in read] == [2, 2, 2]
    joined = np.concatenate([frame["I"].to_numpy() for frame in read])
    np.testing.assert_allclose(np.sort(joined), np.sort(small.observations["I"].to_numpy()), rtol=1e-6)


def test_cli_writes_dials_pairs(tmp_path, capsys):
    simulate_main([str(tmp_path / "out" / "s"), "--n-images", "4", "--block-size", "2", "--dmin", "5",
                   "--format", "dials"])
    printed = capsys.readouterr().out.split()
    folder = str(tmp_path / "out" / "s_dials")
    assert folder in printed and not os.path.exists(tmp_path / "out" / "s.stream")
    assert sorted(os.listdir(folder)) == ["s_000001.expt", "s_000001.refl", "s_000003.expt", "s_000003.refl"]
