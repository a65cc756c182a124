"""MaxPool2D and UpSampling2D: resampling layers without parameters.

MaxPool2D, window p, stride s, Keras's 'valid' floor rule: Ho = (H - p) // s + 1::

    y[n, h, w, c] = max_{i, j < p} x[n, s*h + i, s*w + j, c]
    dx[n, s*h + i*, s*w + j*, c] += dy[n, h, w, c]    at the arg-max (i*, j*) only

Ties: the gradient goes to ONE arg-max, the first in row-major order within the
window (top-left first), never split among equal values. MRI backgrounds are full
of equal zeros, and a split would leak gradient into every one of them. The last
offset of the window needs no comparison: it holds the maximum wherever no earlier
one does (a window with a NaN, whose maximum is NaN, sends dy to its last pixel).

UpSampling2D, nearest, factor s: y[n, h, w, c] = x[n, h // s, w // s, c], so dx
sums dy over each s x s block.
"""
from ..backend import get_array_module
from . import layout
from .base import Layer
from .conv import _pair
from .engine import strided


def _window_slices(window, stride, ho, wo):
    """For each offset (i, j) inside a window, row-major, the strided slice of the larger
    array that offset meets across all Ho x Wo windows: rows i, i + s, ..., likewise columns."""
    (ph, pw), (sh, sw) = window, stride
    return [(slice(None), strided(i, ho, sh), strided(j, wo, sw)) for i in range(ph) for j in range(pw)]


class MaxPool2D(Layer):
    """Max pooling, NHWC; strides default to pool_size, as in Keras."""

    def __init__(self, pool_size=2, strides=None, name=None):
        super().__init__(name)
        self.pool_size = _pair(pool_size, "MaxPool2D pool_size")
        self.strides = _pair(self.pool_size if strides is None else strides, "MaxPool2D strides")

    def output_shape(self, input_shape):
        n, h, w, c = input_shape
        (ph, pw), (sh, sw) = self.pool_size, self.strides
        return (n, (h - ph) // sh + 1, (w - pw) // sw + 1, c)

    def forward(self, x):
        self._check_input(x, min_size=self.pool_size)
        xp = get_array_module(x)
        shape = self.output_shape(x.shape)
        windows = _window_slices(self.pool_size, self.strides, *shape[1:3])
        y = layout.empty(shape, x.dtype, xp)                      # (N, Ho, Wo, C)
        y[...] = x[windows[0]]
        for w in windows[1:]:
            xp.maximum(y, x[w], out=y)
        self._cache = (x, y)        # x is the previous layer's output, kept anyway
        return y

    def backward(self, dy):
        x, y = self._cache
        xp = get_array_module(dy)
        (ph, pw), (sh, sw) = self.pool_size, self.strides
        _, ho, wo, _ = dy.shape
        tiled = (sh, sw) == (ph, pw)        # windows side by side: each pixel in one window at most
        if tiled:                           # so dx is written once, window by window
            dx = layout.empty(x.shape, dy.dtype, xp)
            dx[:, ho * sh :] = 0            # rows and columns the floor rule leaves out
            dx[:, :, wo * sw :] = 0
        else:
            dx = layout.zeros(x.shape, dy.dtype, xp)
        taken = xp.zeros_like(y, dtype=bool)                     # window's arg-max already found
        first = xp.empty_like(y, dtype=bool)
        windows = _window_slices(self.pool_size, self.strides, ho, wo)
        for k, win in enumerate(windows):                       # row-major: the first maximum wins
            if k < len(windows) - 1:
                xp.equal(x[win], y, out=first)
                xp.greater(first, taken, out=first)             # a maximum, and none before it
                taken |= first
            else:                                               # the last offset: wherever none before was
                xp.logical_not(taken, out=first)                # the maximum, it is (no comparison)
            if tiled:
                xp.multiply(dy, first, out=dx[win])             # dy goes to the arg-max only
            else:
                dx[win] += dy * first
        return dx


class UpSampling2D(Layer):
    """Nearest-neighbour up-sampling by an integer factor: H -> H * size."""

    def __init__(self, size=2, name=None):
        super().__init__(name)
        self.size = _pair(size, "UpSampling2D size")

    def output_shape(self, input_shape):
        n, h, w, c = input_shape
        return (n, h * self.size[0], w * self.size[1], c)

    def forward(self, x):
        """y = x repeated s times along H and W."""
        self._check_input(x)
        xp = get_array_module(x)
        y = layout.empty(self.output_shape(x.shape), x.dtype, xp)
        for b in _window_slices(self.size, self.size, *x.shape[1:3]):
            y[b] = x
        return y

    def backward(self, dy):
        xp = get_array_module(dy)
        n, ho, wo, c = dy.shape
        sh, sw = self.size
        blocks = _window_slices(self.size, self.size, ho // sh, wo // sw)
        dx = layout.empty((n, ho // sh, wo // sw, c), dy.dtype, xp)
        dx[...] = dy[blocks[0]]
        for b in blocks[1:]:                                     # dx sums dy over each block
            dx += dy[b]
        return dx
