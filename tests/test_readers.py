"""Readers on the real files in tests/data, checked against reciprocalspaceship."""

import json

import gemmi
import numpy as np
import pytest
import reciprocalspaceship as rs

from careless_online.io import readers

MTZ_FILES = ["hewl_rotation_unmerged.mtz", "hewl_unmerged_1000.mtz", "pyp_laue_off_small.mtz"]
CORE = ["H", "K", "L", "I", "SigI", "image"]


def _check_common(raw, n_expected, n_images):
    data = raw.data
    assert len(data) == n_expected
    assert list(data.columns[:5]) == ["H", "K", "L", "I", "SigI"]
    assert all(c in data for c in CORE)
    for c in ("H", "K", "L"):
        assert data[c].dtype == np.int32
    assert data["I"].dtype == np.float32 and data["SigI"].dtype == np.float32
    assert data["image"].dtype == np.int64
    # images numbered from 0, contiguous
    assert np.array_equal(np.unique(data["image"]), np.arange(n_images))
    # every other column is numeric float32 metadata
    for c in data.columns:
        if c not in CORE:
            assert data[c].dtype == np.float32, c


def _sorted_rows(hkl, values):
    table = np.column_stack([hkl, values])
    return table[np.lexsort(table.T[::-1])]


@pytest.mark.parametrize("name", MTZ_FILES)
def test_read_mtz_matches_rs(data_dir, name):
    path = data_dir / name
    expected = rs.read_mtz(str(path)).reset_index()
    raw = readers.read_file(str(path))
    n_images = expected["BATCH"].nunique()
    _check_common(raw, len(expected), n_images)
    ikey = "I"
    skey = "SIGI" if "SIGI" in expected else "SigI"
    got = _sorted_rows(raw.data[["H", "K", "L"]].to_numpy(), raw.data[["I", "SigI", "BATCH"]].to_numpy(float))
    want = _sorted_rows(expected[["H", "K", "L"]].to_numpy(int),
                        expected[[ikey, skey, "BATCH"]].to_numpy(float))
    np.testing.assert_allclose(got, want, rtol=1e-6)
    # image follows the order of BATCH
    batch = raw.data["BATCH"].to_numpy()
    assert np.array_equal(np.unique(batch, return_inverse=True)[1], raw.data["image"].to_numpy())
    assert raw.spacegroup.xhm() == expected.spacegroup.xhm()
    assert raw.cell.parameters == pytest.approx(expected.cell.parameters)
    # metadata columns of the file survive (not the index/symmetry bookkeeping)
    for c in ("XDET", "YDET") if "XDET" in expected else ("X", "Y", "Wavelength"):
        assert c in raw.data
    assert "PARTIAL" not in raw.data and "M/ISYM" not in raw.data


def test_mtz_known_contents(data_dir):
    rot = readers.read_file(str(data_dir / "hewl_rotation_unmerged.mtz"))
    assert len(rot.data) == 839 and rot.data["image"].nunique() == 3
    assert rot.spacegroup.xhm() == "P 43 21 2"
    thousand = readers.read_file(str(data_dir / "hewl_unmerged_1000.mtz"))
    assert thousand.data["image"].max() == 717
    pyp = readers.read_file(str(data_dir / "pyp_laue_off_small.mtz"))
    assert pyp.spacegroup.xhm() == "P 63" and "Wavelength" in pyp.data


def test_read_stream_matches_rs(data_dir):
    path = str(data_dir / "lysozyme_pal.stream")
    expected = rs.read_crystfel(path, spacegroup="P 43 21 2", num_cpus=1).reset_index()
    raw = readers.read_file(path)
    _check_common(raw, 618, 3)
    assert raw.spacegroup is None  # a stream does not state its group
    # reference cell from the stream's unit cell block (nm -> Angstrom)
    assert raw.cell.a == pytest.approx(79.2, abs=0.05) and raw.cell.c == pytest.approx(38.0, abs=0.05)
    # one cell per crystal, each close to the reference
    assert sorted(raw.image_cells) == [0, 1, 2]
    for cell in raw.image_cells.values():
        assert np.allclose(cell[:3], raw.cell.parameters[:3], rtol=0.03)
        assert np.allclose(cell[3:], 90.0, atol=1.0)
    columns = ["I", "SigI", "ewald_offset", "XDET", "YDET", "BATCH"]
    got = _sorted_rows(raw.data[["H", "K", "L"]].to_numpy(),
                       raw.data[columns].to_numpy(float))
    want = _sorted_rows(expected[["H", "K", "L"]].to_numpy(int), expected[columns].to_numpy(float))
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


def test_stream_blocks_equal_whole_read(data_dir):
    path = str(data_dir / "lysozyme_pal.stream")
    whole = readers.read_stream(path)
    blocks = list(readers.iter_stream_blocks(path, chunks_per_block=1))
    assert [b.n_chunks for b in blocks] == [1, 1, 1]
    assert [int(b.data["image"].iloc[0]) for b in blocks] == [0, 1, 2]
    joined = np.concatenate([b.data[["H", "K", "L"]].to_numpy() for b in blocks])
    assert np.array_equal(joined, whole.data[["H", "K", "L"]].to_numpy())
    assert readers.count_stream_chunks(path) == 3
    # follow from a later chunk, as live mode does
    later = list(readers.iter_stream_blocks(path, start_chunk=2, first_image=2))
    assert len(later) == 1 and np.array_equal(later[0].data["image"].unique(), [2])


def test_chunk_scan_in_pieces_finds_every_chunk_once(sim_files, monkeypatch):
    text = open(sim_files["stream"], "rb").read()
    expected = list(zip([i for i in range(len(text)) if text.startswith(b"----- Begin chunk -----", i)],
                        [i + 21 for i in range(len(text)) if text.startswith(b"----- End chunk -----", i)],
                        [True] * len(text)))
    assert len(expected) > 10
    for size in (7, 21, 22, 23, 64, 4096):  # pieces smaller than, equal to and larger than a marker
        monkeypatch.setattr(readers, "_SCAN_BYTES", size)
        assert readers._chunk_spans(sim_files["stream"]) == expected, size


@pytest.mark.parametrize("name", ["stills.expt", "stills.refl"])
def test_read_dials_matches_rs(data_dir, name):
    expected = rs.io.read_dials_stills(str(data_dir / "stills.refl"), numjobs=1).reset_index()
    raw = readers.read_file(str(data_dir / name))
    _check_common(raw, len(expected), expected["BATCH"].nunique())
    assert len(raw.data) == 502
    np.testing.assert_allclose(raw.data["I"], expected["intensity.sum.value"], rtol=1e-6)
    np.testing.assert_allclose(raw.data["SigI"] ** 2, expected["intensity.sum.variance"], rtol=1e-5)
    assert np.array_equal(raw.data[["H", "K", "L"]].to_numpy(), expected[["H", "K", "L"]].to_numpy(int))
    # symmetry from the experiment list
    with open(data_dir / "stills.expt") as handle:
        crystal = json.load(handle)["crystal"][0]
    ops = gemmi.symops_from_hall(crystal["space_group_hall_symbol"])
    assert raw.spacegroup.number == gemmi.find_spacegroup_by_ops(ops).number
    assert raw.cell.is_compatible_with_spacegroup(raw.spacegroup)
    a, b, c, al, be, ga = raw.cell.parameters
    assert a == pytest.approx(b, rel=1e-3) and ga == pytest.approx(120.0, abs=0.1)
    assert sorted(raw.image_cells) == [0, 1, 2]
    # cell lengths from the real-space vectors of the crystal model
    lengths = [np.linalg.norm(crystal[k]) for k in ("real_space_a", "real_space_b", "real_space_c")]
    assert any(np.allclose(cell[:3], lengths, rtol=1e-6) for cell in raw.image_cells.values())
    assert {"XDET", "YDET", "s1x", "s1y", "s1z"} <= set(raw.data.columns)


def test_simulated_stream_matches_rs(sim_files):
    expected = rs.read_crystfel(sim_files["stream"], spacegroup="P 43 21 2", num_cpus=1).reset_index()
    raw = readers.read_file(sim_files["stream"])
    _check_common(raw, len(expected), 48)
    assert len(raw.image_cells) == 48


ROW = "%4d %4d %4d %10.2f %10.2f %10.2f %10.2f %6.1f %6.1f"


def test_fixed_width_rows_equal_float_of_each_field_and_refuse_lines_off_the_layout():
    from careless_online.io.stream_rows import fixed_width_rows

    rng = np.random.default_rng(3)
    numbers = np.column_stack([rng.integers(-511, 512, (300, 3)), rng.uniform(-9999, 99999, (300, 4)).round(2),
                               rng.uniform(-99, 999, (300, 2)).round(1)])
    lines = [ROW % tuple(row) + end for row, end in zip(numbers, [" p0\n", "\n", " q12a3\r\n"] * 100)]
    off = [ROW % (1, 2, 3, -12345678.9, 1, 1, 1, 1, 1) + " p0\n",  # wider than its field
           ROW.replace("%10.2f", "%10.3e", 1) % (1, 2, 3, 5, 1, 1, 1, 1, 1) + "\n",  # an exponent
           (ROW % (1, 2, 3, 5, 1, 1, 1, 1, 1)).replace(" ", "\t", 1) + "\n", "\n",
           ROW % (1, 2, 3, 5, 1, 1, 1, 1, 1) + "x p0\n"]
    values, valid = fixed_width_rows("".join(lines + off).encode())
    assert valid.tolist() == [True] * len(lines) + [False] * len(off)
    expected = np.array([[float(word) for word in line.split()[:9]] for line in lines])
    assert np.array_equal(values[:len(lines)].view(np.int64), expected.view(np.int64))  # bit for bit


def test_blocks_parsed_at_once_equal_chunks_parsed_one_by_one(sim_files):
    from careless_online.io import stream_block, stream_format

    text = open(sim_files["stream"], "rb").read()
    spans = readers._chunk_spans(sim_files["stream"])
    chunks = [text[begin:end] for begin, end, _ in spans]
    # a damaged chunk among good ones: a reflection line cut short
    cut = chunks[1].index(b"End of reflections") - 30
    chunks[1] = chunks[1][:cut] + chunks[1][cut + 20:]
    together = stream_block.parse_chunks(chunks)
    for chunk, result in zip(chunks, together):
        try:
            alone = stream_format.parse_chunk(chunk)
        except stream_format.DamagedChunk as err:
            assert isinstance(result, stream_format.DamagedChunk) and str(result) == str(err)
            continue
        assert [c.cell for c in result] == [c.cell for c in alone]
        assert all(np.array_equal(a.rows, b.rows) for a, b in zip(result, alone))
    assert isinstance(together[1], stream_format.DamagedChunk) and "reflection line" in str(together[1])
