"""Splits, shuffled mini-batches and on-the-fly augmentation.

Augmentation draws one random transform per slice and applies it to the image
and to the mask through the same sampling grid: bilinear for the image, nearest
for the mask, so the mask stays binary and aligned. All slices of a batch are
warped at once (vectorized gathers), with no loop over slices or pixels.
"""
import numpy as np


def split(n, val=0.1, test=0.1, seed=0):
    """Shuffled index arrays (train, val, test) for n slices."""
    if not 0 <= val < 1 or not 0 <= test < 1 or val + test >= 1:
        raise ValueError(f"split fractions must be in [0, 1) and sum below 1, received val={val}, test={test}")
    order = np.random.default_rng(seed).permutation(n)
    n_val, n_test = int(round(n * val)), int(round(n * test))
    return order[n_val + n_test :], order[:n_val], order[n_val : n_val + n_test]


def folds(n, k, seed=0):
    """K-fold cross-validation: k (train, test) index-array pairs; the n slices are
    shuffled once and dealt into k folds whose sizes differ by at most one."""
    if not 2 <= k <= n:
        raise ValueError(f"cross-validation needs 2 <= k <= {n} (the number of slices), received k={k}")
    order = np.random.default_rng(seed).permutation(n)
    parts = np.array_split(order, k)
    return [(np.concatenate(parts[:i] + parts[i + 1 :]), part) for i, part in enumerate(parts)]


def batches(images, masks, batch_size=8, shuffle=True, seed=0, epoch=0, augment=None):
    """Yield (x, y) mini-batches; the last, partial batch is kept. The order (and the
    augmentation) depends only on (seed, epoch), so a resumed run sees the same batches."""
    if len(images) != len(masks):
        raise ValueError(f"batches: {len(images)} images but {len(masks)} masks")
    rng = np.random.default_rng([seed, epoch])
    order = rng.permutation(len(images)) if shuffle else np.arange(len(images))
    for start in range(0, len(order), batch_size):
        idx = order[start : start + batch_size]
        x, y = images[idx], masks[idx]
        if augment is not None:
            x, y = augment(x, y, rng)
        yield x, y


class Augment:
    """Random flips, rotations, scalings, intensity jitter and (optionally) elastic
    deformation, the same geometry for image and mask.

    ``flip``: probability of a left-right flip. ``rotate``: max degrees. ``scale``:
    max relative zoom. ``intensity``: std of a random gain and offset (images are
    z-scored). ``elastic``: displacement amplitude in pixels (0 = off)."""

    def __init__(self, flip=0.5, rotate=10.0, scale=0.1, intensity=0.1, elastic=0.0):
        self.flip, self.rotate, self.scale = flip, rotate, scale
        self.intensity, self.elastic = intensity, elastic

    def __call__(self, images, masks, rng):
        n, h, w = masks.shape
        # inverse map: output pixel (r, c) samples input at  centre + A (r - centre, c - centre)
        angle = np.deg2rad(rng.uniform(-self.rotate, self.rotate, n))
        zoom = np.exp(rng.uniform(-np.log1p(self.scale), np.log1p(self.scale), n))
        flip = np.where(rng.random(n) < self.flip, -1.0, 1.0)
        cos, sin = np.cos(angle) / zoom, np.sin(angle) / zoom
        r, c = np.mgrid[0:h, 0:w].astype(np.float32)
        r, c = r - (h - 1) / 2, c - (w - 1) / 2
        rows = cos[:, None, None] * r - sin[:, None, None] * c * flip[:, None, None] + (h - 1) / 2
        cols = sin[:, None, None] * r + cos[:, None, None] * c * flip[:, None, None] + (w - 1) / 2
        if self.elastic:
            rows = rows + self.elastic * _smooth_field(rng, n, h, w)
            cols = cols + self.elastic * _smooth_field(rng, n, h, w)
        x = _bilinear(images[..., 0], rows, cols)[..., None]
        y = _nearest(masks, rows, cols)
        if self.intensity:
            gain = 1 + self.intensity * rng.standard_normal((n, 1, 1, 1))
            x = x * gain + self.intensity * rng.standard_normal((n, 1, 1, 1))
        return x.astype(np.float32), y


def _smooth_field(rng, n, h, w, cells=6):
    """Random displacement in [-1, 1]-ish units, bilinear from a coarse (cells x cells) grid."""
    coarse = rng.uniform(-1, 1, (n, cells, cells)).astype(np.float32)
    rows = np.linspace(0, cells - 1, h, dtype=np.float32)[None, :, None] * np.ones((1, 1, w), np.float32)
    cols = np.linspace(0, cells - 1, w, dtype=np.float32)[None, None, :] * np.ones((1, h, 1), np.float32)
    return _bilinear(coarse, np.broadcast_to(rows, (n, h, w)), np.broadcast_to(cols, (n, h, w)))


def _bilinear(a, rows, cols):
    """Sample a (n, H, W) at fractional (rows, cols) (n, h, w); edges repeat outward."""
    n, H, W = a.shape
    r0 = np.clip(np.floor(rows), 0, H - 1).astype(np.intp)
    c0 = np.clip(np.floor(cols), 0, W - 1).astype(np.intp)
    r1, c1 = np.minimum(r0 + 1, H - 1), np.minimum(c0 + 1, W - 1)
    fr = np.clip(rows - r0, 0, 1)
    fc = np.clip(cols - c0, 0, 1)
    i = np.arange(n)[:, None, None]
    top = a[i, r0, c0] * (1 - fc) + a[i, r0, c1] * fc
    bottom = a[i, r1, c0] * (1 - fc) + a[i, r1, c1] * fc
    return top * (1 - fr) + bottom * fr


def _nearest(a, rows, cols):
    """Sample a (n, H, W) at the nearest pixel; outside the image reads 0 (background)."""
    n, H, W = a.shape
    r, c = np.round(rows).astype(np.intp), np.round(cols).astype(np.intp)
    inside = (r >= 0) & (r < H) & (c >= 0) & (c < W)
    i = np.arange(n)[:, None, None]
    return np.where(inside, a[i, r.clip(0, H - 1), c.clip(0, W - 1)], 0).astype(a.dtype)
