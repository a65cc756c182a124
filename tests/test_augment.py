"""Augmentation: every geometric transform keeps image and mask aligned, every intensity
transform leaves the mask alone, neutral parameters give the identity, and the levels are
deterministic per (seed, epoch)."""
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from minunet import data
from minunet.data import PRESETS, Augment, augment_preset, phantom
from minunet.data.augment import (affine_grid, bias_field, blur, gain_offset, gamma, rician_noise, smooth_field,
                                  spline_basis, warp)

GEOMETRY_OFF = dict(flip=0, rotate=0, scale=0, intensity=0)


def _spine(size=128, n=4):
    """n label maps like a sagittal spine: 0 background, 1 disc (thin ellipses, 5 px tall at
    128), 2 vertebral body, 3 spinal canal, each slice tilted a little differently."""
    r, c = np.mgrid[:size, :size] / size                                  # (size, size), in [0, 1)
    tilt = np.linspace(-0.15, 0.15, n)[:, None, None]
    c = c[None] + tilt * (r[None] - 0.5)                                  # (n, size, size), a slanted column
    masks = np.zeros((n, size, size), np.uint8)
    masks[(np.abs(c - 0.62) < 0.04)] = 3                                 # canal, behind the column
    period = 0.16                                                         # one vertebra and one disc
    phase = (r[None] - 0.06) % period
    column = np.abs(c - 0.45) < 0.11
    masks[column & (phase < period - 0.04) & (r[None] < 0.94)] = 2
    masks[((c - 0.45) / 0.1) ** 2 + ((phase - (period - 0.02)) / 0.02) ** 2 < 1] = 1
    return masks


@pytest.fixture(scope="module")
def labelled():
    """Label maps (``_spine``) and images made from them: channel k is 2 * (label == k + 1)
    plus a smooth background in [0, 0.5], so thresholding channel k at 1.25 gives label k + 1
    back, and any misalignment after a warp shows."""
    masks = _spine()
    rng = np.random.default_rng(0)
    background = smooth_field(rng.uniform(0, 1, (4, 4, 4)), 128, 128)[..., None]
    images = (2 * (masks[..., None] == np.arange(1, 4)) + 0.5 * background).astype(np.float32)
    for label in (1, 2, 3):
        np.testing.assert_array_equal(_decode(images, label), masks == label)
    return images, masks


def _decode(images, label):
    return images[..., label - 1] > 1.25


def _dice(a, b):
    return 2 * (a & b).sum() / (a.sum() + b.sum())


@pytest.fixture(scope="module")
def slices():
    return phantom.generate(4, size=128, seed=11, labels="multiclass")


# ------------------------------------------------------------------ alignment
GEOMETRIC = {
    "flip": Augment(**{**GEOMETRY_OFF, "flip": 1.0}),
    "rotate": Augment(**{**GEOMETRY_OFF, "rotate": 20.0}),
    "scale": Augment(**{**GEOMETRY_OFF, "scale": 0.2}),
    "elastic": Augment(**{**GEOMETRY_OFF, "elastic": 0.03}),
    "strong geometry": Augment(flip=0.5, rotate=10, scale=0.1, intensity=0, elastic=0.025),
}


@given(name=st.sampled_from(sorted(GEOMETRIC)), seed=st.integers(0, 2**32 - 1))
def test_each_geometric_transform_keeps_image_and_mask_aligned(labelled, name, seed):
    images, masks = labelled
    x, y = GEOMETRIC[name](images, masks, np.random.default_rng(seed))
    assert x.shape == images.shape and x.dtype == images.dtype
    assert y.shape == masks.shape and y.dtype == masks.dtype and set(np.unique(y)) <= {0, 1, 2, 3}
    assert not np.array_equal(y, masks)                                   # something moved
    for label in (1, 2, 3):                                               # disc, body, canal
        # label pixels disagree only where bilinear and nearest part ways, on the outlines
        assert _dice(_decode(x, label), y == label) > 0.95, (name, label)


@given(n=st.integers(1, 3), h=st.integers(4, 40), w=st.integers(4, 40), channels=st.integers(1, 2),
       mask_dtype=st.sampled_from([np.uint8, np.int32, np.int64]), seed=st.integers(0, 2**32 - 1))
def test_strong_keeps_shapes_dtypes_and_labels_on_any_slice_shape(n, h, w, channels, mask_dtype, seed):
    rng = np.random.default_rng(seed)
    images = rng.standard_normal((n, h, w, channels)).astype(np.float32)
    masks = rng.integers(0, 3, (n, h, w)).astype(mask_dtype)
    x, y = augment_preset("strong")(images, masks, rng)
    assert x.shape == images.shape and x.dtype == np.float32 and np.all(np.isfinite(x))
    assert y.shape == masks.shape and y.dtype == mask_dtype and set(np.unique(y)) <= {0, 1, 2}


def test_flip_and_quarter_turn_are_exact(labelled):
    images, masks = labelled
    mirrored = np.ones(4, bool)
    rows, cols = affine_grid(128, 128, np.zeros(4), np.ones(4), mirrored)
    x, y = warp(images, masks, rows, cols)
    np.testing.assert_array_equal(x, images[:, :, ::-1])
    np.testing.assert_array_equal(y, masks[:, :, ::-1])
    rows, cols = affine_grid(128, 128, np.full(4, np.pi / 2), np.ones(4), ~mirrored)
    x, y = warp(images, masks, rows, cols)
    np.testing.assert_allclose(x, np.rot90(images, -1, axes=(1, 2)), atol=1e-4)   # clockwise as displayed
    np.testing.assert_array_equal(y, np.rot90(masks, -1, axes=(1, 2)))


def test_zoom_scales_the_labelled_area():
    r, c = np.mgrid[:128, :128]
    masks = ((r - 60) ** 2 / 30**2 + (c - 70) ** 2 / 20**2 < 1).astype(np.uint8)[None]   # an ellipse
    images = masks[..., None].astype(np.float32)
    for zoom in (0.8, 1.25):
        x, y = warp(images, masks, *affine_grid(128, 128, np.zeros(1), np.full(1, zoom), np.zeros(1, bool)))
        assert y.sum() / masks.sum() == pytest.approx(zoom**2, rel=0.02)
        assert x.sum() / images.sum() == pytest.approx(zoom**2, rel=0.01)


# ------------------------------------------------------------------ identity
def test_neutral_parameters_give_the_identity(labelled):
    images, masks = labelled
    x, y = Augment(**GEOMETRY_OFF)(images, masks, np.random.default_rng(0))
    np.testing.assert_array_equal(x, images)
    np.testing.assert_array_equal(y, masks)
    n = len(images)
    np.testing.assert_array_equal(bias_field(images, np.zeros((n, 128, 128))), images)
    np.testing.assert_allclose(gamma(images, np.ones(n)), images, atol=1e-5)
    np.testing.assert_array_equal(gain_offset(images, np.ones(n), np.zeros(n)), images)
    np.testing.assert_array_equal(blur(images, np.zeros(n)), images)
    np.testing.assert_allclose(rician_noise(images, np.zeros(n), np.random.default_rng(0)), images, atol=1e-6)
    np.testing.assert_array_equal(smooth_field(np.zeros((n, 2, 7, 7)), 128, 128), 0)


def test_none_level_is_no_augmentation():
    images, masks = phantom.generate(6, size=32, seed=1)
    assert augment_preset("none") is None
    order = np.random.default_rng([5, 2]).permutation(6)           # batches' shuffle for seed 5, epoch 2
    plain = [(images[order[i : i + 4]], masks[order[i : i + 4]]) for i in (0, 4)]
    got = list(data.batches(images, masks, 4, True, 5, 2, augment_preset("none")))
    assert len(got) == len(plain) == 2
    for (x, y), (x0, y0) in zip(got, plain):                        # the slices as they are, only shuffled
        np.testing.assert_array_equal(x, x0)
        np.testing.assert_array_equal(y, y0)
    light = next(data.batches(images, masks, 4, True, 5, 2, augment_preset("light")))
    assert not np.array_equal(light[0], plain[0][0])                # what an augmentation level changes


# ------------------------------------------------------------------ intensity
def test_intensity_transforms_leave_masks_alone_and_images_finite(slices):
    images, masks = slices
    for name in ("bias", "gamma", "intensity", "blur", "noise"):
        aug = Augment(**{**GEOMETRY_OFF, name: getattr(PRESETS["strong"], name)})
        x, y = aug(images, masks, np.random.default_rng(1))
        np.testing.assert_array_equal(y, masks)
        assert x.shape == images.shape and x.dtype == images.dtype and np.all(np.isfinite(x)), name
        assert np.abs(x - images).mean() > 0.01, name                    # it did change the image
    x, _ = PRESETS["strong"](images.astype(np.float64), masks, np.random.default_rng(1))
    assert x.dtype == np.float64


def test_blur_is_a_normalized_gaussian_per_slice():
    impulse = np.zeros((3, 41, 41, 1), np.float32)
    impulse[:, 20, 20] = 1
    out = blur(impulse, np.array([0.0, 1.0, 2.0]))
    np.testing.assert_array_equal(out[0], impulse[0])                     # sigma 0: untouched, beside blurred slices
    np.testing.assert_allclose(out.sum(axis=(1, 2, 3)), 1, rtol=1e-5)
    offset = np.arange(41) - 20
    for i, sigma in ((1, 1.0), (2, 2.0)):
        np.testing.assert_allclose(out[i, :, :, 0], out[i, :, :, 0].T, atol=1e-7)   # isotropic
        variance = (out[i, :, :, 0].sum(axis=1) * offset**2).sum()
        assert variance == pytest.approx(sigma**2, rel=0.04)            # truncated at 3 sigma: 2.7% short
    flat = np.full((2, 16, 16, 1), 3.0, np.float32)
    np.testing.assert_allclose(blur(flat, np.array([1.0, 0.5])), 3.0, rtol=1e-6)   # edges repeat: no dark rim


def test_gamma_keeps_order_mean_and_std(slices):
    images, _ = slices
    out = gamma(images, np.array([0.6, 0.8, 1.3, 1.6]))
    np.testing.assert_allclose(out.mean(axis=(1, 2, 3)), images.mean(axis=(1, 2, 3)), atol=1e-5)
    np.testing.assert_allclose(out.std(axis=(1, 2, 3)), images.std(axis=(1, 2, 3)), rtol=1e-5)
    for i in range(4):
        order = np.argsort(images[i].ravel(), kind="stable")
        assert np.all(np.diff(out[i].ravel()[order]) >= -1e-5)           # monotone: the ranking is kept
        assert not np.allclose(out[i], images[i], atol=1e-2)


def test_bias_field_multiplies_the_signal_by_a_smooth_bounded_field(slices):
    images, _ = slices
    basis = spline_basis(128, 4)
    np.testing.assert_allclose(basis.sum(axis=1), 1, rtol=1e-6)           # partition of unity
    control = np.random.default_rng(2).uniform(-0.3, 0.3, (4, 4, 4))
    log_field = smooth_field(control, 128, 128)
    assert np.abs(log_field).max() <= 0.3 + 1e-6                          # within the control values
    assert np.abs(np.diff(log_field, 2, axis=1)).max() < 1e-3            # smooth: tiny second differences
    out = bias_field(images, log_field)
    low = images.min(axis=(1, 2, 3), keepdims=True)
    signal = images - low > 0.1
    np.testing.assert_allclose(((out - low) / np.where(signal, images - low, 1))[signal],
                               np.exp(log_field)[..., None][signal], rtol=1e-5)


def test_rician_noise_statistics():
    signal = np.zeros((1, 200, 200, 1), np.float32)
    signal[:, :100] = 10.0                                                # bright half, dark half at the minimum
    out = rician_noise(signal - 2, np.array([0.5]), np.random.default_rng(3)) + 2
    bright, dark = out[0, :100], out[0, 100:]
    assert bright.mean() == pytest.approx(np.sqrt(10**2 + 0.5**2), abs=0.01)
    assert bright.std() == pytest.approx(0.5, rel=0.03)                   # Gaussian where the signal is strong
    assert dark.min() >= 0 and dark.mean() == pytest.approx(0.5 * np.sqrt(np.pi / 2), rel=0.02)   # Rayleigh


# ------------------------------------------------------------------ levels, determinism, errors
@pytest.mark.parametrize("level", ["light", "strong"])
def test_levels_are_deterministic_per_seed_and_epoch(level):
    images, masks = phantom.generate(10, size=64, seed=4, labels="multiclass")
    aug = augment_preset(level)

    def run(seed, epoch):
        return [(x.copy(), y.copy()) for x, y in data.batches(images, masks, 4, True, seed, epoch, aug)]

    first = run(7, 3)
    for (x, y), (x2, y2) in zip(first, run(7, 3)):                        # the resumed run's batches
        np.testing.assert_array_equal(x, x2)
        np.testing.assert_array_equal(y, y2)
        assert x.shape[1:] == images.shape[1:] and y.dtype == masks.dtype and set(np.unique(y)) <= {0, 1, 2, 3}
    assert not np.array_equal(first[0][0], run(7, 4)[0][0])
    assert not np.array_equal(first[0][0], run(8, 3)[0][0])


def test_presets_and_bad_parameters():
    assert list(PRESETS) == ["none", "light", "strong"]
    assert augment_preset("light") == Augment(flip=0.5, rotate=5, scale=0.05, intensity=0.1)   # the former --augment
    assert augment_preset("strong").elastic > 0 and augment_preset("strong").noise > 0
    with pytest.raises(ValueError, match="'medium'.*none, light, strong"):
        augment_preset("medium")
    with pytest.raises(ValueError, match="flip is a probability"):
        Augment(flip=1.5)
    with pytest.raises(ValueError, match="rotate must be a finite number >= 0, received -3"):
        Augment(rotate=-3)
    with pytest.raises(ValueError, match="elastic is a fraction"):
        Augment(elastic=4)
    with pytest.raises(ValueError, match=r"images \(N, H, W, C\) and masks \(N, H, W\)"):
        Augment()(np.zeros((2, 8, 8)), np.zeros((2, 8, 8), np.uint8), np.random.default_rng(0))
