"""Keras .h5 files: read the fixtures written by real Keras 3 and tf.keras, write files
that Keras reads, refuse what minunet cannot express. No TensorFlow needed, except in the
last test, which runs only where it is installed."""
import json
import shutil
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest

import minunet
from minunet import keras_h5
from minunet.cli import main

FIXTURES = Path(__file__).parent / "fixtures" / "keras"
MODELS = ["seed", "unet_d2", "unet_d2_dropout", "unet_d2_skip_first", "unet_d3_3class"]
CASES = [f"{m}_{k}" for m in MODELS for k in ("k3", "k2")]


@pytest.mark.filterwarnings("ignore:.*is the identity at inference")
@pytest.mark.parametrize("name", CASES)
def test_imported_models_predict_what_keras_predicted(name):
    model = minunet.load(FIXTURES / f"{name}.h5")          # minunet.load recognizes a Keras file
    ref = np.load(FIXTURES / f"{name}.npz")
    np.testing.assert_allclose(model.predict(ref["x"]), ref["y"], atol=1e-5, rtol=0)


def test_what_the_fixtures_hold():
    seed = keras_h5.load(FIXTURES / "seed_k3.h5")
    assert seed.config | {"seed": None} == dict(in_channels=1, n_classes=1, depth=1, base_filters=64, upsampling="nearest",
                                                head="sigmoid", dtype="float32", seed=None)
    assert seed.n_params == 406_657                        # the seed's simplified model, as Keras counts it
    deep = keras_h5.load(FIXTURES / "unet_d3_3class_k2.h5")
    assert (deep.config["depth"], deep.config["base_filters"], deep.config["n_classes"], deep.config["upsampling"]) == (3, 4, 3, "transpose")
    with h5py.File(FIXTURES / "unet_d2_k3.h5") as f:      # the facts the reader relies on
        cfg = json.loads(f.attrs["model_config"])
        t = next(l for l in cfg["config"]["layers"] if l["class_name"] == "Conv2DTranspose")
        name = t["config"]["name"]
        assert f["model_weights"][name][f"{name}/kernel"].shape == (2, 2, t["config"]["filters"], 2 * t["config"]["filters"])


def test_dropout_is_accepted_with_a_warning():
    with pytest.warns(UserWarning, match=r"layer 'dropout' \(Dropout\) is the identity at inference"):
        keras_h5.load(FIXTURES / "unet_d2_dropout_k3.h5")


@pytest.mark.parametrize("name", ["seed_k3", "unet_d2_k2", "unet_d3_3class_k3", "unet_d2_skip_first_k3"])
def test_export_then_import_is_exact(name, tmp_path):
    model = keras_h5.load(FIXTURES / f"{name}.h5")
    keras_h5.save(model, tmp_path / "out.h5")
    back = keras_h5.load(tmp_path / "out.h5")
    assert back.config == model.config
    for k in model.params:
        np.testing.assert_array_equal(back.params[k], model.params[k])
    x = np.load(FIXTURES / f"{name}.npz")["x"]
    np.testing.assert_array_equal(back.predict(x), model.predict(x))


def test_minunet_trained_model_exports(tmp_path):
    model = minunet.UNet(depth=2, base_filters=3, upsampling="transpose", seed=5)
    keras_h5.save(model, tmp_path / "k.h5")
    with h5py.File(tmp_path / "k.h5") as f:
        cfg = json.loads(f.attrs["model_config"])
        kinds = [l["class_name"] for l in cfg["config"]["layers"]]
        assert kinds.count("Conv2D") == 11 and kinds.count("Conv2DTranspose") == 2 and "groups" not in json.dumps(cfg)
    back = keras_h5.load(tmp_path / "k.h5")
    for k in model.params:
        np.testing.assert_array_equal(back.params[k], model.params[k])


def test_weights_only_file_with_a_matching_unet():
    model = keras_h5.load_weights(minunet.UNet(depth=2, base_filters=4), FIXTURES / "unet_d2_k3.weights.h5")
    ref = np.load(FIXTURES / "unet_d2_k3.npz")
    np.testing.assert_allclose(model.predict(ref["x"]), ref["y"], atol=1e-5)
    with pytest.raises(keras_h5.KerasImportError, match="11 conv2d layers, the UNet has 15"):
        keras_h5.load_weights(minunet.UNet(depth=3, base_filters=4), FIXTURES / "unet_d2_k3.weights.h5")
    with pytest.raises(keras_h5.KerasImportError, match="no model_config attribute"):
        keras_h5.load(FIXTURES / "unet_d2_k3.weights.h5")


def _edited(tmp_path, edit):
    """A copy of the Keras 2 fixture with its model_config changed by ``edit(layers)``."""
    path = tmp_path / "edited.h5"
    shutil.copy(FIXTURES / "unet_d2_k2.h5", path)
    with h5py.File(path, "a") as f:
        cfg = json.loads(f.attrs["model_config"])
        edit(cfg["config"]["layers"])
        f.attrs["model_config"] = json.dumps(cfg)
    return path


def _insert_batchnorm(layers):
    conv = next(l for l in layers if l["class_name"] == "Conv2D")
    bn = {"class_name": "BatchNormalization", "name": "batch_normalization",
          "config": {"name": "batch_normalization", "axis": -1}, "inbound_nodes": [[[conv["name"], 0, 0, {}]]]}
    for l in layers:
        for node in l["inbound_nodes"]:
            for entry in node:
                if entry[0] == conv["name"]:
                    entry[0] = "batch_normalization"
    layers.insert(layers.index(conv) + 1, bn)


def _set(cls, key, value):
    def edit(layers):
        next(l for l in layers if l["class_name"] == cls)["config"][key] = value
    return edit


@pytest.mark.parametrize("edit, message", [
    (_insert_batchnorm, r"layer 'batch_normalization' \(BatchNormalization\) stands where the U-Net has a Conv2D"),
    (_set("Conv2D", "padding", "valid"), r"\(Conv2D\) has padding 'valid'; the U-Net uses 'same'"),
    (_set("MaxPooling2D", "pool_size", [3, 3]), r"\(MaxPooling2D\) pools \[3, 3\]"),
    (_set("Conv2DTranspose", "strides", [1, 1]), r"\(Conv2DTranspose\) is not a linear 2x2, stride-2"),
    (_set("Conv2D", "activation", "tanh"), r"has activation 'tanh'; the U-Net's convolutions use ReLU"),
])
def test_what_minunet_cannot_express_is_refused_by_name(tmp_path, edit, message):
    with pytest.raises(keras_h5.KerasImportError, match=message) as e:
        keras_h5.load(_edited(tmp_path, edit))
    assert "\n" not in str(e.value)


def test_cli_summary_predict_and_convert_on_keras_files(tmp_path, capsys):
    keras_file = FIXTURES / "unet_d2_k3.h5"
    assert main(["summary", str(keras_file), "--size", "16"]) == 0
    assert "Total params" in capsys.readouterr().out
    assert main(["convert", str(keras_file), str(tmp_path / "m.h5")]) == 0
    assert minunet.model.load(tmp_path / "m.h5").n_params == keras_h5.load(keras_file).n_params
    assert main(["convert", str(tmp_path / "m.h5"), str(tmp_path / "back.h5")]) == 0
    assert keras_h5.is_keras_file(tmp_path / "back.h5")
    np.save(tmp_path / "x.npy", np.load(FIXTURES / "unet_d2_k3.npz")["x"][0, ..., 0])
    assert main(["predict", "--model", str(keras_file), str(tmp_path / "x.npy"), "--out", str(tmp_path / "p")]) == 0
    assert np.load(tmp_path / "p" / "x_mask.npy").shape == (16, 16)


_KERAS_CHECK = """
import sys, numpy as np
x = np.load(sys.argv[3])["x"]
if sys.argv[1] == "tf_keras":
    import tf_keras as keras
else:
    import keras
y = keras.models.load_model(sys.argv[2], compile=False).predict(x, verbose=0)
np.save(sys.argv[4], y)
"""


@pytest.mark.parametrize("flavour", ["keras", "tf_keras"])
def test_keras_loads_minunet_exports(flavour, tmp_path):
    pytest.importorskip("tensorflow")
    pytest.importorskip(flavour)
    model = keras_h5.load(FIXTURES / "unet_d3_3class_k3.h5")
    keras_h5.save(model, tmp_path / "m.h5")
    script = tmp_path / "check.py"
    script.write_text(_KERAS_CHECK)
    subprocess.run([sys.executable, str(script), flavour, str(tmp_path / "m.h5"),
                    str(FIXTURES / "unet_d3_3class_k3.npz"), str(tmp_path / "y.npy")], check=True, capture_output=True)
    x = np.load(FIXTURES / "unet_d3_3class_k3.npz")["x"]
    np.testing.assert_allclose(np.load(tmp_path / "y.npy"), model.predict(x), atol=1e-5)
