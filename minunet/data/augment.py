"""On-the-fly augmentation: random geometry for image and mask, random intensity for the image.

``Augment`` draws one random transform per slice and applies it to a whole batch at once,
images (N, H, W, C) and integer masks (N, H, W), with no loop over slices or pixels. It takes
its randomness only from the generator it is handed, so ``batches`` (which hands it one seeded
by (seed, epoch)) gives the same augmented batches on every run, and ``--resume`` replays them.

Geometry, one sampling grid for image and mask: bilinear for the image, nearest pixel for the
mask (labels stay in their set and dtype); outside the slice both repeat their edge, so they
agree there too.

    flip, rotate, scale   an affine map about the centre                  ``affine_grid``
    elastic               a smooth random displacement: a cubic B-spline   ``smooth_field``
                          through a coarse grid of random control values

Intensity, image only, in this order (each is identity at its neutral value):

    bias       a smooth multiplicative field (a bicubic polynomial),     ``bias_field``
               on the intensity above the slice's minimum (no signal)
    gamma      x -> x**g on the slice's [min, max], its mean and std kept  ``gamma``
    intensity  a random gain (contrast) and offset (brightness)          ``gain_offset``
    blur       Gaussian, separable, one sigma per slice                  ``blur``
    noise      Rician: the magnitude of signal plus complex Gaussian     ``rician_noise``
               noise, as in magnitude MR images

Named levels (``augment_preset``, table ``PRESETS``): "none", "light" (mild geometry and
contrast, the CLI's former ``--augment``), "strong" (all of the above).
"""
from dataclasses import dataclass, fields

import numpy as np

ELASTIC_POINTS = 7   # control values per side for elastic displacements: 4 spline spans across the slice
BIAS_POINTS = 4      # for the bias field: one span, so the field is a bicubic polynomial


@dataclass(frozen=True)
class Augment:
    """Random flips, rotations, scalings, elastic deformation (image and mask alike), and a
    random bias field, gamma, gain and offset, blur and noise (image only).

    Each parameter is the largest strength drawn; 0 turns the transform off.
    ``flip``: probability of a left-right flip. ``rotate``: max degrees. ``scale``: max relative
    zoom (zoom = exp(U(-log(1+scale), log(1+scale)))). ``intensity``: std of a random gain
    1 + N(0, intensity) and offset N(0, intensity) (images are z-scored). ``elastic``: max
    displacement, as a fraction of the slice's side. ``gamma``: max |log g|. ``bias``: max
    |log field| at the field's control points. ``blur``: max Gaussian sigma in pixels, drawn
    U(0, blur). ``noise``: max Rician noise sigma in image units (z-scored), drawn U(0, noise).

    ``augment(images, masks, rng) -> (images, masks)``, shapes and dtypes kept."""

    flip: float = 0.5
    rotate: float = 10.0
    scale: float = 0.1
    intensity: float = 0.1
    elastic: float = 0.0
    gamma: float = 0.0
    bias: float = 0.0
    blur: float = 0.0
    noise: float = 0.0

    def __post_init__(self):
        for f in fields(self):
            value = getattr(self, f.name)
            if not np.isfinite(value) or value < 0:
                raise ValueError(f"Augment: {f.name} must be a finite number >= 0, received {value!r}")
        if self.flip > 1:
            raise ValueError(f"Augment: flip is a probability in [0, 1], received {self.flip!r}")
        if self.elastic >= 0.5:
            raise ValueError(f"Augment: elastic is a fraction of the slice's side (try 0.02), "
                             f"received {self.elastic!r}")

    def __call__(self, images, masks, rng):
        images, masks = np.asarray(images), np.asarray(masks)
        if images.ndim != 4 or masks.shape != images.shape[:3]:
            raise ValueError(f"Augment: expected images (N, H, W, C) and masks (N, H, W), "
                             f"received {images.shape} and {masks.shape}")
        dtype = images.dtype if images.dtype.kind == "f" else np.dtype(np.float32)
        n, h, w = masks.shape
        # geometry: one inverse map (output pixel -> input position) per slice
        angle = np.deg2rad(rng.uniform(-self.rotate, self.rotate, n))
        zoom = np.exp(rng.uniform(-np.log1p(self.scale), np.log1p(self.scale), n))
        flip = rng.random(n) < self.flip
        rows, cols = affine_grid(h, w, angle, zoom, flip)
        if self.elastic:
            control = rng.uniform(-1, 1, (n, 2, ELASTIC_POINTS, ELASTIC_POINTS))
            displacement = smooth_field(control * (self.elastic * np.array([h, w]))[:, None, None], h, w)
            rows, cols = rows + displacement[:, 0], cols + displacement[:, 1]
        x, y = warp(images.astype(dtype, copy=False), masks, rows, cols)
        # intensity: the image only
        if self.bias:
            x = bias_field(x, smooth_field(rng.uniform(-self.bias, self.bias, (n, BIAS_POINTS, BIAS_POINTS)), h, w))
        if self.gamma:
            x = gamma(x, np.exp(rng.uniform(-self.gamma, self.gamma, n)))
        if self.intensity:
            x = gain_offset(x, 1 + self.intensity * rng.standard_normal(n), self.intensity * rng.standard_normal(n))
        if self.blur:
            x = blur(x, rng.uniform(0, self.blur, n))
        if self.noise:
            x = rician_noise(x, rng.uniform(0, self.noise, n), rng)
        return x, y


PRESETS = {
    "none": None,
    "light": Augment(flip=0.5, rotate=5.0, scale=0.05, intensity=0.1),
    "strong": Augment(flip=0.5, rotate=10.0, scale=0.1, intensity=0.1, elastic=0.025,
                      gamma=0.3, bias=0.3, blur=1.0, noise=0.1),
}


def augment_preset(name):
    """The augmentation of a named level, for ``batches(..., augment=)`` and ``fit(augment=)``:
    "none" -> None, "light" and "strong" -> an ``Augment`` (see ``PRESETS``)."""
    if name not in PRESETS:
        raise ValueError(f"unknown augmentation level {name!r}; choose one of {', '.join(PRESETS)}")
    return PRESETS[name]


# ------------------------------------------------------------------ geometry
def affine_grid(h, w, angle, zoom, flip):
    """Where each output pixel samples its input, (rows, cols), each (n, h, w): a rotation by
    ``angle`` (radians), a zoom and an optional left-right flip about the slice's centre."""
    angle, zoom = np.asarray(angle, np.float32), np.asarray(zoom, np.float32)
    mirror = np.where(flip, -1, 1).astype(np.float32)[:, None, None]
    cos, sin = (np.cos(angle) / zoom)[:, None, None], (np.sin(angle) / zoom)[:, None, None]
    r = np.arange(h, dtype=np.float32)[:, None] - (h - 1) / 2            # (h, 1)
    c = mirror * (np.arange(w, dtype=np.float32) - (w - 1) / 2)          # (n, 1, w)
    # inverse map: input = centre + R(angle) / zoom @ (output - centre), columns mirrored first
    return cos * r - sin * c + (h - 1) / 2, sin * r + cos * c + (w - 1) / 2


def spline_basis(size, points):
    """(size, points) weights of a uniform cubic B-spline with ``points`` control values, the
    first and last one spacing beyond the slice's edges: every row sums to 1, and a field built
    from them is smooth (twice continuously differentiable)."""
    spacing = max(size - 1, 1) / (points - 3)
    t = np.abs(np.arange(size)[:, None] / spacing - (np.arange(points) - 1))   # distance to each knot, in spacings
    return np.where(t < 1, (4 - 6 * t**2 + 3 * t**3) / 6, np.where(t < 2, (2 - t) ** 3 / 6, 0)).astype(np.float32)


def smooth_field(control, h, w):
    """A smooth field (..., h, w) from coarse control values (..., p, q): two matrix products
    with the B-spline weights; the field stays within the control values' range."""
    control = np.asarray(control, np.float32)
    return spline_basis(h, control.shape[-2]) @ control @ spline_basis(w, control.shape[-1]).T


def warp(images, masks, rows, cols):
    """Sample images (n, H, W, C) bilinearly and masks (n, H, W) at the nearest pixel, both at
    the positions (rows, cols) (n, h, w); beyond the edges both repeat the edge pixel."""
    n, H, W, C = images.shape
    rows = np.clip(rows, 0, H - 1)
    cols = np.clip(cols, 0, W - 1)
    base = (np.arange(n) * (H * W))[:, None, None]                       # first pixel of each slice, flat
    # mask: the nearest pixel (rint rounds halves to even)
    y = masks.reshape(-1)[base + np.rint(rows).astype(np.intp) * W + np.rint(cols).astype(np.intp)]
    # image: the four neighbours (r0, c0) (r0, c1) (r1, c0) (r1, c1), weighted by the distance
    r0f, c0f = np.floor(rows), np.floor(cols)                             # positions are >= 0
    r0, c0 = r0f.astype(np.intp), c0f.astype(np.intp)
    down = np.where(r0 < H - 1, W, 0)                                     # r1 - r0, in flat pixels
    right = np.where(c0 < W - 1, 1, 0)                                    # c1 - c0
    p00 = ((base + r0 * W + c0) * C)[..., None] + np.arange(C)            # flat indices, (n, h, w, C)
    p10 = p00 + down[..., None] * C
    fr = (rows - r0f).astype(images.dtype, copy=False)[..., None]        # (n, h, w, 1), exact in float32
    fc = (cols - c0f).astype(images.dtype, copy=False)[..., None]
    flat = images.reshape(-1)
    top, bottom = flat[p00], flat[p10]
    top += fc * (flat[p00 + right[..., None] * C] - top)                 # along the row: c0 -> c1
    bottom += fc * (flat[p10 + right[..., None] * C] - bottom)
    return top + fr * (bottom - top), y                                  # down the column: r0 -> r1


# ----------------------------------------------------------------- intensity
def _per_slice(values, x):
    """(n,) values as (n, 1, 1, 1) in x's dtype."""
    return np.asarray(values, x.dtype).reshape(-1, 1, 1, 1)


def bias_field(x, log_field):
    """Multiply the intensity above each slice's minimum (the signal; z-scored images have no
    zero) by exp(log_field), log_field (n, H, W): x -> min + (x - min) * exp(log_field)."""
    low = x.min(axis=(1, 2, 3), keepdims=True)
    return low + (x - low) * np.exp(np.asarray(log_field, x.dtype))[..., None]


def gamma(x, g):
    """x -> x**g per slice, on the slice's intensities scaled to [0, 1]; then the slice's
    mean and std are restored, so that only the shape of its histogram changes."""
    g = _per_slice(g, x)
    low, high = x.min(axis=(1, 2, 3), keepdims=True), x.max(axis=(1, 2, 3), keepdims=True)
    span = np.where(high > low, high - low, 1)
    out = ((x - low) / span) ** g * span + low
    mean, std = x.mean(axis=(1, 2, 3), keepdims=True), x.std(axis=(1, 2, 3), keepdims=True)
    out_mean, out_std = out.mean(axis=(1, 2, 3), keepdims=True), out.std(axis=(1, 2, 3), keepdims=True)
    return (out - out_mean) * (std / np.where(out_std > 0, out_std, 1)) + mean


def gain_offset(x, gain, offset):
    """x -> gain * x + offset, one gain (contrast) and offset (brightness) per slice."""
    return x * _per_slice(gain, x) + _per_slice(offset, x)


def blur(x, sigma):
    """Gaussian blur with one sigma (pixels) per slice: one 1-D pass down the rows, one along
    the columns, each a weighted sum of shifted copies (edges repeat); sigma 0 is identity."""
    sigma = np.asarray(sigma, np.float64)
    radius = int(np.ceil(3 * sigma.max())) if sigma.size else 0
    if radius == 0:
        return x
    taps = np.arange(-radius, radius + 1)
    kernel = np.exp(-0.5 * (taps / np.maximum(sigma, 1e-12)[:, None]) ** 2)   # (n, 2 radius + 1)
    kernel = (kernel / kernel.sum(axis=1, keepdims=True)).astype(x.dtype)
    return _convolve_axis(_convolve_axis(x, kernel, 1), kernel, 2)


def _convolve_axis(x, kernel, axis):
    """Convolve each slice of x (n, H, W, C) along ``axis`` with its symmetric kernel (n, taps)."""
    size, taps = x.shape[axis], kernel.shape[1]
    pad = [(0, 0)] * x.ndim
    pad[axis] = (taps // 2, taps // 2)
    padded = np.pad(x, pad, mode="edge")
    window = [slice(None)] * x.ndim
    out = np.zeros_like(x)
    for k in range(taps):                                                # a loop over kernel taps
        window[axis] = slice(k, k + size)                                # the copy shifted by k - taps // 2
        out += _per_slice(kernel[:, k], x) * padded[tuple(window)]
    return out


def rician_noise(x, sigma, rng):
    """The magnitude of (signal + complex Gaussian noise of std sigma per slice), the signal
    being the intensity above the slice's minimum: Gaussian-like where the signal is strong,
    Rayleigh (always positive) in the background, as in magnitude MR images."""
    sigma = _per_slice(sigma, x)
    low = x.min(axis=(1, 2, 3), keepdims=True)
    real = x - low + sigma * rng.standard_normal(x.shape, dtype=x.dtype)
    imaginary = sigma * rng.standard_normal(x.shape, dtype=x.dtype)
    return low + np.sqrt(real**2 + imaginary**2)
