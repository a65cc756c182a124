"""Conv2D and ConvTranspose2D, as matrix products over im2col windows (see ``im2col``).

Conv2D (stride 1, a cross-correlation as in Keras), kernel K (kh, kw, C, F). The input
is widened once per block of output rows: each pixel side by side with the kw pixels
its kernel row reads, rows first, so that what kernel row i reads is a contiguous
matrix X_i (N*Ho*Wo, kw*C) (``im2col.widened``). With K_i = K[i] (kw*C, F)::

    y[n, h, w, f] = b[f] + sum_{i, j, c} xpad[n, h + i, w + j, c] K[i, j, c, f]
    Y = sum_i X_i @ K_i                              kh products per block of rows
    dK_i = X_i^T @ dY                                (X_i recomputed, not kept)
    dx = dy correlated with K flipped in space, channels swapped: the same products
    db = 1^T dY                                      (column sums, as a product)

The products run on matrices whose rows are ordered (h, n, w); one transposing copy
brings the result back to NHWC (and adds the bias on the way).

ConvTranspose2D is the adjoint of a strided convolution: its forward pass is a
convolution's input gradient, its backward pass a convolution's forward pass.
Kernel K (kh, kw, F, C), the layout Keras uses for Conv2DTranspose::

    y[n, s*h + i, s*w + j, f] += x[n, h, w, c] K[i, j, f, c]      (+ b[f])
    y[window ij] += X @ K_ij^T                       X: (N*H*W, C)
    dX = sum_ij dY_ij @ K_ij     dK_ij = dY_ij^T @ X     dY_ij = shifted(dy, i, j, stride s)

the backward pass with one product for all kh*kw offsets: the dY_ij side by side,
the K_ij stacked (kh*kw*F, C).

Gradients are written into the same ``grads`` arrays at every step.
"""
from ..backend import DEFAULT_DTYPE, get_array_module
from .base import Layer, initialize, zeros
from .im2col import add_shifted, shifted, widened
from .scratch import scratch


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
        self._check_input(x, self.in_channels, min_size=1 if self.padding == "same" else self.kernel_size)
        xp = get_array_module(x)
        kh, kw = self.kernel_size
        n, ho, wo, f = self.output_shape(x.shape)
        k = self.params["kernel"].astype(x.dtype, copy=False).reshape(kh, kw * x.shape[3], f)  # K_i: (kw*C, F)
        bias = self.params["bias"].astype(x.dtype, copy=False) if "bias" in self.params else 0
        y = _correlate(x, k, self._pads(), xp.empty((n, ho, wo, f), dtype=x.dtype), bias)
        self._cache = x
        return y

    def backward(self, dy):
        x = self._cache
        xp = get_array_module(dy)
        kh, kw = self.kernel_size
        _, ho, wo, f = dy.shape
        _, h, w, c = x.shape
        kernel = self.params["kernel"].astype(dy.dtype, copy=False)           # (kh, kw, C, F)
        if "bias" in self.params:
            self._store_grad("bias", _column_sums(dy.reshape(-1, f), self._grad_buffer("bias", dy.dtype)))

        dkernel = self._grad_buffer("kernel", dy.dtype)
        self._store_grad("kernel", _kernel_gradient(x, dy, self._pads(), dkernel))

        # dx is dy correlated with K'[i, j, f, c] = K[kh-1-i, kw-1-j, c, f], padded so that
        # it comes out x's size. The product needs row i of K' as (kw*F, C): it reads the
        # transpose of flipped[i] (C, kw*F), a copy of whole rows of F floats (an
        # element-wise transpose of the kernel costs as much as the layer's products at
        # the bottom of the U-Net).
        flipped = xp.ascontiguousarray(kernel[::-1, ::-1].transpose(0, 2, 1, 3)).reshape(kh, c, kw * f)
        dx = xp.empty(x.shape, dtype=dy.dtype)
        return _correlate(dy, flipped.transpose(0, 2, 1), self._input_gradient_pads(h, w, ho, wo), dx)

    def _input_gradient_pads(self, h, w, ho, wo):
        """Padding of dy (Ho, Wo) for its correlation with the flipped kernel to give dx (H, W):
        kh - 1 - top rows on top, and what makes Ho + top' + bottom' = H + kh - 1."""
        (kh, kw), (top, _, left, _) = self.kernel_size, self._pads()
        top_, left_ = kh - 1 - top, kw - 1 - left
        return (top_, h + kh - 1 - ho - top_, left_, w + kw - 1 - wo - left_)


def _correlate(x, k, pads, out, bias=0):
    """out[n, h, w, f] = bias[f] + sum_{i, j, c} xpad[n, h + i, w + j, c] K[i, j, c, f], with
    k (kh, kw*C, F) holding the kernel rows K_i. Per block of output rows, Y = sum_i X_i @ K_i
    as a matrix whose rows run (h, n, w), then copied into out's NHWC block (with the bias)
    while it is still in cache. Returns out."""
    xp = get_array_module(x)
    kh, kwc, f = k.shape
    n, _, wo, _ = out.shape
    for rows, xw in widened(x, kh, kwc // x.shape[3], pads, f):
        r = rows.stop - rows.start
        y = scratch("correlation", (r * n * wo, f), x.dtype, xp)              # (rows*N*Wo, F)
        xp.matmul(xw[:r].reshape(-1, kwc), k[0], out=y)
        product = scratch("product", y.shape, x.dtype, xp)
        for i in range(1, kh):
            y += xp.matmul(xw[i : i + r].reshape(-1, kwc), k[i], out=product)
        xp.add(y.reshape(r, n, wo, f).transpose(1, 0, 2, 3), bias, out=out[:, rows])   # back to NHWC
    return out


def _kernel_gradient(x, dy, pads, out):
    """out (kh, kw, C, F) = dL/dK: dK_i = X_i^T dY, block by block of output rows, with X_i
    widened again from x (not kept since the forward pass) and dY brought to the same
    row order (h, n, w) a block at a time. Returns out."""
    xp = get_array_module(x)
    kh, kw, c, f = out.shape
    n, _, wo, _ = dy.shape
    dk = out.reshape(kh, kw * c, f)                                           # dK_i: (kw*C, F)
    for rows, xw in widened(x, kh, kw, pads, f):
        r = rows.stop - rows.start
        dyb = scratch("dy block", (r, n, wo, f), dy.dtype, xp)
        dyb[...] = dy[:, rows].transpose(1, 0, 2, 3)
        dyb = dyb.reshape(-1, f)                                              # (rows*N*Wo, F)
        for i in range(kh):
            xi = xw[i : i + r].reshape(-1, kw * c)
            if rows.start == 0:
                xp.matmul(xi.T, dyb, out=dk[i])                               # the first block
            else:                                                             # the others add on
                dk[i] += xp.matmul(xi.T, dyb, out=scratch("dK_i", dk[i].shape, dk.dtype, xp))
    return out


def _column_sums(a, out):
    """out = 1^T a: the sums over the rows of a 2-D array, as a matrix-vector product
    (BLAS, several times faster than ``a.sum(axis=0)`` on a tall array)."""
    xp = get_array_module(a)
    return xp.matmul(xp.ones(a.shape[0], dtype=a.dtype), a, out=out)


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
        x2 = x.reshape(n * h * w, c)                                          # (N*H*W, C)
        k = self.params["kernel"].astype(x.dtype, copy=False)                  # (kh, kw, F, C)
        y = xp.zeros((n, ho, wo, f), dtype=x.dtype)
        product = scratch("product", (n, h, w, f), x.dtype, xp)
        for i in range(kh):
            for j in range(kw):                                               # col2im: y[window ij] += X K_ij^T
                xp.matmul(x2, k[i, j].T, out=product.reshape(-1, f))
                add_shifted(y, product, i, j, stride=self.strides[0])
        if "bias" in self.params:
            y += self.params["bias"].astype(x.dtype, copy=False)
        self._cache = (x2, x.shape)
        return y

    def backward(self, dy):
        x2, (n, h, w, _) = self._cache
        xp = get_array_module(dy)
        kh, kw = self.kernel_size
        f = self.filters
        k = self.params["kernel"].astype(dy.dtype, copy=False).reshape(kh * kw * f, self.in_channels)
        dz = scratch("transposed windows", (n, h, w, kh * kw, f), dy.dtype, xp)   # dY_ij side by side
        for i in range(kh):
            for j in range(kw):
                shifted(dy, i, j, dz[:, :, :, i * kw + j], stride=self.strides[0])
        dz = dz.reshape(n * h * w, kh * kw * f)                               # (N*H*W, kh*kw*F)
        dkernel = self._grad_buffer("kernel", dy.dtype)
        xp.matmul(dz.T, x2, out=dkernel.reshape(kh * kw * f, -1))             # dK_ij = dY_ij^T X, all at once
        self._store_grad("kernel", dkernel)
        if "bias" in self.params:
            dy2 = dy.reshape(-1, f)                                           # (N*Ho*Wo, F)
            self._store_grad("bias", _column_sums(dy2, self._grad_buffer("bias", dy.dtype)))
        return (dz @ k).reshape(n, h, w, self.in_channels)                   # dX = sum_ij dY_ij K_ij

