"""Conv2D and ConvTranspose2D: a sum of shifted 1x1 convolutions, one matrix product per
kernel offset (see ``im2col.shifted``).

Conv2D (stride 1, a cross-correlation as in Keras), kernel K (kh, kw, C, F), and
X_ij = shifted(x, i, j), the zero-padded input as kernel offset (i, j) reads it,
an (N*H*W, C) matrix::

    y[n, h, w, f] = b[f] + sum_{i, j, c} xpad[n, h + i, w + j, c] K[i, j, c, f]
    Y = sum_ij X_ij @ K_ij                           K_ij = K[i, j]: (C, F)
    dK_ij = X_ij^T @ dY                              (X_ij recomputed, not kept)
    dx[window ij] += dY @ K_ij^T                     (col2im, one offset at a time)

ConvTranspose2D is the adjoint of a strided convolution: its forward pass is a
convolution's input gradient, its backward pass a convolution's forward pass.
Kernel K (kh, kw, F, C), the layout Keras uses for Conv2DTranspose::

    y[n, s*h + i, s*w + j, f] += x[n, h, w, c] K[i, j, f, c]      (+ b[f])
    y[window ij] += X @ K_ij^T                       X: (N*H*W, C)
    dX = sum_ij dY_ij @ K_ij     dK_ij = dY_ij^T @ X     dY_ij = shifted(dy, i, j, stride s)
"""
from ..backend import DEFAULT_DTYPE, get_array_module
from .base import Layer, initialize, zeros
from .im2col import shifted, span, strided


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
        """(top, left) zero padding of the input; 'same' puts the rest at the bottom/right."""
        if self.padding == "valid":
            return 0, 0
        return tuple((k - 1) // 2 for k in self.kernel_size)

    def output_shape(self, input_shape):
        n, h, w, _ = input_shape
        if self.padding == "valid":
            h, w = h - self.kernel_size[0] + 1, w - self.kernel_size[1] + 1
        return (n, h, w, self.filters)

    def forward(self, x):
        self._check_input(x, self.in_channels, min_size=1 if self.padding == "same" else max(self.kernel_size))
        xp = get_array_module(x)
        kh, kw = self.kernel_size
        n, ho, wo, f = self.output_shape(x.shape)
        c = x.shape[3]
        pads = self._pads()
        kernel = self.params["kernel"].astype(x.dtype, copy=False)           # (kh, kw, C, F)
        window = xp.empty((n, ho, wo, c), dtype=x.dtype)                      # X_ij, one offset at a time
        product = xp.empty((n * ho * wo, f), dtype=x.dtype)
        y = xp.zeros((n * ho * wo, f), dtype=x.dtype)                         # (N*Ho*Wo, F)
        for i in range(kh):
            for j in range(kw):
                shifted(x, i, j, window, pads)
                y += xp.matmul(window.reshape(-1, c), kernel[i, j], out=product)
        if "bias" in self.params:
            y += self.params["bias"].astype(x.dtype, copy=False)
        self._cache = x
        return y.reshape(n, ho, wo, f)

    def backward(self, dy):
        x = self._cache
        xp = get_array_module(dy)
        kh, kw = self.kernel_size
        n, ho, wo, f = dy.shape
        _, h, w, c = x.shape
        pads = self._pads()
        kernel = self.params["kernel"].astype(dy.dtype, copy=False)          # (kh, kw, C, F)
        dy2 = dy.reshape(n * ho * wo, f)                                      # (N*Ho*Wo, F)
        dkernel = xp.empty(kernel.shape, dtype=dy.dtype)
        dx = xp.zeros(x.shape, dtype=dy.dtype)
        window = xp.empty((n, ho, wo, c), dtype=dy.dtype)                     # X_ij, then dY K_ij^T
        for i in range(kh):
            for j in range(kw):
                shifted(x, i, j, window, pads)                               # X_ij again
                xp.matmul(window.reshape(-1, c).T, dy2, out=dkernel[i, j])   # dK_ij = X_ij^T dY: (C, F)
                rows, cols = span(i, pads[0], h, ho), span(j, pads[1], w, wo)
                if rows and cols:                                           # col2im: dx += dY K_ij^T
                    xp.matmul(dy2, kernel[i, j].T, out=window.reshape(-1, c))
                    dx[:, rows[1], cols[1]] += window[:, rows[0], cols[0]]
        dtype = self.params["kernel"].dtype
        self.grads["kernel"] = dkernel.astype(dtype, copy=False)
        if "bias" in self.params:
            self.grads["bias"] = dy2.sum(axis=0).astype(dtype, copy=False)
        return dx


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

    def forward(self, x):
        self._check_input(x, self.in_channels)
        xp = get_array_module(x)
        n, h, w, c = x.shape
        kh, kw = self.kernel_size
        _, ho, wo, f = self.output_shape(x.shape)
        x2 = x.reshape(n * h * w, c)                            # (N*H*W, C)
        kernel = self.params["kernel"].astype(x.dtype, copy=False)   # (kh, kw, F, C)
        y = xp.zeros((n, ho, wo, f), dtype=x.dtype)
        s = self.strides[0]
        for i in range(kh):
            for j in range(kw):                                 # col2im, one offset: y[window ij] += X K_ij^T
                y[:, strided(i, h, s), strided(j, w, s)] += (x2 @ kernel[i, j].T).reshape(n, h, w, f)
        if "bias" in self.params:
            y += self.params["bias"].astype(x.dtype, copy=False)
        self._cache = (x2, x.shape)
        return y

    def backward(self, dy):
        x2, x_shape = self._cache
        xp = get_array_module(dy)
        kh, kw = self.kernel_size
        kernel = self.params["kernel"].astype(dy.dtype, copy=False)   # (kh, kw, F, C)
        n, h, w, c = x_shape
        window = xp.empty((n, h, w, self.filters), dtype=dy.dtype)             # dY_ij
        product = xp.empty((n * h * w, c), dtype=dy.dtype)
        dkernel = xp.empty(kernel.shape, dtype=dy.dtype)
        dx = xp.zeros((n * h * w, c), dtype=dy.dtype)                         # (N*H*W, C)
        for i in range(kh):
            for j in range(kw):
                dyij = shifted(dy, i, j, window, stride=self.strides[0]).reshape(-1, self.filters)
                xp.matmul(dyij.T, x2, out=dkernel[i, j])                    # dK_ij = dY_ij^T X: (F, C)
                dx += xp.matmul(dyij, kernel[i, j], out=product)            # dX += dY_ij K_ij
        dtype = self.params["kernel"].dtype
        self.grads["kernel"] = dkernel.astype(dtype, copy=False)
        if "bias" in self.params:
            self.grads["bias"] = dy.sum(axis=(0, 1, 2)).astype(dtype, copy=False)
        return dx.reshape(x_shape)
