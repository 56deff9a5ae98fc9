"""Write simulated images as DIALS stills: an experiment list (``.expt``) and a reflection table (``.refl``).

Frames.  The simulator's beam travels along +z; DIALS's along -z (its beam
``direction`` points back to the source, s0 = -direction/λ).  The files are
written in DIALS's frame: every lab vector v of the simulator becomes R v with
R = diag(-1, 1, -1), a 180° turn about y.  So the ``.expt`` is
self-consistent: s1 = s0 + A h holds with the file's beam and crystal, and a
detector pixel (x, y) lies at ``origin + x p fast + y p slow``.

Experiment list (JSON).  One experiment per image, each with its own crystal
(real-space vectors a, b, c, the rows of (R A)⁻¹ for A = U B with columns
a*, b*, c*; the space group's Hall symbol) and image set; one beam (the
nominal wavelength, as in the stream) and one flat single-panel detector
shared by all.  Every experiment has an identifier (a UUID derived from the
seed and the image number).

Reflection table (msgpack, as DIALS writes it)::

    ["dials::af::reflection_table", 1,
     {"identifiers": {id: identifier}, "nrows": n,
      "data": {column: [type name, [n, little-endian bytes]]}}]

Columns: ``miller_index``, ``id``, ``panel``, ``flags`` (predicted, indexed,
integrated by summation), ``intensity.sum.value``/``.variance`` (I and SIGI²),
``background.sum.value``, ``xyzcal.px``/``xyzobs.px.value`` (the spot
position, frame 0; the simulator has no centroid error, so observed =
calculated), ``xyzcal.mm``, ``s1``, ``d`` (1/|A h|), ``entering`` (False)
and ``delpsical.rad``: the rotation of the reciprocal-lattice point about
s0 × q that puts it on the Ewald sphere of the nominal wavelength, to first
order

    Δψ = e |s0 + q| / |s0 × q|,     e = |s0 + q| - 1/λ.

No partiality column: it is truth, not an observation.
"""

import json
import os
import uuid

import msgpack
import numpy as np

from careless_online.io.atomic import atomic_path

#: The simulator's lab frame to DIALS's: 180° about y.
TO_DIALS = np.diag([-1.0, 1.0, -1.0])

#: DIALS reflection flags: predicted, indexed, integrated_sum.
FLAGS = (1 << 0) | (1 << 2) | (1 << 8)

#: Namespace of the experiment identifiers.
_NAMESPACE = uuid.UUID("5e1f0c2a-6a43-4b8e-9a1d-3c0ffee0d1a5")


def identifier(seed, image):
    """The experiment identifier of a simulated image (a UUID, the same for the same seed and image)."""
    return str(uuid.uuid5(_NAMESPACE, f"{seed}/{image}"))


def _a_matrix(image):
    return np.array([[image[f"A{r}{c}"] for c in range(3)] for r in range(3)], dtype=float)


def _crystal(image, spacegroup):
    real = np.linalg.inv(TO_DIALS @ _a_matrix(image))  # rows: a, b, c
    return {"__id__": "crystal", "real_space_a": real[0].tolist(), "real_space_b": real[1].tolist(),
            "real_space_c": real[2].tolist(), "space_group_hall_symbol": spacegroup.hall}


def _panel(config):
    nx, ny = config.detector_pixels
    p, distance = float(config.pixel_size), float(config.detector_distance)
    origin = TO_DIALS @ np.array([-nx / 2 * p, -ny / 2 * p, distance])
    return {"name": "Panel", "type": "SENSOR_PAD", "fast_axis": (TO_DIALS @ [1.0, 0, 0]).tolist(),
            "slow_axis": (TO_DIALS @ [0, 1.0, 0]).tolist(), "origin": origin.tolist(),
            "raw_image_offset": [0, 0], "image_size": [int(nx), int(ny)], "pixel_size": [p, p],
            "trusted_range": [-1.0, 1.0e6], "thickness": 0.0, "material": "", "mu": 0.0, "identifier": "",
            "mask": [], "gain": 1.0, "pedestal": 0.0, "px_mm_strategy": {"type": "SimplePxMmStrategy"}}


def _detector(config):
    root = {"name": "", "type": "", "fast_axis": [1.0, 0.0, 0.0], "slow_axis": [0.0, 1.0, 0.0],
            "origin": [0.0, 0.0, 0.0], "raw_image_offset": [0, 0], "image_size": [0, 0],
            "pixel_size": [0.0, 0.0], "trusted_range": [0.0, 0.0], "thickness": 0.0, "material": "",
            "mu": 0.0, "identifier": "", "mask": [], "gain": 1.0, "pedestal": 0.0,
            "px_mm_strategy": {"type": "SimplePxMmStrategy"}, "children": [{"panel": 0}]}
    return {"panels": [_panel(config)], "hierarchy": root}


def _beam(config):
    return {"direction": [0.0, 0.0, 1.0], "wavelength": float(config.wavelength), "divergence": 0.0,
            "sigma_divergence": 0.0, "polarization_normal": [0.0, 1.0, 0.0],
            "polarization_fraction": float(config.polarization), "flux": 0.0, "transmission": 1.0}


def experiment_list(images, spacegroup, config):
    """The experiment list of simulated images, as a JSON-ready dict.

    Parameters
    ----------
    images : list of dict
        Per image ``image`` (0-based), ``BATCH`` and ``A00`` ... ``A22`` (see
        :meth:`~careless_online.simulate.images.ImageSimulator.image`).
    spacegroup : gemmi.SpaceGroup
    config : SimulationConfig

    Returns
    -------
    dict
    """
    experiments, imagesets = [], []
    for number, image in enumerate(images):
        experiments.append({"__id__": "Experiment", "identifier": identifier(config.seed, int(image["image"])),
                            "beam": 0, "detector": 0, "crystal": number, "imageset": number})
        imagesets.append({"__id__": "ImageSet", "images": [f"simulated_{int(image['BATCH']):06d}.h5"],
                          "mask": None, "gain": None, "pedestal": None, "dx": None, "dy": None, "params": {}})
    return {"__id__": "ExperimentList", "experiment": experiments, "imageset": imagesets,
            "beam": [_beam(config)], "detector": [_detector(config)], "goniometer": [], "scan": [],
            "crystal": [_crystal(image, spacegroup) for image in images], "profile": [], "scaling_model": []}


def delta_psi(q, wavelength):
    """First-order rotation (radians) about s0 × q that puts q on the Ewald sphere.

    Parameters
    ----------
    q : numpy.ndarray
        Shape (n, 3), scattering vectors in the simulator's frame (s0 along +z).
    wavelength : float
        The nominal wavelength (Å).

    Returns
    -------
    numpy.ndarray
        Shape (n,): Δψ = e |s1| / |s0 × q| with s1 = s0 + q and e = |s1| - 1/λ.
    """
    s0 = np.array([0.0, 0.0, 1.0 / wavelength])
    s1 = np.linalg.norm(q + s0, axis=1)
    return (s1 - 1.0 / wavelength) * s1 / np.linalg.norm(np.cross(s0, q), axis=1)


def _column(kind, values, dtype):
    """One column as DIALS stores it: type name, row count, little-endian bytes of the rows."""
    values = np.ascontiguousarray(values, dtype=np.dtype(dtype).newbyteorder("<"))
    return [kind, [int(values.shape[0]), values.tobytes()]]


def _image_columns(refl, image, number, config):
    """The reflection-table arrays of one image (experiment ``number``)."""
    hkl = np.asarray(refl["hkl"], dtype=np.int32)
    n = len(hkl)
    q = hkl.astype(float) @ _a_matrix(image).T
    s1 = np.column_stack([refl["s1x"], refl["s1y"], refl["s1z"]]) @ TO_DIALS.T
    xyz = np.column_stack([refl["XDET"], refl["YDET"], np.zeros(n)])
    return {"miller_index": hkl, "id": np.full(n, number, dtype=np.int32), "I": refl["I"],
            "var": np.asarray(refl["SIGI"], dtype=float) ** 2, "bg": refl["background_estimate"],
            "xyz": xyz, "xyzmm": xyz * [config.pixel_size, config.pixel_size, 0.0], "s1": s1,
            "d": 1.0 / np.linalg.norm(q, axis=1), "delpsi": delta_psi(q, config.wavelength)}


def reflection_table(reflections, images, config):
    """The msgpack bytes of the reflection table of simulated images.

    Parameters
    ----------
    reflections : list of dict
        Per image the arrays ``hkl``, ``I``, ``SIGI``, ``background_estimate``,
        ``XDET``, ``YDET``, ``s1x``, ``s1y``, ``s1z``.
    images : list of dict
        Per image its truth (``image``, ``A00`` ... ``A22``).
    config : SimulationConfig

    Returns
    -------
    bytes
    """
    parts = [_image_columns(r, im, number, config) for number, (r, im) in enumerate(zip(reflections, images))]
    c = {key: np.concatenate([p[key] for p in parts]) for key in parts[0]}
    n = len(c["id"])
    data = {
        "miller_index": _column("cctbx::miller::index<>", c["miller_index"], np.int32),
        "id": _column("int", c["id"], np.int32),
        "panel": _column("std::size_t", np.zeros(n), np.uint64),
        "flags": _column("std::size_t", np.full(n, FLAGS), np.uint64),
        "intensity.sum.value": _column("double", c["I"], np.float64),
        "intensity.sum.variance": _column("double", c["var"], np.float64),
        "background.sum.value": _column("double", c["bg"], np.float64),
        "xyzcal.px": _column("vec3<double>", c["xyz"], np.float64),
        "xyzobs.px.value": _column("vec3<double>", c["xyz"], np.float64),
        "xyzcal.mm": _column("vec3<double>", c["xyzmm"], np.float64),
        "s1": _column("vec3<double>", c["s1"], np.float64),
        "d": _column("double", c["d"], np.float64),
        "entering": _column("bool", np.zeros(n), np.bool_),
        "delpsical.rad": _column("double", c["delpsi"], np.float64),
    }
    ids = {number: identifier(config.seed, int(image["image"])) for number, image in enumerate(images)}
    return msgpack.packb(["dials::af::reflection_table", 1, {"identifiers": ids, "nrows": n, "data": data}])


class DialsWriter:
    """Write blocks of simulated images as DIALS pairs in a folder, one pair per block.

    Each block becomes ``<folder>/<prefix>_<first BATCH>.expt`` and ``.refl``,
    each written to a hidden temporary name and renamed (so a program
    following the folder never sees half a file); the ``.refl`` is renamed
    last, so a pair is complete once its ``.refl`` is there.

    Parameters
    ----------
    folder : str
        Created if missing.
    prefix : str
    spacegroup : gemmi.SpaceGroup
    config : SimulationConfig
    """

    def __init__(self, folder, prefix, spacegroup, config):
        self.folder, self.prefix = str(folder), str(prefix)
        self.spacegroup, self.config = spacegroup, config
        self.pairs = []
        os.makedirs(self.folder, exist_ok=True)

    def write_block(self, block):
        """Write an :class:`~careless_online.simulate.images.ImageBlock` as one pair; returns its ``.refl`` path."""
        stem = os.path.join(self.folder, f"{self.prefix}_{int(block.images[0]['BATCH']):06d}")
        with atomic_path(stem + ".expt") as tmp, open(tmp, "w", encoding="utf-8") as handle:
            json.dump(experiment_list(block.images, self.spacegroup, self.config), handle, indent=1)
        table = reflection_table(block.reflections, block.images, self.config)
        with atomic_path(stem + ".refl") as tmp, open(tmp, "wb") as handle:
            handle.write(table)
        self.pairs.append(stem + ".refl")
        return stem + ".refl"
