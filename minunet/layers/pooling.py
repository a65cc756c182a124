"""MaxPool2D and UpSampling2D: resampling layers without parameters.

MaxPool2D, window p, stride s, Keras's 'valid' floor rule: Ho = (H - p) // s + 1::

    y[n, h, w, c] = max_{i, j < p} x[n, s*h + i, s*w + j, c]
    dx[n, s*h + i*, s*w + j*, c] += dy[n, h, w, c]    at the arg-max (i*, j*) only

Ties: the gradient goes to ONE arg-max, the first in row-major order within the
window (top-left first), never split among equal values. MRI backgrounds are full
of equal zeros, and a split would leak gradient into every one of them.

UpSampling2D, nearest, factor s: y[n, h, w, c] = x[n, h // s, w // s, c], so dx
sums dy over each s x s block.
"""
import numpy as np

from ..backend import get_array_module
from .base import Layer
from .conv import _pair


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

    def _window(self, i, j, ho, wo):
        """The strided slice of the input that offset (i, j) of every window reads."""
        sh, sw = self.strides
        return (slice(None), slice(i, i + sh * (ho - 1) + 1, sh), slice(j, j + sw * (wo - 1) + 1, sw), slice(None))

    def forward(self, x):
        self._check_input(x, min_size=max(self.pool_size))
        xp = get_array_module(x)
        ph, pw = self.pool_size
        _, ho, wo, _ = self.output_shape(x.shape)
        offsets = [(i, j) for i in range(ph) for j in range(pw)]
        windows = xp.stack([x[self._window(i, j, ho, wo)] for i, j in offsets])  # (ph*pw, N, Ho, Wo, C)
        arg = windows.argmax(axis=0)                             # first maximum wins ties
        y = xp.take_along_axis(windows, arg[None], axis=0)[0]    # (N, Ho, Wo, C)
        self._cache = (arg.astype(np.uint8 if len(offsets) < 256 else np.int64), x.shape, offsets)
        return y

    def backward(self, dy):
        arg, x_shape, offsets = self._cache
        xp = get_array_module(dy)
        _, ho, wo, _ = dy.shape
        dx = xp.zeros(x_shape, dtype=dy.dtype)
        for k, (i, j) in enumerate(offsets):
            dx[self._window(i, j, ho, wo)] += dy * (arg == k)
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
        self._check_input(x)
        xp = get_array_module(x)
        n, h, w, c = x.shape
        sh, sw = self.size
        y = xp.broadcast_to(x[:, :, None, :, None, :], (n, h, sh, w, sw, c))  # (N, H, sh, W, sw, C)
        return y.reshape(n, h * sh, w * sw, c)

    def backward(self, dy):
        n, ho, wo, c = dy.shape
        sh, sw = self.size
        return dy.reshape(n, ho // sh, sh, wo // sw, sw, c).sum(axis=(2, 4))
