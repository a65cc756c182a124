"""Conv2D and ConvTranspose2D: one matrix product each, through im2col.

Conv2D (stride 1, a cross-correlation as in Keras), kernel K (kh, kw, C, F)::

    y[n, h, w, f] = b[f] + sum_{i, j, c} xpad[n, h + i, w + j, c] K[i, j, c, f]
    Y = cols(xpad) @ K2           cols: (N*H*W, kh*kw*C),  K2: (kh*kw*C, F)
    dK2 = cols^T @ dY             dX = cols(dYpad) @ flip(K)2   (dy correlated with the flipped kernel)

ConvTranspose2D is the adjoint of a strided convolution: its forward pass is a
convolution's input-gradient, its backward pass is a convolution's forward.
Kernel K (kh, kw, F, C), the layout Keras uses for Conv2DTranspose::

    y[n, s*h + i, s*w + j, f] += x[n, h, w, c] K[i, j, f, c]      (+ b[f])
    cols = X @ K2                 X: (N*H*W, C),  K2: (C, kh*kw*F)
    y = col2im(cols)              dcols = im2col(dy),  dX = dcols @ K2^T,  dK2 = X^T @ dcols
"""
from ..backend import DEFAULT_DTYPE, get_array_module
from .base import Layer, initialize, zeros
from .im2col import col2im, im2col


def _pair(k, what):
    k = (k, k) if isinstance(k, int) else tuple(k)
    if len(k) != 2 or any(not isinstance(v, int) or v < 1 for v in k):
        raise ValueError(f"{what} must be a positive int or a pair of them, received {k!r}")
    return k


class Conv2D(Layer):
    """2D convolution, stride 1, NHWC. ``padding="same"`` keeps H and W (Keras/TF rule:
    the extra row of an even kernel goes at the bottom/right); ``"valid"`` gives H - kh + 1."""

    def __init__(self, in_channels, filters, kernel_size=3, padding="same", use_bias=True,
                 kernel_initializer="glorot_uniform", dtype=DEFAULT_DTYPE, rng=None, name=None):
        super().__init__(name)
        if padding not in ("same", "valid"):
            raise ValueError(f"Conv2D padding must be 'same' or 'valid', received {padding!r}")
        self.in_channels, self.filters = int(in_channels), int(filters)
        self.kernel_size = _pair(kernel_size, "Conv2D kernel_size")
        self.padding = padding
        kh, kw = self.kernel_size
        self.params["kernel"] = initialize((kh, kw, self.in_channels, self.filters), kernel_initializer, rng, dtype)
        if use_bias:
            self.params["bias"] = zeros((self.filters,), dtype)

    def _pads(self):
        """((top, bottom), (left, right)) zero padding of the input."""
        if self.padding == "valid":
            return (0, 0), (0, 0)
        return tuple(((k - 1) // 2, k - 1 - (k - 1) // 2) for k in self.kernel_size)

    def output_shape(self, input_shape):
        n, h, w, _ = input_shape
        if self.padding == "valid":
            h, w = h - self.kernel_size[0] + 1, w - self.kernel_size[1] + 1
        return (n, h, w, self.filters)

    def forward(self, x):
        self._check_input(x, self.in_channels, min_size=1 if self.padding == "same" else max(self.kernel_size))
        xp = get_array_module(x)
        kh, kw = self.kernel_size
        n, h, w, c = x.shape
        (pt, pb), (pl, pr) = self._pads()
        xpad = xp.pad(x, ((0, 0), (pt, pb), (pl, pr), (0, 0))) if pt + pb + pl + pr else x
        cols = im2col(xpad, kh, kw)                            # (N, Ho, Wo, kh, kw, C)
        _, ho, wo = cols.shape[:3]
        cols = cols.reshape(n * ho * wo, kh * kw * c)          # (N*Ho*Wo, kh*kw*C)
        kernel = self.params["kernel"].astype(x.dtype, copy=False).reshape(kh * kw * c, self.filters)
        y = cols @ kernel                                      # (N*Ho*Wo, F)
        if "bias" in self.params:
            y += self.params["bias"].astype(x.dtype, copy=False)
        self._cache = (cols, x.shape)
        return y.reshape(n, ho, wo, self.filters)

    def backward(self, dy):
        cols, x_shape = self._cache
        kh, kw = self.kernel_size
        n, ho, wo, f = dy.shape
        c = x_shape[3]
        kernel = self.params["kernel"]
        dy2 = dy.reshape(n * ho * wo, f)                        # (N*Ho*Wo, F)
        self.grads["kernel"] = (cols.T @ dy2).reshape(kernel.shape).astype(kernel.dtype, copy=False)
        if "bias" in self.params:
            self.grads["bias"] = dy2.sum(axis=0).astype(kernel.dtype, copy=False)
        # dx is the 'full' correlation of dy with the flipped kernel, its in/out channels swapped:
        # dx[n, h, w, c] = sum_{i, j, f} dypad[n, h + i, w + j, f] K[kh-1-i, kw-1-j, c, f]
        (pt, pb), (pl, pr) = self._pads()
        xp = get_array_module(dy)
        dypad = xp.pad(dy, ((0, 0), (kh - 1 - pt, kh - 1 - pb), (kw - 1 - pl, kw - 1 - pr), (0, 0)))
        dcols = im2col(dypad, kh, kw)                          # (N, H, W, kh, kw, F)
        flipped = kernel.astype(dy.dtype, copy=False)[::-1, ::-1].transpose(0, 1, 3, 2)   # (kh, kw, F, C)
        dx = dcols.reshape(-1, kh * kw * f) @ flipped.reshape(kh * kw * f, c)             # (N*H*W, C)
        return dx.reshape(x_shape)


class ConvTranspose2D(Layer):
    """Transposed convolution ('valid', as Keras's default): H -> (H - 1) * strides + kernel_size.

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

    def _kernel_matrix(self, dtype):
        kh, kw = self.kernel_size
        k = self.params["kernel"].astype(dtype, copy=False)     # (kh, kw, F, C)
        return k.transpose(3, 0, 1, 2).reshape(self.in_channels, kh * kw * self.filters)  # (C, kh*kw*F)

    def forward(self, x):
        self._check_input(x, self.in_channels)
        n, h, w, c = x.shape
        kh, kw = self.kernel_size
        _, ho, wo, f = self.output_shape(x.shape)
        x2 = x.reshape(n * h * w, c)                            # (N*H*W, C)
        cols = (x2 @ self._kernel_matrix(x.dtype)).reshape(n, h, w, kh, kw, f)
        y = col2im(cols, ho, wo, self.strides[0])               # (N, Ho, Wo, F)
        if "bias" in self.params:
            y += self.params["bias"].astype(x.dtype, copy=False)
        self._cache = x2
        return y

    def backward(self, dy):
        x2 = self._cache
        kh, kw = self.kernel_size
        f, c = self.filters, self.in_channels
        kernel = self.params["kernel"]
        dcols = im2col(dy, kh, kw, self.strides[0])             # (N, H, W, kh, kw, F)
        n, h, w = dcols.shape[:3]
        dcols = dcols.reshape(n * h * w, kh * kw * f)           # (N*H*W, kh*kw*F)
        dk = (x2.T @ dcols).reshape(c, kh, kw, f).transpose(1, 2, 3, 0)   # (kh, kw, F, C)
        self.grads["kernel"] = dk.astype(kernel.dtype, copy=False)
        if "bias" in self.params:
            self.grads["bias"] = dy.sum(axis=(0, 1, 2)).astype(kernel.dtype, copy=False)
        dx = dcols @ self._kernel_matrix(dy.dtype).T            # (N*H*W, C)
        return dx.reshape(n, h, w, c)
