"""Conv2D and ConvTranspose2D, each pass a few operations of ``minunet/textbook.py``.

Conv2D (stride 1, a cross-correlation as in Keras), kernel K (kh, kw, C, F)::

    y[n, h, w, f] = b[f] + sum_{i, j, c} xpad[n, h + i, w + j, c] K[i, j, c, f]
    dK = X^T @ dY         the windows of x against dy          ``kernel_gradient``
    db = dy summed over pixels                                 ``sum_over_pixels``
    dx = dy correlated with K flipped in space, channels swapped    ``correlate``, ``flipped``

ConvTranspose2D is the adjoint of a strided convolution, kernel K (kh, kw, F, C) as in
Keras's Conv2DTranspose::

    y[n, s*h + i, s*w + j, f] += sum_c x[n, h, w, c] K[i, j, f, c]   (+ b[f])
    Y = col2im(X @ K^T)         each pixel of x stamps a kh x kw patch
    dP = im2col(dy, stride s)   dx = dP @ K     dK = dP^T @ X     db = dy summed over pixels

How the operations are made fast is ``engine``'s business (docs/READING.md, the ledger).
"""
from ..backend import DEFAULT_DTYPE
from .activations import relu_backward
from .base import Layer, initialize, zeros
from .engine import (col2im, correlate, flipped, im2col, kernel_gradient, pixelwise, product_over_pixels,
                     sum_over_pixels)


def _pair(k, what):
    k = (k, k) if isinstance(k, int) else tuple(k)
    if len(k) != 2 or any(not isinstance(v, int) or v < 1 for v in k):
        raise ValueError(f"{what} must be a positive int or a pair of them, received {k!r}")
    return k


class Conv2D(Layer):
    """2D convolution, stride 1, NHWC. ``padding="same"`` keeps H and W (Keras/TF rule:
    the extra row of an even kernel goes at the bottom/right); ``"valid"`` gives H - kh + 1.

    ``activation="relu"`` applies max(y, 0) to each block of the output while it is still
    in cache, as Keras's ``Conv2D(..., activation='relu')`` does; the values and gradients
    are exactly those of a ReLU layer after the convolution, one pass over memory fewer."""

    def __init__(self, in_channels, filters, kernel_size=3, padding="same", use_bias=True, activation=None,
                 kernel_initializer="glorot_uniform", dtype=DEFAULT_DTYPE, rng=None, name=None):
        super().__init__(name)
        if padding not in ("same", "valid"):
            raise ValueError(f"Conv2D padding must be 'same' or 'valid', received {padding!r}")
        if activation not in (None, "linear", "relu"):
            raise ValueError(f"Conv2D activation must be None, 'linear' or 'relu', received {activation!r}; "
                             f"apply other activations as layers after it")
        self.activation = "relu" if activation == "relu" else None
        self.in_channels, self.filters = int(in_channels), int(filters)
        self.kernel_size = _pair(kernel_size, "Conv2D kernel_size")
        self.padding = padding
        kh, kw = self.kernel_size
        self.params["kernel"] = initialize((kh, kw, self.in_channels, self.filters), kernel_initializer, rng, dtype)
        if use_bias:
            self.params["bias"] = zeros((self.filters,), dtype)

    def _pads(self):
        """(top, bottom, left, right) zero padding. 'same' pads kh - 1 rows in all, the odd
        one at the bottom (and kw - 1 columns, the odd one at the right), as Keras/TF do."""
        if self.padding == "valid":
            return (0, 0, 0, 0)
        (kh, kw) = self.kernel_size
        return ((kh - 1) // 2, kh // 2, (kw - 1) // 2, kw // 2)

    def output_shape(self, input_shape):
        n, h, w, _ = input_shape
        if self.padding == "valid":
            h, w = h - self.kernel_size[0] + 1, w - self.kernel_size[1] + 1
        return (n, h, w, self.filters)

    def forward(self, x):
        """y = x correlated with the kernel, + bias (then max(y, 0) for activation='relu')."""
        self._check_input(x, self.in_channels, min_size=1 if self.padding == "same" else self.kernel_size)
        y = correlate(x, self.params["kernel"], self._pads(), self.params.get("bias"), relu=self.activation == "relu")
        self._cache = (x, y)        # y, for the ReLU's mask, is the next layer's input: kept anyway
        return y

    def backward(self, dy, input_gradient=True):
        """Fills ``grads`` and returns dL/dx; with ``input_gradient=False`` returns None
        without computing dx (the network's first layer: nothing trains its input)."""
        x, y = self._cache
        kernel = self.params["kernel"].astype(dy.dtype, copy=False)           # (kh, kw, C, F)
        if self.activation == "relu":
            dy = relu_backward(dy, y)                                         # dy where y > 0
        if "bias" in self.params:
            self.grads["bias"] = sum_over_pixels(dy, out=self._grad_array("bias"))                   # db
        self.grads["kernel"] = kernel_gradient(x, dy, self._pads(), self.kernel_size,
                                               out=self._grad_array("kernel"))                   # dK = X^T dY
        if not input_gradient:
            return None
        return correlate(dy, flipped(kernel), self._input_gradient_pads())                   # dx

    def _input_gradient_pads(self):
        """Padding of dy (Ho, Wo) for its correlation with the flipped kernel to give dx (H, W):
        kh - 1 - top rows on top and kh - 1 - bottom at the bottom (so too for columns), the
        'full' correlation. Ho = H + top + bottom - kh + 1, so Ho + top' + bottom' = H + kh - 1."""
        (kh, kw), (top, bottom, left, right) = self.kernel_size, self._pads()
        return (kh - 1 - top, kh - 1 - bottom, kw - 1 - left, kw - 1 - right)


class ConvTranspose2D(Layer):
    """Transposed convolution ('valid'): H -> (H - 1) * strides + kernel_size, as Keras's
    default Conv2DTranspose for kernel_size >= strides (Keras gives H * strides below that).

    With kernel_size == strides (the U-Net's 2x2, stride 2) windows do not overlap and
    the output is exactly H * strides. Kernel layout (kh, kw, filters, in_channels)."""

    def __init__(self, in_channels, filters, kernel_size=2, strides=2, use_bias=True,
                 kernel_initializer="glorot_uniform", dtype=DEFAULT_DTYPE, rng=None, name=None):
        super().__init__(name)
        self.in_channels, self.filters = int(in_channels), int(filters)
        self.kernel_size = _pair(kernel_size, "ConvTranspose2D kernel_size")
        self.strides = _pair(strides, "ConvTranspose2D strides")
        if self.strides[0] != self.strides[1]:
            raise ValueError(f"ConvTranspose2D needs equal strides, received {self.strides}")
        kh, kw = self.kernel_size
        self.params["kernel"] = initialize((kh, kw, self.filters, self.in_channels), kernel_initializer, rng, dtype)
        if use_bias:
            self.params["bias"] = zeros((self.filters,), dtype)

    def output_shape(self, input_shape):
        n, h, w, _ = input_shape
        (kh, kw), (s, _) = self.kernel_size, self.strides
        return (n, (h - 1) * s + kh, (w - 1) * s + kw, self.filters)

    def forward(self, x):
        """y = col2im(X @ K^T) + b: each pixel of x stamps a kh x kw patch onto y."""
        self._check_input(x, self.in_channels)
        kh, kw = self.kernel_size
        kernel = self.params["kernel"].astype(x.dtype, copy=False)            # (kh, kw, F, C)
        kernel = kernel.reshape(kh * kw * self.filters, -1)                   # K (kh*kw*F, C)
        patches = pixelwise(x, kernel.T, kept=True)                           # X K^T: (N, H, W, kh*kw*F)
        self._cache = x
        return col2im(patches, kh, kw, self.strides[0], self.output_shape(x.shape), self.params.get("bias"))

    def backward(self, dy):
        x = self._cache
        kh, kw = self.kernel_size
        kernel = self.params["kernel"].astype(dy.dtype, copy=False)           # (kh, kw, F, C)
        kernel = kernel.reshape(kh * kw * self.filters, -1)                   # K (kh*kw*F, C)
        dpatches = im2col(dy, kh, kw, self.strides[0])                        # dP: (N, H, W, kh*kw*F)
        product_over_pixels(dpatches, x, out=self._grad_array("kernel").reshape(kernel.shape))   # dK = dP^T X
        if "bias" in self.params:
            self.grads["bias"] = sum_over_pixels(dy, out=self._grad_array("bias"))                   # db
        return pixelwise(dpatches, kernel)                                    # dx = dP K
