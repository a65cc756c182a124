"""Conv2D and ConvTranspose2D: a matrix product per kernel offset, through im2col.

Conv2D (stride 1, a cross-correlation as in Keras), kernel K (kh, kw, C, F), and
X_ij = the (zero-padded) input window that kernel offset (i, j) reads, as an
(N*H*W, C) matrix::

    y[n, h, w, f] = b[f] + sum_{i, j, c} xpad[n, h + i, w + j, c] K[i, j, c, f]
    Y = sum_ij X_ij @ K_ij           X_ij = im2col(x)[i, j]    K_ij = K[i, j]: (C, F)
    dK_ij = X_ij^T @ dY              dx[window ij] += dY @ K_ij^T       (col2im)

ConvTranspose2D is the adjoint of a strided convolution: its forward pass is a
convolution's input gradient, its backward pass a convolution's forward pass.
Kernel K (kh, kw, F, C), the layout Keras uses for Conv2DTranspose::

    y[n, s*h + i, s*w + j, f] += x[n, h, w, c] K[i, j, f, c]      (+ b[f])
    y[window ij] += X @ K_ij^T       X: (N*H*W, C)
    dX = sum_ij dY_ij @ K_ij         dY_ij = im2col(dy, stride s)[i, j]     dK_ij = dY_ij^T @ X
"""
from ..backend import DEFAULT_DTYPE, get_array_module
from .base import Layer, initialize, zeros
from .im2col import im2col, span


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
        self._cols = None  # the im2col buffer, kept from one step to the next

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
        n, _, _, c = x.shape
        self._cols = im2col(x, kh, kw, self._pads(), out=self._cols)   # (kh, kw, N, Ho, Wo, C), reused
        ho, wo = self._cols.shape[3:5]
        cols = self._cols.reshape(kh * kw, n * ho * wo, c)     # one (N*Ho*Wo, C) matrix per offset
        kernel = self.params["kernel"].astype(x.dtype, copy=False).reshape(kh * kw, c, self.filters)
        y = cols[0] @ kernel[0]                                # (N*Ho*Wo, F)
        if kh * kw > 1:
            product = xp.empty_like(y)
            for o in range(1, kh * kw):
                y += xp.matmul(cols[o], kernel[o], out=product)
        if "bias" in self.params:
            y += self.params["bias"].astype(x.dtype, copy=False)
        self._cache = (cols, x.shape)
        return y.reshape(n, ho, wo, self.filters)

    def backward(self, dy):
        cols, x_shape = self._cache
        xp = get_array_module(dy)
        kh, kw = self.kernel_size
        n, ho, wo, f = dy.shape
        _, h, w, c = x_shape
        (pt, _), (pl, _) = self._pads()
        kernel = self.params["kernel"]
        k = kernel.astype(dy.dtype, copy=False).reshape(kh * kw, c, f)
        dy2 = dy.reshape(n * ho * wo, f)                        # (N*Ho*Wo, F)
        dk = xp.empty((kh * kw, c, f), dtype=dy.dtype)
        dx = xp.zeros(x_shape, dtype=dy.dtype)
        product = xp.empty((n * ho * wo, c), dtype=dy.dtype)
        for o in range(kh * kw):
            i, j = divmod(o, kw)
            xp.matmul(cols[o].T, dy2, out=dk[o])                # dK_ij = X_ij^T dY: (C, F)
            rows, cols_ = span(i, pt, h, ho), span(j, pl, w, wo)
            if rows and cols_:                                  # col2im, one offset: dx += dY K_ij^T
                block = xp.matmul(dy2, k[o].T, out=product).reshape(n, ho, wo, c)
                dx[:, rows[1], cols_[1]] += block[:, rows[0], cols_[0]]
        self.grads["kernel"] = dk.reshape(kernel.shape).astype(kernel.dtype, copy=False)
        if "bias" in self.params:
            self.grads["bias"] = dy2.sum(axis=0).astype(kernel.dtype, copy=False)
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
        k = self.params["kernel"].astype(x.dtype, copy=False)   # (kh, kw, F, C)
        y = xp.zeros((n, ho, wo, f), dtype=x.dtype)
        s = self.strides[0]
        for i in range(kh):
            for j in range(kw):                                 # col2im, one offset: y[window ij] += X K_ij^T
                y[:, i : i + s * (h - 1) + 1 : s, j : j + s * (w - 1) + 1 : s] += (x2 @ k[i, j].T).reshape(n, h, w, f)
        if "bias" in self.params:
            y += self.params["bias"].astype(x.dtype, copy=False)
        self._cache = (x2, x.shape)
        return y

    def backward(self, dy):
        x2, x_shape = self._cache
        xp = get_array_module(dy)
        kh, kw = self.kernel_size
        kernel = self.params["kernel"]
        k = kernel.astype(dy.dtype, copy=False)                 # (kh, kw, F, C)
        dcols = im2col(dy, kh, kw, stride=self.strides[0])      # (kh, kw, N, H, W, F)
        dcols = dcols.reshape(kh, kw, -1, self.filters)         # one (N*H*W, F) matrix per offset
        dk = xp.empty(kernel.shape, dtype=dy.dtype)
        dx = dcols[0, 0] @ k[0, 0]                              # (N*H*W, C)
        for i in range(kh):
            for j in range(kw):
                dk[i, j] = dcols[i, j].T @ x2                   # (F, C)
                if i or j:
                    dx += dcols[i, j] @ k[i, j]
        self.grads["kernel"] = dk.astype(kernel.dtype, copy=False)
        if "bias" in self.params:
            self.grads["bias"] = dy.sum(axis=(0, 1, 2)).astype(kernel.dtype, copy=False)
        return dx.reshape(x_shape)
