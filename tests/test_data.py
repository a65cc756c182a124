"""Data: the phantom's anatomy, loaders round-trip through real files, bad data, augmentation."""
import matplotlib.image
import numpy as np
import pytest

from minunet import data
from minunet.data import DataError, phantom


@pytest.fixture(scope="module")
def multiclass():
    return phantom.generate(32, size=128, seed=7, labels="multiclass")


def test_phantom_shapes_dtypes_and_ranges(multiclass):
    images, labels = multiclass
    assert images.shape == (32, 128, 128, 1) and images.dtype == np.float32
    assert labels.shape == (32, 128, 128) and labels.dtype == np.uint8
    assert np.all(np.isfinite(images))
    np.testing.assert_allclose(images.mean(axis=(1, 2, 3)), 0, atol=1e-4)       # z-scored per slice
    np.testing.assert_allclose(images.std(axis=(1, 2, 3)), 1, rtol=1e-3)
    assert set(np.unique(labels)) == {0, 1, 2, 3}
    disc_share = (labels == 1).mean(axis=(1, 2))
    assert np.all(disc_share > 0.005) and np.all(disc_share < 0.08)             # discs are small, never absent
    _, masks = phantom.generate(4, size=64, seed=7)
    assert set(np.unique(masks)) == {0, 1} and masks.shape == (4, 64, 64)


def test_phantom_is_deterministic_per_seed():
    a, ma = phantom.generate(20, seed=3)
    b, mb = phantom.generate(20, seed=3)
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(ma, mb)
    c, _ = phantom.generate(5, seed=3)                 # slice i depends only on (seed, i)
    np.testing.assert_array_equal(a[:5], c)
    d, _ = phantom.generate(5, seed=4)
    assert not np.allclose(a[:5], d)


def test_every_disc_lies_between_two_bodies_inside_the_image(multiclass):
    _, labels = multiclass
    n, h, w = labels.shape
    reach = h // 8                                     # a body within an eighth of the image, above and below
    vertebra = labels == 2
    for shift in range(1, w // 32 + 1):                # a few pixels sideways: discs bulge past the bodies
        vertebra[:, :, shift:] |= labels[:, :, :-shift] == 2
        vertebra[:, :, :-shift] |= labels[:, :, shift:] == 2
    above = np.zeros_like(vertebra)
    below = np.zeros_like(vertebra)
    for shift in range(1, reach + 1):                  # loop over shifts, not pixels
        above[:, shift:] |= vertebra[:, :-shift]
        below[:, :-shift] |= vertebra[:, shift:]
    above[:, :reach] = True                            # or the top edge, which may cut the body above
    disc = labels == 1
    between = (disc & above & below).sum(axis=(1, 2)) / disc.sum(axis=(1, 2))
    assert np.all(between > 0.97), between.min()
    border = np.zeros((h, w), bool)
    border[-1, :] = border[:, [0, -1]] = True           # the top edge may cut a thoracic disc, as in real slices
    assert not (disc & border).any()
    # discs are dark or bright: contrast varies, as in real scans
    images, _ = phantom.generate(64, seed=11, labels="multiclass")
    _, lab = phantom.generate(64, seed=11, labels="multiclass")
    ratio = np.array([images[i, ..., 0][lab[i] == 1].mean() - images[i, ..., 0][lab[i] == 2].mean() for i in range(64)])
    assert (ratio < 0).mean() > 0.5 and (ratio > 0).any()      # mostly darker than the bodies, some brighter


@pytest.fixture(scope="module")
def native():
    """Phantom slices at the real slices' 256 px."""
    return phantom.generate(32, size=256, seed=5, labels="multiclass")


def _disc_rows(disc):
    """Discs per slice: runs of image rows holding disc pixels (bodies separate the discs)."""
    rows = disc.any(axis=2)                                        # (n, H)
    return (rows[:, 1:] & ~rows[:, :-1]).sum(axis=1) + rows[:, 0]


def test_phantom_at_256_covers_the_real_slices_statistics(native):
    # the 9 mid-sagittal real slices (benchmarks/phantom_vs_real.py): disc z -0.25 +- 0.11, disc pixels
    # 2.1 +- 0.5 %, bodies 20 +- 4 px wide, 5 to 8 discs; off-midline slices 3 or 4 discs
    images, labels = native
    assert images.shape == (32, 256, 256, 1)
    z, disc, body = images[..., 0], labels == 1, labels == 2
    share = 100 * disc.mean(axis=(1, 2))
    assert 1.3 < share.mean() < 2.6 and share.min() > 0.5, share
    width = np.array([np.median(r[r > 0]) for r in body.sum(axis=2)])
    assert 16 < np.median(width) < 26 and width.max() < 40, width
    count = _disc_rows(disc)
    assert count.min() <= 4 and count.max() >= 8 and np.median(count) >= 6, count
    disc_z = np.array([z[i][disc[i]].mean() for i in range(len(z))])
    assert -0.35 < np.median(disc_z) < 0.0, disc_z                 # mostly dark, as the real discs
    assert disc_z.max() > 0.3                                      # and some bright, healthy ones
    body_z = np.array([z[i][body[i]].mean() for i in range(len(z))])
    assert np.all(body_z > disc_z - 0.2) and np.median(body_z - disc_z) > 0.5


def test_lowest_disc_is_a_tilted_wedge(native):
    _, labels = native
    wedge, tilt = [], []
    for lab in labels:                                             # a loop over slices, to read one disc of each
        disc = lab == 1
        rows = disc.any(axis=1)
        starts = np.flatnonzero(rows[1:] & ~rows[:-1]) + 1
        low = disc.copy()
        low[: starts[-1]] = False                                   # the lowest run of disc rows: L5-S1
        yy, xx = np.nonzero(low)
        cols = low.sum(axis=0)
        front, back = cols[xx.min() : int(xx.mean())], cols[int(xx.mean()) + 1 : xx.max() + 1]
        wedge.append(front.mean() / back.mean())                   # taller in front (left) than behind
        cov = np.cov(np.stack([yy, xx]).astype(float))
        major = np.linalg.eigh(cov)[1][:, -1]
        tilt.append(np.degrees(np.arctan2(abs(major[0]), abs(major[1]))))   # from horizontal
    wedge, tilt = np.array(wedge), np.array(tilt)
    assert (wedge > 1.1).mean() > 0.8, wedge
    assert np.median(tilt) > 15, tilt


def test_phantom_rejects_bad_arguments():
    with pytest.raises(ValueError, match="labels must be 'disc' or 'multiclass'"):
        phantom.generate(2, labels="vertebra")
    with pytest.raises(ValueError, match="size >= 16"):
        phantom.generate(2, size=8)


# ------------------------------------------------------------------- loaders
def _pair(seed, shape=(40, 48)):
    rng = np.random.default_rng(seed)
    image = rng.uniform(0, 255, shape).astype(np.float32)
    mask = (rng.random(shape) < 0.2).astype(np.uint8)
    return image, mask


def test_load_npz_folder_like_the_real_slices(tmp_path):
    pairs = [_pair(i) for i in range(3)]
    for i, (image, mask) in enumerate(pairs):
        np.savez(tmp_path / f"case_{i:02d}.npz", image=image, mask=mask)
    images, masks = data.load(tmp_path)
    assert images.shape == (3, 40, 48, 1) and masks.dtype == np.uint8
    np.testing.assert_array_equal(masks, np.stack([m for _, m in pairs]))
    np.testing.assert_allclose(images[..., 0], data.normalize(np.stack([im for im, _ in pairs])), rtol=1e-5, atol=1e-5)
    images, masks = data.load(tmp_path, size=32)
    assert images.shape == (3, 32, 32, 1) and set(np.unique(masks)) <= {0, 1}


def test_load_png_pairs_and_npy_subfolders(tmp_path):
    image, mask = _pair(0)
    matplotlib.image.imsave(tmp_path / "a.png", image, cmap="gray", vmin=0, vmax=255)
    matplotlib.image.imsave(tmp_path / "a_mask.png", mask, cmap="gray", vmin=0, vmax=255)
    images, masks = data.load(tmp_path)
    np.testing.assert_array_equal(masks[0], mask)
    assert np.corrcoef(images[0, ..., 0].ravel(), image.ravel())[0, 1] > 0.999
    npy = tmp_path / "npy"
    (npy / "images").mkdir(parents=True)
    (npy / "masks").mkdir()
    np.save(npy / "images" / "s1.npy", image)
    np.save(npy / "masks" / "s1.npy", mask * 2)
    _, masks = data.load(npy, label_map={0: 0, 2: 1})
    np.testing.assert_array_equal(masks[0], mask)


def test_h5_roundtrip_and_phantom_file(tmp_path):
    images, masks = phantom.generate(5, size=64, seed=1)
    data.save_h5(tmp_path / "d.h5", images, masks, seed=1)
    back_images, back_masks = data.load(tmp_path / "d.h5")
    np.testing.assert_array_equal(back_masks, masks)
    np.testing.assert_allclose(back_images, images, atol=0.02)       # normalized again: the clip moves a little


def test_real_spine_slices_load_through_the_same_path():
    folder = data.real_spine_folder()
    if folder is None:
        pytest.skip("../shared/data/real-spine is not beside this checkout")
    images, masks = data.load(folder, size=128)
    assert images.shape == (12, 128, 128, 1) and masks.shape == (12, 128, 128)
    assert set(np.unique(masks)) == {0, 1} and 0.002 < masks.mean() < 0.05


@pytest.mark.parametrize("suffix", [".nii.gz", ".mha"])
def test_volumes_cut_into_oriented_sagittal_slices(tmp_path, suffix):
    SimpleITK = pytest.importorskip("SimpleITK")
    # numpy (z, y, x) = (superior-inferior, anterior-posterior, left-right); identity direction (LPS)
    rng = np.random.default_rng(0)
    volume = rng.uniform(0, 100, (20, 24, 6)).astype(np.float32)
    labels = np.zeros((20, 24, 6), np.int16)
    labels[14:16, 5:12, 2:4] = 203        # a disc high up (large z = superior), anterior (small y)
    labels[3:9, 5:12, 2:4] = 2            # a vertebra (mapped to background)
    for a, name in ((volume, "img"), (labels, "lab")):
        SimpleITK.WriteImage(SimpleITK.GetImageFromArray(a), str(tmp_path / f"{name}{suffix}"))
    images, masks = data.load_volume(tmp_path / f"img{suffix}", tmp_path / f"lab{suffix}",
                                     {**data.SPIDER_DISCS, "rest": 0}, size=32)
    assert images.shape == (2, 32, 32, 1) and masks.shape == (2, 32, 32)     # only the slices with a disc
    rows, cols = np.nonzero(masks[0])
    assert rows.max() < 16 and cols.max() < 16       # superior on top, anterior on the left
    with pytest.raises(DataError, match=r"labels \[2, 203\] are not in the label map"):
        data.load_volume(tmp_path / f"img{suffix}", tmp_path / f"lab{suffix}", {0: 0})


# ------------------------------------------------------------------ bad data
def test_bad_data_errors_name_the_file(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="empty: no image files"):
        data.load(tmp_path / "empty")
    with pytest.raises(DataError, match="nowhere: no such file or folder"):
        data.load(tmp_path / "nowhere")
    bad = tmp_path / "bad"
    bad.mkdir()
    image, mask = _pair(0)
    np.savez(bad / "x.npz", image=image, mask=mask[:-1])
    with pytest.raises(DataError, match=r"x.npz: image shape \(40, 48\) and mask shape \(39, 48\) differ"):
        data.load(bad)
    image[3, 3] = np.nan
    np.savez(bad / "x.npz", image=image, mask=mask)
    with pytest.raises(DataError, match="x.npz: image has NaN"):
        data.load(bad)
    np.savez(bad / "x.npz", image=_pair(0)[0], mask=mask * 3)
    with pytest.raises(DataError, match=r"x.npz: mask labels \[3\] are not in the label map"):
        data.load(bad)
    (bad / "x.npz").write_bytes(b"not a zip file")
    with pytest.raises(DataError, match="x.npz: unreadable"):
        data.load(bad)
    (tmp_path / "d.h5").write_bytes(b"\x89HDF\r\n\x1a\n garbage")
    with pytest.raises(DataError, match="d.h5: not a readable HDF5 file"):
        data.load(tmp_path / "d.h5")
    lonely = tmp_path / "lonely"
    lonely.mkdir()
    np.save(lonely / "a.npy", image)
    with pytest.raises(DataError, match="a.npy: no mask a_mask"):
        data.load(lonely)


# ----------------------------------------------------- batching, augmentation
def test_batches_keep_the_last_partial_batch_and_are_seeded():
    images, masks = np.arange(19, dtype=np.float32)[:, None, None, None] * np.ones((1, 4, 4, 1), np.float32), np.zeros((19, 4, 4), np.uint8)
    got = list(data.batches(images, masks, batch_size=8, seed=1, epoch=2))
    assert [len(x) for x, _ in got] == [8, 8, 3]
    seen = np.concatenate([x[:, 0, 0, 0] for x, _ in got])
    assert sorted(seen) == list(range(19)) and list(seen) != list(range(19))
    again = np.concatenate([x[:, 0, 0, 0] for x, _ in data.batches(images, masks, 8, seed=1, epoch=2)])
    other = np.concatenate([x[:, 0, 0, 0] for x, _ in data.batches(images, masks, 8, seed=1, epoch=3)])
    np.testing.assert_array_equal(seen, again)
    assert list(seen) != list(other)
    train, val, test = data.split(100, val=0.1, test=0.2, seed=0)
    assert (len(train), len(val), len(test)) == (70, 10, 20)
    assert len(set(train) | set(val) | set(test)) == 100


def test_flip_moves_image_and_mask_together():
    images, masks = phantom.generate(4, size=64, seed=2)
    x, y = data.Augment(flip=1.0, rotate=0, scale=0, intensity=0)(images, masks, np.random.default_rng(0))
    np.testing.assert_allclose(x, images[:, :, ::-1], atol=1e-5)
    np.testing.assert_array_equal(y, masks[:, :, ::-1])


def test_augmentation_keeps_masks_binary_and_aligned():
    rng = np.random.default_rng(0)
    _, masks = phantom.generate(8, size=64, seed=5)
    images = masks[..., None].astype(np.float32)          # image == mask: any misalignment shows
    aug = data.Augment(flip=0.5, rotate=15, scale=0.15, intensity=0, elastic=0.03)
    x, y = aug(images, masks, rng)
    assert y.dtype == np.uint8 and set(np.unique(y)) <= {0, 1}
    pred = x[..., 0] > 0.5
    iou = (pred & (y == 1)).sum() / (pred | (y == 1)).sum()
    assert iou > 0.85, iou
    assert not np.array_equal(y, masks)                   # something did move
    x2, _ = data.Augment(flip=0, rotate=0, scale=0, intensity=0.5)(images, masks, rng)
    assert not np.allclose(x2, images)
