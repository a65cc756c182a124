"""A synthetic sagittal lumbar-spine MRI slice with intervertebral-disc masks.

The embedded default data set: everything in minunet runs on a fresh machine
without a download. Each slice is drawn the way a sagittal T2-weighted lumbar
scan looks, patient facing left, and its statistics are checked against real
slices (``benchmarks/phantom_vs_real.py``):

* a narrow column, about a tenth of the field wide, of 5 to 9 nearly square
  vertebral bodies (textured marrow, darker cortex and endplates) from the lower
  thoracic spine down to the sacrum, along a smoothly curved lordotic centre line
  with random curvature, tilt, scale and position. The sacrum tilts back, so the
  last disc, L5-S1, is tilted and wedge-shaped (taller in front);
* an intervertebral disc between each pair of bodies, thin at the top and thicker
  lower down: a lens with an annulus and a nucleus. Most slices have dark,
  dehydrated discs, darker than the bodies, as in the real scans; one in six is
  young, with bright nuclei, so a model learns both;
* 15 % of the slices are cut off the midline: only the lowest 3 or 4 levels, and
  no bright canal;
* behind the bodies the CSF canal with the cord ending at the conus, the
  articular processes with dark clefts between them level with the discs, the
  spinous processes, the back muscles, bright subcutaneous fat and air; in front,
  psoas, vessels and bowel loops over a textured abdomen, and dark, flat,
  near-horizontal bands on both sides: the real slices' look-alikes of discs;
* the acquisition: a slight point-spread blur, a receive-coil falloff away from
  the back, a smooth multiplicative bias field, Rician noise at a random SNR, and
  a random gamma.

Coordinates are fractions of the field of view (y down, x to the back), so any
``size`` draws the same kind of anatomy, and 256 matches the real slices (the random
draws, and so each slice, differ between sizes). Work is vectorized over a chunk of
slices; Python loops run over structures (bodies, discs, bands), never pixels.
"""
import numpy as np

from .preprocess import normalize

CHUNK = 16                      # slices drawn together; slice i depends only on (seed, i)
MAX_BODIES = 9                  # bodies in view, the sacrum last; one more is cut by the top edge
LABELS = {"background": 0, "disc": 1, "vertebra": 2, "canal": 3}
OUTLINE_MARGIN = 0.003          # disc labels reach this far (fraction of the field) past the painted disc


def generate(n, size=128, seed=0, labels="disc"):
    """``n`` phantom slices: images (n, size, size, 1) float32, normalized (percentile
    clip, z-score), and masks (n, size, size) uint8: 1 = disc, or with
    ``labels="multiclass"`` 0 background, 1 disc, 2 vertebral body, 3 spinal canal."""
    if labels not in ("disc", "multiclass"):
        raise ValueError(f"phantom labels must be 'disc' or 'multiclass', received {labels!r}")
    if int(n) < 0 or int(size) < 16:
        raise ValueError(f"phantom needs n >= 0 and size >= 16, received n={n}, size={size}")
    n, size = int(n), int(size)
    images = np.empty((n, size, size, 1), np.float32)
    masks = np.empty((n, size, size), np.uint8)
    for start in range(0, n, CHUNK):
        rng = np.random.default_rng([seed, start // CHUNK])
        img, lab = _draw_chunk(rng, CHUNK, size)
        stop = min(start + CHUNK, n)
        images[start:stop, ..., 0] = img[: stop - start]
        lab = lab[: stop - start]
        masks[start:stop] = lab if labels == "multiclass" else (lab == LABELS["disc"])
    images[..., 0] = normalize(images[..., 0])
    return images, masks


# --------------------------------------------------------------------- helpers
def _u(rng, lo, hi, b):
    """b uniform draws, shaped (b, 1, 1) to broadcast over an image."""
    return rng.uniform(lo, hi, b).astype(np.float32)[:, None, None]


def _gaussian_filter(images, sigma_y, sigma_x):
    """Separable Gaussian filter of (b, H, W) with periodic edges; sigmas in pixels, scalars
    or per image (b, 1, 1). A sum of shifted copies: 2 (2 * 3 sigma + 1) passes, cheaper here than an FFT."""
    out = images
    for axis, sigma in ((1, sigma_y), (2, sigma_x)):
        sigma = np.asarray(sigma, np.float32)
        radius = max(int(np.ceil(3 * sigma.max())), 1)
        taps = np.exp(-0.5 * (np.arange(-radius, radius + 1, dtype=np.float32).reshape(-1, *[1] * max(sigma.ndim, 1)) / sigma) ** 2)
        taps /= taps.sum(axis=0)                               # (2r + 1, b or 1, 1, 1)
        padded = np.concatenate([out.take(range(-radius, 0), axis), out, out.take(range(radius), axis)], axis)
        n = out.shape[axis]
        acc = np.zeros_like(out)
        for i, w in enumerate(taps):
            acc += w * (padded[:, i : i + n] if axis == 1 else padded[:, :, i : i + n])
        out = acc
    return out


def _smooth_noise(rng, b, size, sigma_y, sigma_x=None):
    """Zero-mean, unit-std Gaussian random fields (b, size, size) with correlation lengths
    sigma_y, sigma_x (fractions of the field of view)."""
    white = rng.standard_normal((b, size, size), np.float32)
    field = _gaussian_filter(white, sigma_y * size, (sigma_y if sigma_x is None else sigma_x) * size)
    field -= field.mean(axis=(1, 2), keepdims=True)
    return field / (field.std(axis=(1, 2), keepdims=True) + 1e-12)


def _bias_field(rng, b, size, strength):
    """A smooth multiplicative field exp(strength * g): g = W C W^T interpolates a random
    4x4 grid C bilinearly, W being the (size, 4) linear-interpolation matrix."""
    pos = np.clip((np.arange(size) + 0.5) * 4 / size - 0.5, 0, 3)
    lo = np.minimum(np.floor(pos).astype(int), 2)
    w = np.zeros((size, 4), np.float32)
    w[np.arange(size), lo] = 1 - (pos - lo)
    w[np.arange(size), lo + 1] = pos - lo
    coarse = rng.standard_normal((b, 4, 4)).astype(np.float32)
    return np.exp(strength * (w @ coarse @ w.T))


def _soft(signed, edge):
    """Soft membership from a signed distance (negative inside): a one-pixel ramp, so
    edges are anti-aliased and partial-volume pixels get blended intensities."""
    out = signed * (-1 / edge)                 # one new array, then in place: 0.5 - signed / edge
    out += 0.5
    return np.clip(out, 0.0, 1.0, out=out)


def _superellipse(u, v, a, b, square=0.0):
    """Approximate signed distance (in units of the smaller half-axis) to an ellipse with
    half-axes a, b (square=0), a squircle |u/a|^4 + |v/b|^4 = 1 (square=1), or a blend."""
    uu = u / a
    uu *= uu                                   # (u/a)^2, in place: few full-size temporaries
    vv = v / b
    vv *= vv
    r = np.sqrt(uu + vv)
    if np.any(square):
        uu *= uu
        vv *= vv
        uu += vv
        np.sqrt(np.sqrt(uu, out=uu), out=uu)   # ((u/a)^4 + (v/b)^4)^(1/4)
        r *= 1 - square
        uu *= square
        r += uu
    r -= 1.0
    r *= np.minimum(a, b)
    return r


def _local(y, x, cy, cx, theta):
    """Coordinates along (u) and across (v, positive towards the back) an axis at angle theta."""
    c, s = np.cos(theta), np.sin(theta)
    dy, dx = y - cy, x - cx
    return dy * c + dx * s, -dy * s + dx * c


def _paint(image, alpha, value):
    """Painter's algorithm with soft edges: image <- image (1 - alpha) + value alpha."""
    image += alpha * (value - image)


# ----------------------------------------------------------------- the anatomy
def _draw_chunk(rng, b, size):
    """b slices: tissue intensities in [0, ~1] after acquisition, and multiclass labels."""
    chunk = _Chunk(rng, b, size)
    chunk.front()
    chunk.back()
    bodies = chunk.vertebrae()
    chunk.clutter()
    chunk.discs(bodies)
    return chunk.acquire(), chunk.labels


class _Chunk:
    """The anatomy of b slices, painted back to front. Arrays of per-slice values are
    (b,) or (b, 1, 1); images are (b, size, size). The random draws happen in a fixed
    order, so a seed always gives the same slices."""

    def __init__(self, rng, b, size):
        self.rng, self.b, self.size = rng, b, size
        grid = ((np.arange(size) + 0.5) / size).astype(np.float32)
        self.y, self.x = grid[None, :, None], grid[None, None, :]      # (1, size, 1), (1, 1, size)
        self.edge = np.float32(1.5 / size)                             # soft-edge width: 1.5 pixels

        # the column: how many bodies, how big, where, how curved. The real slices show 5 to 9
        # discs from the lower thoracic spine down to L5-S1 in a band a tenth of the field wide
        self.k = rng.choice([5, 6, 7, 8, 9], b, p=[0.05, 0.2, 0.35, 0.25, 0.15])   # bodies in view, the sacrum last
        self.ratio = rng.uniform(0.42, 0.58, b)                         # disc / body height
        first = rng.uniform(-0.02, 0.14, b)                            # top endplate of body 1
        span = rng.uniform(0.7, 0.84, b) - first                       # down to the sacrum's top
        k = self.k
        self.height = span / (k - 1 + (k - 1) * self.ratio + 0.03 * k * (k - 1) / 2)   # body 1's height
        self.top = first - self.height * (1 + self.ratio)              # body 0, cut by the top edge
        self.coverage = 1.1 - self.top                                 # the column runs off the bottom
        self.x_mid = rng.uniform(0.42, 0.56, b)
        self.tilt = rng.uniform(-0.12, 0.12, b)
        self.lordosis = rng.uniform(0.03, 0.1, b)
        self.width = self.height * rng.uniform(0.95, 1.3, b)           # antero-posterior depth of a body
        # off-midline (para-sagittal) cuts: only the lowest 3 or 4 levels, no bright canal
        self.lateral = rng.random(b) < 0.15
        self.first_level = np.where(self.lateral, self.k - rng.choice([3, 4], b), 0)
        self.xc_row, self.theta_row = self.centre(np.broadcast_to(grid, (b, size)).astype(np.float64))
        self.v_row = ((self.x - self.xc_row) * np.cos(self.theta_row)).astype(np.float32)   # across the centre line
        self.half_width = (self.width / 2).astype(np.float32)[:, None, None]

        # tissue values, drawn per slice (T2-like, with the spread real scans have)
        self.marrow = _u(rng, 0.35, 0.65, b)
        self.csf = _u(rng, 0.35, 0.85, b) * np.where(self.lateral, 0.45, 1.0)[:, None, None]   # foramina off midline
        self.fat = _u(rng, 0.6, 0.95, b)
        self.muscle = _u(rng, 0.1, 0.22, b)
        abdomen = _u(rng, 0.1, 0.35, b)
        # slice-level tendency, discs vary around it: mostly dark, dehydrated discs as in the real
        # slices, and one slice in six young, with bright, healthy discs
        self.degeneration = np.where(rng.random(b) < 1 / 6, rng.beta(1.0, 3.0, b), rng.beta(3.5, 1.0, b))
        self.soft_texture = _smooth_noise(rng, b, size, 0.02) + 0.3 * _smooth_noise(rng, b, size, 0.004)          # abdomen in front, fat behind: never overlap
        self.image = abdomen * np.clip(1 + 0.5 * self.soft_texture, 0.1, None)
        self.labels = np.zeros((b, size, size), np.uint8)

    def centre(self, yy):
        """x of the centre line at heights yy (b, ...), and its angle from vertical; for
        yy of shape (b, size) the results come as (b, size, 1), one value per image row."""
        shape = (self.b,) + (1,) * (yy.ndim - 1)
        top, cov, xm, tilt, lo = (a.reshape(shape) for a in (self.top, self.coverage, self.x_mid, self.tilt, self.lordosis))
        t = np.clip(yy - top, 0, cov) / cov
        xc = xm + tilt * (yy - 0.5) - lo * np.sin(np.pi * t)
        slope = tilt - lo * np.pi / cov * np.cos(np.pi * t) * ((yy > top) & (yy < top + cov))
        theta = np.arctan(slope)
        return (xc[..., None], theta[..., None]) if yy.ndim == 2 else (xc, theta)

    def front(self):
        """In front of the spine: bowel loops, the psoas and the great vessels."""
        rng, b, y, x, edge, image = self.rng, self.b, self.y, self.x, self.edge, self.image
        front = self.v_row + self.half_width                           # < 0 in front of the bodies
        for _ in range(10):
            cy, cx = _u(rng, -0.05, 1.05, b), (self.x_mid[:, None, None] - _u(rng, 0.14, 0.6, b)).astype(np.float32)
            turn = _u(rng, 0, np.pi, b)
            u, v = _local(y, x, cy, cx, turn)
            d = _superellipse(u, v, _u(rng, 0.02, 0.08, b), _u(rng, 0.012, 0.04, b))
            loop = _soft(d, edge) * _soft(front + 0.02, edge)
            content = rng.choice([0.02, 0.12, 0.3, 0.6, 0.9], b).astype(np.float32)[:, None, None]
            _paint(image, loop, content * _u(rng, 0.6, 1.1, b))
            _paint(image, _soft(np.abs(d) - 0.003, edge) * loop, 0.03)                   # bowel wall
        psoas = _soft(np.abs(front + 0.06) - 0.035, 4 * edge) * _soft(y - self.top[:, None, None] - 0.35, 8 * edge)
        _paint(image, psoas * (rng.random(b) < 0.6)[:, None, None], self.muscle * 1.3)
        vessel_w = _u(rng, 0.02, 0.04, b)
        vessel = _soft(np.abs(front + _u(rng, 0.004, 0.012, b) + vessel_w / 2) - vessel_w / 2, edge)
        _paint(image, vessel * (rng.random(b) < 0.8)[:, None, None], _u(rng, 0.03, 0.45, b))

    def back(self):
        """Behind the spine: the canal with the cord, back muscles, fat, skin and air."""
        rng, b, y, edge, image, v_row = self.rng, self.b, self.y, self.edge, self.image, self.v_row
        self.canal_w = _u(rng, 0.02, 0.04, b)
        self.v_canal = self.half_width + _u(rng, 0.006, 0.016, b) + self.canal_w / 2
        self.v_post = self.v_canal + self.canal_w / 2                   # back wall of the canal
        # the back's skin runs nearly straight down, whatever the lordosis, at least 0.12 behind the canal
        wiggle = np.cumsum(rng.standard_normal((b, self.size, 1), np.float32), axis=1) / self.size**0.5
        skin_x = _u(rng, 0.72, 0.86, b) + _u(rng, -0.06, 0.06, b) * (y - 0.5) + 0.01 * (wiggle - wiggle.mean(1, keepdims=True))
        self.skin = np.maximum((skin_x - self.xc_row) * np.cos(self.theta_row), self.v_post + 0.12).astype(np.float32)
        fat_w = _u(rng, 0.025, 0.07, b)
        back = _soft(self.v_post + 0.01 - v_row, edge)
        stripes = np.clip(1 + 0.35 * _smooth_noise(rng, b, self.size, 0.025, 0.006), 0.2, None)
        _paint(image, back, self.muscle * stripes)
        septa = _soft(np.abs(stripes - 1) - 0.03, 0.05) * back                           # fatty septa
        _paint(image, septa * _soft(self.v_post + 0.05 - v_row, edge), self.fat * 0.6)
        _paint(image, _soft(np.abs(v_row - (self.skin - fat_w / 2)) - fat_w / 2, edge), self.fat * (1 + 0.08 * self.soft_texture))
        _paint(image, _soft(np.abs(v_row - (self.skin - fat_w)) - 0.003, edge), self.muscle * 0.4)   # fascia
        image *= _soft(v_row - self.skin, edge)                                          # air behind the skin
        canal = _soft(np.abs(v_row - self.v_canal) - self.canal_w / 2, edge)
        _paint(image, canal, self.csf)
        conus = self.top[:, None, None] + _u(rng, 0.05, 0.35, b)       # the cord ends here
        cord = _soft(np.abs(v_row - self.v_canal) - self.canal_w * 0.25, edge) * _soft(y - conus, 3 * edge)
        _paint(image, cord, self.csf * _u(rng, 0.3, 0.5, b))
        self.labels[canal > 0.5] = LABELS["canal"]

    def vertebrae(self):
        """Body 0 (cut by the top edge), then bodies 1..k, the last the sacrum: tilted back,
        larger; each with its posterior elements. Returns (centre y, x, angle, height) per body."""
        rng, b, y, x, edge, image = self.rng, self.b, self.y, self.x, self.edge, self.image
        n_drawn = self.k + 1
        bodies, squareness = [], _u(rng, 0.7, 1.0, b)
        y_cursor = self.top.copy()
        self.disc_scale = np.clip(self.degeneration[:, None] + rng.normal(0, 0.25, (b, MAX_BODIES + 2)), 0, 1)   # per disc
        # discs thicken down the spine (thoracic discs are thin); L5-S1, a wedge, is thinner on average
        level = np.arange(MAX_BODIES + 2)[None, :]
        k = self.k[:, None]
        by_level = np.where(level == k - 1, 0.85, 0.7 + 0.5 * np.minimum(level / (k - 1), 1))
        thick = (self.height * self.ratio)[:, None] * by_level * (1 - 0.3 * self.disc_scale) * rng.uniform(0.85, 1.15, (b, MAX_BODIES + 2))
        behind = (self.v_row - self.v_post).astype(np.float32)         # distance behind the canal
        texture = np.clip(1 + _u(rng, 0.05, 0.14, b) * _smooth_noise(rng, b, self.size, 0.005), 0.3, None)
        for j in range(MAX_BODIES + 1):
            present = ((j < n_drawn) & (j >= self.first_level))[:, None, None]
            sacrum = j == n_drawn - 1
            grow = (1 + 0.03 * max(j - 1, 0)) * np.where(sacrum, 1.5, 1.0)   # lower bodies are larger
            h = self.height * grow
            cy = y_cursor + h / 2
            cx, theta = self.centre(cy)
            theta = theta + sacrum * rng.uniform(0.35, 0.7, b) + rng.normal(0, 0.03, b)   # S1 tilts back
            bodies.append((cy, cx, theta, h))
            cy3, cx3, th3 = (a.astype(np.float32)[:, None, None] for a in (cy, cx, theta))
            u, v = _local(y, x, cy3, cx3, th3)
            hh, ww = (h / 2).astype(np.float32)[:, None, None], (self.width * grow / 2).astype(np.float32)[:, None, None]
            waist = 1 - 0.07 * (1 - np.minimum((u / hh) ** 2, 1))       # concave front and back
            d = _superellipse(u, v / waist, hh, ww, squareness)
            body = _soft(d, edge) * present
            _paint(image, body, self.marrow * texture)
            _paint(image, _soft(np.abs(d + 0.005) - 0.003, edge) * body, self.marrow * 0.4)   # cortex, endplates
            # behind the canal: the articular processes, grey blocks with a dark cortex, level with
            # the body; the joints and ligaments between them are dark horizontal clefts, level with
            # the discs, that look like discs but are not
            facet_w = _u(rng, 0.02, 0.045, b)
            d_facet = np.maximum(np.abs(y - cy3 - 0.15 * hh) - hh * _u(rng, 0.6, 0.85, b), np.abs(behind - 0.004 - facet_w / 2) - facet_w / 2)
            facet = _soft(d_facet, edge) * present
            _paint(image, facet, self.marrow * _u(rng, 0.4, 1.0, b))
            _paint(image, _soft(np.abs(d_facet + 0.004) - 0.0025, edge) * facet, self.marrow * 0.3)
            cleft_y = cy3 + hh + (thick[:, j] / 2).astype(np.float32)[:, None, None]
            cleft_t = (thick[:, j] / 2).astype(np.float32)[:, None, None] * _u(rng, 0.5, 1.1, b)
            cleft = _soft(np.maximum(np.abs(y - cleft_y) - cleft_t, np.abs(behind - 0.004 - facet_w * 0.6) - facet_w * 0.6), edge)
            _paint(image, cleft * present * (rng.random(b) < 0.7)[:, None, None], self.marrow * _u(rng, 0.05, 0.35, b))
            # the lamina and spinous process further back
            us, vs = _local(y, x, cy3 + 0.3 * hh, cx3 + ww * 0.9, th3 + 0.35)
            spine = _soft(_superellipse(us, vs - 0.1, hh * 0.45, _u(rng, 0.07, 0.12, b)), edge)
            spine *= _soft(self.v_post + facet_w + 0.004 - self.v_row, edge) * present
            _paint(image, spine, self.marrow * _u(rng, 0.3, 0.7, b))
            self.labels[(body > 0.5) & (self.labels != LABELS["canal"])] = LABELS["vertebra"]
            y_cursor = y_cursor + h + thick[:, j]
        return bodies

    def clutter(self, n=12):
        """Dark, flat, roughly horizontal bands in front of the spine (bowel wall, gas, psoas
        septa) and behind it (ligaments, fat planes): the real slices are full of them."""
        rng, b, y, x, edge, image = self.rng, self.b, self.y, self.x, self.edge, self.image
        front = _soft(self.v_row + self.half_width + 0.015, edge)        # in front of the bodies
        back = _soft(self.v_post + 0.01 - self.v_row, edge)               # behind the canal
        for i in range(n):
            in_back = i % 2 == 1
            cy = _u(rng, 0.0, 1.0, b)
            xc, _ = self.centre(cy[:, 0, 0].astype(np.float64))
            side = _u(rng, 0.05, 0.3, b) * (1 if in_back else -1)
            u, v = _local(y, x, cy, (xc[:, None, None] + side).astype(np.float32), np.float32(np.pi / 2) + _u(rng, -0.3, 0.3, b))
            d = _superellipse(u, v, _u(rng, 0.02, 0.07, b), _u(rng, 0.005, 0.015, b), 0.5)
            band = _soft(d, edge) * (back if in_back else front)
            _paint(image, band * (rng.random(b) < 0.8)[:, None, None], _u(rng, 0.0, 0.12, b))

    def discs(self, bodies):
        """A disc between each two bodies: a lens (annulus) with a nucleus, from healthy
        (large bright nucleus) to degenerated (thin, dark, bulging back). L5-S1 is a wedge."""
        rng, b, y, x, edge, image = self.rng, self.b, self.y, self.x, self.edge, self.image
        for j in range(MAX_BODIES):                                     # disc j lies between bodies j and j + 1
            present = ((j < self.k) & (j >= self.first_level))[:, None, None]
            (cy0, _, t0, h0), (cy1, _, t1, h1) = bodies[j], bodies[j + 1]
            low, high = cy0 + h0 / 2, cy1 - h1 / 2                      # facing endplates
            cy = (low + high) / 2
            cx, _ = self.centre(cy)
            theta = (t0 + t1) / 2                                      # parallel to both endplates
            dg = self.disc_scale[:, j].astype(np.float32)[:, None, None]
            half_t = ((high - low) / 2 + 0.004).astype(np.float32)[:, None, None]   # reaches both endplates
            half_w = (self.width * (1 + 0.03 * j) / 2).astype(np.float32)[:, None, None] * (1.0 + 0.06 * dg)
            u, v = _local(y, x, cy.astype(np.float32)[:, None, None], cx.astype(np.float32)[:, None, None],
                          theta.astype(np.float32)[:, None, None])
            lowest = (j == self.k - 1)[:, None, None]
            slope = np.where(lowest, _u(rng, 0.35, 0.65, b), _u(rng, 0.0, 0.3, b))
            wedge = 1 - slope * np.clip(v / half_w, -1, 1)               # thicker at the front
            bulge = 1 + 0.12 * dg * (v > 0)                              # degenerated discs bulge back
            d = _superellipse(u / wedge, v / bulge, half_t, half_w, 0.5)
            canal_side = _soft(self.v_row - (self.v_canal - self.canal_w / 2), edge) * present   # discs stop at the canal
            disc = _soft(d, edge) * canal_side
            annulus = self.marrow * (_u(rng, 0.03, 0.25, b) + 0.3 * (1 - dg))   # dark when degenerated
            nucleus = _u(rng, 0.6, 1.0, b) * (1 - dg) ** 2 + annulus * 1.1 * dg   # bright only when healthy
            _paint(image, disc, annulus)
            core = 0.55 + 0.25 * (1 - dg)                                 # healthy: a large, bright nucleus
            nuc = _soft(_superellipse(u / wedge, v - 0.1 * half_w, half_t * core, half_w * core), edge) * disc
            _paint(image, nuc, nucleus)
            # the label reaches a little past the painted disc, as the real slices' hand-drawn outlines do
            self.labels[(d < OUTLINE_MARGIN) & (canal_side > 0.5)] = LABELS["disc"]

    def acquire(self):
        """The scanner: point-spread blur, surface-coil falloff and bias field, Rician noise, gamma."""
        rng, b, size = self.rng, self.b, self.size
        image = _gaussian_filter(self.image, *[_u(rng, 0.15, 0.45, b) * size / 128] * 2)
        coil = np.exp(-_u(rng, 0.8, 2.5, b) * np.clip(self.skin - self.v_row, 0, None))   # the coil is at the back
        image *= coil * _bias_field(rng, b, size, 0.15)
        sigma = _u(rng, 0.004, 0.02, b)                                # Rician noise, SNR ~ 20 to 150
        image = np.hypot(image + sigma * rng.standard_normal(image.shape, np.float32),
                         sigma * rng.standard_normal(image.shape, np.float32))
        image = image ** _u(rng, 0.8, 1.25, b)
        return image.astype(np.float32)
