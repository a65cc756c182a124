"""Conv2D and ConvTranspose2D, as matrix products over im2col windows (see ``im2col``).

Both work on the channel planes of their NHWC arrays (``layout``): a (C, H*N*W) matrix
per array, whose columns are the pixels in (h, n, w) order.

Conv2D (stride 1, a cross-correlation as in Keras), kernel K (kh, kw, C, F). The input
is widened once per block of output rows: the kw planes each kernel row reads,
stacked, so that what kernel row i reads is a range of columns of one matrix,
X_i (kw*C, N*Ho*Wo) (``im2col.widened``). With K_i = K[i] (kw*C, F)::

    y[n, h, w, f] = b[f] + sum_{i, j, c} xpad[n, h + i, w + j, c] K[i, j, c, f]
    Y = sum_i K_i^T @ X_i                           kh products per block of rows
    dK_i = X_i @ dY^T                               (X_i recomputed, not kept)
    dx = dy correlated with K flipped in space, channels swapped: the same products
    db = dY @ 1                                     (plane sums, as a product)

Y (F, pixels) is the output's planes: each block is written in place, with the bias
(and the ReLU, for ``activation="relu"``).

ConvTranspose2D is the adjoint of a strided convolution: its forward pass is a
convolution's input gradient, its backward pass a convolution's forward pass.
Kernel K (kh, kw, F, C), the layout Keras uses for Conv2DTranspose::

    y[n, s*h + i, s*w + j, f] += x[n, h, w, c] K[i, j, f, c]      (+ b[f])
    y[window ij] += K_ij @ X                         X: (C, N*H*W)
    dX = sum_ij K_ij^T @ dY_ij     dK_ij = dY_ij @ X^T     dY_ij = shifted(dy, i, j, stride s)

each pass with one product for all kh*kw offsets: the K_ij stacked (kh*kw*F, C) give
all the K_ij @ X at once, and with the dY_ij stacked (kh*kw*F, N*H*W), all the dK_ij.
When the windows tile the output (kernel_size == strides, the U-Net's 2x2 stride 2),
each output pixel comes from one window: y[window ij] = K_ij @ X + b, written once.

Gradients are written into the same ``grads`` arrays at every step.
"""
from ..backend import DEFAULT_DTYPE, get_array_module
from . import layout
from .base import Layer, initialize, zeros
from .im2col import add_shifted, shifted, stacked_rows, strided, widened
from .layout import flat_planes, planes
from .scratch import scratch


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

    def forward(self, x, out=None):
        """y = conv(x) (+ bias, ReLU), written into ``out`` if given (a view of the U-Net's
        concatenated decoder input), else into a new array."""
        self._check_input(x, self.in_channels, min_size=1 if self.padding == "same" else self.kernel_size)
        xp = get_array_module(x)
        kh, kw = self.kernel_size
        n, ho, wo, f = self.output_shape(x.shape)
        kernel = self.params["kernel"].astype(x.dtype, copy=False)
        kt = kernel.reshape(kh, kw * x.shape[3], f).transpose(0, 2, 1)         # K_i^T: (F, kw*C), a view
        bias = self.params["bias"].astype(x.dtype, copy=False).reshape(f, 1) if "bias" in self.params else None
        y = self._output((n, ho, wo, f), x.dtype, xp, out)
        _correlate(planes(x), kt, self._pads(), planes(y), bias, relu=self.activation == "relu")
        self._cache = (x, y)        # y, for the ReLU's mask, is the next layer's input: kept anyway
        return y

    def backward(self, dy, input_gradient=True):
        """Fills ``grads`` and returns dL/dx; with ``input_gradient=False`` returns None
        without computing dx (the network's first layer: nothing trains its input)."""
        x, y = self._cache
        xp = get_array_module(dy)
        kh, kw = self.kernel_size
        _, ho, wo, f = dy.shape
        _, h, w, c = x.shape
        kernel = self.params["kernel"].astype(dy.dtype, copy=False)           # (kh, kw, C, F)
        dy_planes = planes(dy)                                                # (F, Ho, N, Wo)
        if self.activation == "relu":
            dy_planes = dy_planes * (planes(y) > 0)                           # through the ReLU: dy [y > 0]
        dy_planes = xp.ascontiguousarray(dy_planes)                           # a copy only if not stored so
        if "bias" in self.params:
            dbias = self._grad_buffer("bias", dy.dtype)
            self._store_grad("bias", _plane_sums(dy_planes.reshape(f, -1), dbias))

        dkernel = self._grad_buffer("kernel", dy.dtype)
        self._store_grad("kernel", _kernel_gradient(planes(x), dy_planes, self._pads(), dkernel))
        if not input_gradient:
            return None

        # dx is dy correlated with K'[i, j, f, c] = K[kh-1-i, kw-1-j, c, f], padded so that
        # it comes out x's size. The product needs K'_i^T (C, kw*F): a copy of whole rows
        # of F floats (an element-wise transpose of the kernel costs as much as the layer's
        # products at the bottom of the U-Net), into a buffer kept between steps.
        flipped = scratch("flipped kernel", (kh, c, kw, f), dy.dtype, xp)
        flipped[...] = kernel[::-1, ::-1].transpose(0, 2, 1, 3)
        flipped = flipped.reshape(kh, c, kw * f)
        dx = layout.empty(x.shape, dy.dtype, xp)
        _correlate(dy_planes, flipped, self._input_gradient_pads(h, w, ho, wo), planes(dx))
        return dx

    def _input_gradient_pads(self, h, w, ho, wo):
        """Padding of dy (Ho, Wo) for its correlation with the flipped kernel to give dx (H, W):
        kh - 1 - top rows on top, and what makes Ho + top' + bottom' = H + kh - 1."""
        (kh, kw), (top, _, left, _) = self.kernel_size, self._pads()
        top_, left_ = kh - 1 - top, kw - 1 - left
        return (top_, h + kh - 1 - ho - top_, left_, w + kw - 1 - wo - left_)


def _correlate(x, kt, pads, out, bias=None, relu=False):
    """out[f, h, n, w] = bias[f] + sum_{i, j, c} xpad[c, h + i, n, w + j] K[i, j, c, f] on planes
    x (C, H, N, W) and out (F, Ho, N, Wo), with kt (kh, F, kw*C) holding the K_i^T. Per block
    of output rows, Y = sum_i K_i^T @ X_i (one product of the K_i^T side by side when
    ``widened`` stacks the kernel rows), written straight into out's rows and finished there
    while still in cache: the bias, if given (shape (F, 1)), then max(., 0) if ``relu``.
    Returns out."""
    xp = get_array_module(x)
    kh, f, kwc = kt.shape
    c = x.shape[0]
    _, _, n, wo = out.shape
    s = stacked_rows(kh, kwc // c, c)                                         # kernel rows per product
    kt = kt.reshape(kh // s, s, f, kwc).transpose(0, 2, 1, 3).reshape(kh // s, f, s * kwc)   # (kh/s, F, s*kw*C)
    row = n * wo                                                              # columns per image row
    in_place = out.strides[1:] == (row * out.itemsize, wo * out.itemsize, out.itemsize)   # planes stored as planes
    zeros = None
    for rows, xw in widened(x, kh, kwc // c, pads, f):
        m = (rows.stop - rows.start) * row
        if in_place:                                                          # out's rows: (F, rows*N*Wo), a view
            y = out[:, rows].reshape(f, m)
        else:                                                                 # out is some other view: a buffer
            y = scratch("correlation", (f, m), x.dtype, xp)
        xp.matmul(kt[0], xw[:, :m], out=y)
        product = scratch("product", y.shape, x.dtype, xp)
        for g in range(1, kh // s):
            y += xp.matmul(kt[g], xw[:, g * s * row : g * s * row + m], out=product)
        if bias is not None:
            y += bias
        if relu:                    # max(y, 0) against zeros that broadcast over the planes: NumPy's
            if zeros is None:       # maximum with a scalar is 3x slower
                zeros = xp.zeros(m, x.dtype)
            xp.maximum(y, zeros[:m], out=y)
        if not in_place:
            out[:, rows] = y.reshape(f, -1, n, wo)
    return out


def _kernel_gradient(x, dy, pads, out):
    """out (kh, kw, C, F) = dL/dK from the planes x (C, H, N, W) and dy (F, Ho, N, Wo), the
    latter contiguous: dK_i = X_i @ dY^T, block by block of output rows, with X_i widened
    again from x (not kept since the forward pass); one product for all the kernel rows
    when ``widened`` stacks them. Returns out."""
    xp = get_array_module(x)
    kh, kw, c, f = out.shape
    _, _, n, wo = dy.shape
    row = n * wo
    s = stacked_rows(kh, kw, c)                                               # kernel rows per product
    dk = out.reshape(kh // s, s * kw * c, f)                                  # dK_g: (s*kw*C, F)
    for rows, xw in widened(x, kh, kw, pads, f):
        m = (rows.stop - rows.start) * row
        dyt = dy[:, rows].reshape(f, m).T                                     # dY^T (rows*N*Wo, F), a view
        for g in range(kh // s):
            xg = xw[:, g * s * row : g * s * row + m]                         # X_g (s*kw*C, rows*N*Wo)
            if rows.start == 0:
                xp.matmul(xg, dyt, out=dk[g])                                 # the first block
            else:                                                             # the others add on
                dk[g] += xp.matmul(xg, dyt, out=scratch("dK_i", dk[g].shape, dk.dtype, xp))
    return out


def _plane_sums(a, out):
    """out = a @ 1: the sums along the rows of a 2-D array (a channel's plane each), as a
    matrix-vector product (BLAS, several times faster than ``a.sum(axis=1)``)."""
    xp = get_array_module(a)
    return xp.matmul(a, xp.ones(a.shape[1], dtype=a.dtype), out=out)


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

    def forward(self, x, out=None):
        """y = the transposed convolution of x, written into ``out`` if given, else a new array."""
        self._check_input(x, self.in_channels)
        xp = get_array_module(x)
        n, h, w, _ = x.shape
        kh, kw = self.kernel_size
        shape = self.output_shape(x.shape)
        f = self.filters
        xf = flat_planes(x)                                                   # X (C, H*N*W)
        k = self.params["kernel"].astype(x.dtype, copy=False)                  # (kh, kw, F, C)
        s = self.strides[0]
        z = scratch("transposed windows", (kh, kw, f, h, n, w), x.dtype, xp)      # the K_ij @ X
        xp.matmul(k.reshape(kh * kw * f, -1), xf, out=z.reshape(kh * kw * f, -1))   # (kh*kw*F, C) @ (C, H*N*W)
        bias = self.params["bias"].astype(x.dtype, copy=False).reshape(f, 1, 1, 1) if "bias" in self.params else None
        y = self._output(shape, x.dtype, xp, out)
        yp = planes(y)                                                        # (F, Ho, N, Wo)
        if (kh, kw) == self.strides:                                          # windows tile y: y[window ij] = K_ij X + b
            for i in range(kh):
                for j in range(kw):
                    window = yp[:, strided(i, h, s), :, strided(j, w, s)]
                    if bias is None:
                        window[...] = z[i, j]
                    else:
                        xp.add(z[i, j], bias, out=window)
        else:                                                                 # windows overlap: col2im
            yp[...] = 0 if bias is None else bias
            for i in range(kh):
                for j in range(kw):
                    add_shifted(yp, z[i, j], i, j, stride=s)
        self._cache = x
        return y

    def backward(self, dy):
        x = self._cache
        xp = get_array_module(dy)
        n, h, w, c = x.shape
        kh, kw = self.kernel_size
        f = self.filters
        xf = flat_planes(x)                                                   # X (C, H*N*W)
        k = self.params["kernel"].astype(dy.dtype, copy=False).reshape(kh * kw * f, c)   # the K_ij stacked
        dz = scratch("transposed windows", (kh * kw, f, h, n, w), dy.dtype, xp)   # the dY_ij stacked
        for i in range(kh):
            for j in range(kw):
                shifted(planes(dy), i, j, dz[i * kw + j], stride=self.strides[0])
        dz = dz.reshape(kh * kw * f, -1)                                      # (kh*kw*F, N*H*W)
        dkernel = self._grad_buffer("kernel", dy.dtype)
        xp.matmul(dz, xf.T, out=dkernel.reshape(kh * kw * f, c))              # dK_ij = dY_ij X^T, all at once
        self._store_grad("kernel", dkernel)
        if "bias" in self.params:
            dbias = self._grad_buffer("bias", dy.dtype)
            self._store_grad("bias", _plane_sums(flat_planes(dy), dbias))
        dx = xp.empty((c, h, n, w), dtype=dy.dtype)                           # dX's planes
        xp.matmul(k.T, dz, out=dx.reshape(c, -1))                             # dX = sum_ij K_ij^T dY_ij
        return layout.nhwc(dx)
