"""Pictures: every plot writes a PNG of the expected size; the levels the feature-map
viewer shows have the U-Net's shapes."""
import matplotlib.image
import numpy as np
import pytest

import minunet
from minunet import data, losses, plots


@pytest.fixture(scope="module")
def model_and_data():
    images, masks = data.phantom.generate(3, size=32, seed=0)
    return minunet.UNet(depth=2, base_filters=4, seed=0), images, masks


def test_features_are_every_level_with_its_shape(model_and_data):
    model, images, _ = model_and_data
    feats = model.features(images)
    assert list(feats) == ["enc1", "enc2", "bridge", "dec2", "dec1", "head"]
    assert [v.shape for v in feats.values()] == [(3, 32, 32, 4), (3, 16, 16, 8), (3, 8, 8, 16), (3, 16, 16, 8),
                                                 (3, 32, 32, 4), (3, 32, 32, 2)]
    np.testing.assert_array_equal(feats["head"], model.forward(images))


def test_every_picture_is_written(model_and_data, tmp_path):
    model, images, masks = model_and_data
    _, dlogits = losses.softmax_cross_entropy(model.forward(images), masks)
    model.backward(dlogits)
    paths = [plots.architecture(model, 32, tmp_path / "a.png"),
             plots.curves({"loss": [1.0, 0.5], "val_loss": [1.1, 0.6], "val_dice": [0.2, 0.6]}, tmp_path / "c.png"),
             plots.overlays(images, masks, masks, tmp_path / "o.png", n=3),
             plots.feature_maps(model, images[0], tmp_path / "f.png"),
             plots.gradient_norms(model, tmp_path / "g.png"),
             plots.phantom_grid(images, masks, tmp_path / "p.png", cols=3)]
    for p in paths:
        picture = matplotlib.image.imread(p)
        assert picture.ndim == 3 and min(picture.shape[:2]) > 100, p
        assert picture[..., :3].std() > 0.01, p          # not a blank canvas
