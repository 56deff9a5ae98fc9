"""The scale networks see each observation's s^2 = (1/d^2)/max(1/d^2); older saved models keep their inputs."""

import json
import zipfile

import numpy as np
import tensorflow as tf

from careless_online.model.build import load_model
from careless_online.model.merging import MergingModel

INVERSE_D2 = np.array([0.01, 0.05, 0.10, 0.20], dtype=np.float32)


def _model(**options):
    return MergingModel(4, 2, d_model=4, inverse_d2=INVERSE_D2, **options)


def _batch():
    return {"refl_id": tf.constant([3, 0, 2, 1]), "meta": tf.constant(np.arange(8, dtype=np.float32).reshape(4, 2))}


def test_the_networks_get_s2_beside_the_metadata():
    model = _model()
    meta = model._scale_meta(_batch()).numpy()
    np.testing.assert_allclose(meta[:, :2], _batch()["meta"].numpy())
    np.testing.assert_allclose(meta[:, 2], INVERSE_D2[[3, 0, 2, 1]] / INVERSE_D2.max(), rtol=1e-6)
    assert model.encoder.resnet.d_in == 3 + 2 + 1 and model.scale_head.n_meta == 2 + 1


def test_without_the_feature_the_networks_get_the_metadata_alone():
    model = _model(resolution_feature=False)
    np.testing.assert_array_equal(model._scale_meta(_batch()).numpy(), _batch()["meta"].numpy())
    assert model.encoder.resnet.d_in == 3 + 2 and model.scale_head.n_meta == 2


def _without_key(path, key):
    with zipfile.ZipFile(path) as archive:
        members = {name: archive.read(name) for name in archive.namelist()}
    config = json.loads(members["config.json"])
    del config["config"][key]
    members["config.json"] = json.dumps(config).encode()
    with zipfile.ZipFile(path, "w") as archive:
        for name, blob in members.items():
            archive.writestr(name, blob)


def test_a_model_saved_before_the_feature_loads_with_its_own_inputs(tmp_path):
    """A model saved before s^2 existed (no key) loads, predicts as saved, and its networks keep their widths."""
    old = _model(resolution_feature=False)
    path = str(tmp_path / "old.keras")
    old.save(path)
    _without_key(path, "resolution_feature")
    loaded = load_model(path)
    assert loaded.resolution_feature is False and loaded.encoder.resnet.d_in == 3 + 2
    new = _model()
    new.save(str(tmp_path / "new.keras"))
    assert load_model(str(tmp_path / "new.keras")).resolution_feature is True
