"""The fast engine: the operations the layers are written in, and all that makes them fast.

Each function computes one operation of ``minunet/textbook.py`` and says which in its
docstring; the tests prove them equal (tests/test_textbook.py, tests/test_layers.py).
Arguments and results are NHWC arrays, ``a[n, h, w, c]``, as everywhere in minunet.
Inside, the engine works on the channel planes of those arrays (``layout``): the
(C, H, N, W) view, in which a matrix product reads and writes whole planes. Its results
are stored that way, so the next layer reads them without a copy.

What is here, and what each piece buys (measured: docs/READING.md, "The ledger"):

- ``correlate``: a convolution as kh matrix products per block of output rows, on the
  ``im2col_blocks`` of its input, with the bias and the ReLU (``relu_in_place``) applied
  to each block while it is in cache. ``kernel_gradient``: the same blocks against dy.
- ``im2col_blocks``: im2col one block of output rows at a time, widened along the width
  only (kw window copies, not kh*kw), padding never built, in one ``scratch`` buffer.
- ``rows_as_channels``: for an input of few channels, the kh kernel rows stacked into
  one product (a product with 3 rows runs far below the machine's rate).
- ``flipped``: the kernel of the input gradient, laid out for its products.
- ``im2col`` / ``col2im`` with a stride, ``pixelwise`` and ``product_over_pixels``: the
  transposed convolution's pieces, each one slice copy per kernel offset or one product;
  its patches, used at once, in one ``scratch`` buffer for both passes.
- ``scratch``: buffers kept between calls, so that a step does not fault in fresh pages.

Loops run over kernel offsets and blocks of rows, never over pixels or over the batch,
and use only slicing and ``xp``'s functions: the same code on NumPy and CuPy.
"""
import threading
from math import prod

import numpy as np

from ..backend import get_array_module
from . import layout
from .layout import flat_planes, planes

BLOCK_BYTES = 12 << 20  # an im2col block of about this size, so that few halo rows are copied twice
BLOCK_PIXELS = 4096     # but a block makes at least this many output pixels: long products
NARROW = 8              # kernel rows of fewer product rows (kw*C) than this are stacked: rows_as_channels


# --------------------------------------------------------------------- windows
def strided(i, count, stride=1):
    """The slice i, i + s, ..., i + s*(count - 1): what offset i of count windows with step s reads."""
    return slice(i, i + stride * (count - 1) + 1, stride)


def inside(i, pad, size, n_out):
    """For kernel offset i along one axis of an input of ``size`` padded by ``pad`` in front:
    (outputs, inputs), the slice of outputs y that read a real pixel, y + i - pad in
    [0, size), and the slice of those pixels; None when no output does."""
    first = max(0, pad - i)
    stop = min(n_out, size + pad - i)
    if stop <= first:
        return None
    return slice(first, stop), slice(first + i - pad, stop + i - pad)


def rows_per_block(n_rows, kh, row_bytes, kernel_bytes, row_pixels):
    """How many output rows an ``im2col_blocks`` block holds: the block (kh - 1 halo rows
    more) is at most about BLOCK_BYTES, so that few halo rows are copied twice, but at
    least as large as the kernel, which every block's products read again (the bottom of
    the U-Net runs in one block), and at least BLOCK_PIXELS output pixels (rows of
    ``row_pixels``), so that each product is long. The rows are then shared out evenly
    among as many blocks as that needs: no short last block."""
    most = max(BLOCK_BYTES, kernel_bytes) // row_bytes - (kh - 1)
    most = max(1, min(n_rows, max(most, -(-BLOCK_PIXELS // row_pixels))))
    blocks = -(-n_rows // most)
    return -(-n_rows // blocks)


class Block:
    """im2col of a block of output rows, widened along the width: the matrix

        widened[(j, c), (r, n, w)] = xpad[n, rows.start + r, w + j, c]

    holds the kw windows of each pixel of the block's image rows, and the kh - 1 rows
    below it. Image rows come before images, so what kernel row i reads is the range of
    columns that starts i image rows later: ``kernel_row(i)``, no copy."""

    def __init__(self, rows, widened, row_pixels):
        self.rows = rows                                   # the output rows this block makes
        self.widened = widened                             # (kw*C, (rows + kh - 1) * N*Wo)
        self.row_pixels = row_pixels                       # N*Wo: pixels in one image row
        self.pixels = (rows.stop - rows.start) * row_pixels

    def kernel_row(self, i):
        """X_i (kw*C, pixels): X_i[(j, c), (r, n, w)] = xpad[n, rows.start + r + i, w + j, c]."""
        start = i * self.row_pixels
        return self.widened[:, start : start + self.pixels]


def im2col_blocks(x, kh, kw, pads, out_channels):
    """im2col of x (N, H, W, C) zero-padded by pads = (top, bottom, left, right), for a
    kh x kw kernel, as ``Block``s of consecutive output rows (``rows_per_block``; the
    block of the output they make has ``out_channels`` planes).

    Per block, kw copies of whole planes, each x shifted by j - left pixels; the padding
    is never built: the rows and columns of a block that read it are zeroed. One
    ``scratch`` buffer serves every block, valid until the next call."""
    xp = get_array_module(x)
    x = planes(x)                                                         # (C, H, N, W)
    top, bottom, left, right = pads
    c, h, n, w = x.shape
    ho, wo = h + top + bottom - kh + 1, w + left + right - kw + 1
    block_rows = rows_per_block(ho, kh, n * wo * max(kw * c, out_channels) * x.itemsize,
                                kh * kw * c * out_channels * x.itemsize, n * wo)
    for start in range(0, ho, block_rows):
        rows = slice(start, min(ho, start + block_rows))
        extent = rows.stop - start + kh - 1                               # image rows the block reads
        widened = scratch("im2col block", (kw, c, extent, n, wo), x.dtype, xp)
        rows_inside = inside(start, top, h, extent)                       # (the block's image rows, x's rows)
        if rows_inside is None:
            widened[...] = 0
        else:
            out_rows, in_rows = rows_inside
            widened[:, :, : out_rows.start] = 0                           # rows of padding
            widened[:, :, out_rows.stop :] = 0
            for j in range(kw):
                block_j = widened[j, :, out_rows]                         # (C, real rows, N, Wo)
                cols_inside = inside(j, left, w, wo)                      # (output columns, x's columns)
                if cols_inside is None:
                    block_j[...] = 0
                    continue
                out_cols, in_cols = cols_inside
                block_j[..., out_cols] = x[:, in_rows, :, in_cols]        # x shifted by j - left
                block_j[..., : out_cols.start] = 0                        # columns of padding
                block_j[..., out_cols.stop :] = 0
        yield Block(rows, widened.reshape(kw * c, -1), n * wo)            # widened (kw*C, extent * N*Wo)


def stacks_rows(kh, kw, c):
    """Whether ``rows_as_channels`` applies: a kernel row's product would have fewer than
    NARROW rows (kw*C), as for the network's image (kw*C = 3)."""
    return kh > 1 and kw * c < NARROW


def rows_as_channels(x, kh, pads):
    """A kh x kw correlation over C channels is a 1 x kw correlation over kh*C channels:
    returns (x', pads') with x'[n, r, w, (i, c)] = xpad[n, r + i, w, c], the padding rows
    built in, and ``kernel_rows_as_channels`` gives its kernel. One product of kh*kw*C rows
    per block instead of kh products of kw*C rows."""
    xp = get_array_module(x)
    top, bottom, left, right = pads
    n, h, w, c = x.shape
    ho = h + top + bottom - kh + 1
    stacked = layout.empty((n, ho, w, kh * c), x.dtype, xp)
    stacked_planes, x_planes = planes(stacked), planes(x)                 # (kh*C, Ho, N, W), (C, H, N, W)
    for i in range(kh):
        channels = stacked_planes[i * c : (i + 1) * c]
        rows_inside = inside(i, top, h, ho)                               # (stacked rows r, x's rows r + i - top)
        if rows_inside is None:
            channels[...] = 0
            continue
        out_rows, in_rows = rows_inside
        channels[:, out_rows] = x_planes[:, in_rows]
        channels[:, : out_rows.start] = 0
        channels[:, out_rows.stop :] = 0
    return stacked, (0, 0, left, right)


def kernel_rows_as_channels(kernel):
    """(kh, kw, C, F) -> (1, kw, kh*C, F): K'[0, j, (i, c), f] = K[i, j, c, f]."""
    kh, kw, c, f = kernel.shape
    return kernel.transpose(1, 0, 2, 3).reshape(1, kw, kh * c, f)


# ----------------------------------------------------------------- convolution
def correlate(x, kernel, pads, bias=None, relu=False):
    """textbook ``conv2d`` (``correlate`` of the padded x), then ``relu`` if asked:

        y[n, h, w, f] = bias[f] + sum_{i, j, c} xpad[n, h + i, w + j, c] kernel[i, j, c, f]

    for x (N, H, W, C), kernel (kh, kw, C, F) and pads (top, bottom, left, right). Per
    block of output rows, Y = sum_i K_i^T @ X_i with K_i = kernel[i] as a (kw*C, F) matrix
    and X_i the block's ``kernel_row(i)``; each product is written into the output's own
    rows, and the bias and max(y, 0) are applied while the block is in cache."""
    xp = get_array_module(x)
    kernel = kernel.astype(x.dtype, copy=False)
    if stacks_rows(kernel.shape[0], kernel.shape[1], x.shape[3]):
        x, pads = rows_as_channels(x, kernel.shape[0], pads)
        kernel = kernel_rows_as_channels(kernel)
    kh, kw, c, f = kernel.shape
    top, bottom, left, right = pads
    n, h, w, _ = x.shape
    y = layout.empty((n, h + top + bottom - kh + 1, w + left + right - kw + 1, f), x.dtype, xp)
    y_planes = planes(y)                                                  # (F, Ho, N, Wo)
    k_rows = kernel.reshape(kh, kw * c, f).transpose(0, 2, 1)             # K_i^T (F, kw*C), views
    for block in im2col_blocks(x, kh, kw, pads, f):
        y_block = y_planes[:, block.rows].reshape(f, block.pixels)        # (F, block pixels), a view
        xp.matmul(k_rows[0], block.kernel_row(0), out=y_block)
        product = scratch("product", y_block.shape, x.dtype, xp)
        for i in range(1, kh):
            y_block += xp.matmul(k_rows[i], block.kernel_row(i), out=product)
        if bias is not None:
            y_block += bias.astype(x.dtype, copy=False)[:, None]
        if relu:
            relu_in_place(y_block)
    return y


def relu_in_place(y):
    """y = max(y, 0), for y (F, pixels), against a row of zeros that broadcasts over the
    rows: NumPy's ``maximum`` with the scalar 0 runs without its SIMD loop (the ledger)."""
    xp = get_array_module(y)
    return xp.maximum(y, xp.zeros(y.shape[1], dtype=y.dtype), out=y)


def kernel_gradient(x, dy, pads, kernel_size, out=None):
    """textbook ``conv2d_backward``'s dK = X^T @ dY, the windows of x against dy:

        dK[i, j, c, f] = sum_{n, h, w} xpad[n, h + i, w + j, c] dy[n, h, w, f]

    for x (N, H, W, C), dy (N, Ho, Wo, F). dK_i = X_i @ dY^T, summed over the blocks of
    ``im2col_blocks``, which are made again from x (not kept since the forward pass: that
    would hold kw copies of every activation). Written into ``out`` (kh, kw, C, F) if
    given: the layer's gradient array, kept between steps."""
    xp = get_array_module(x)
    kh, kw = kernel_size
    c, f = x.shape[3], dy.shape[3]
    if stacks_rows(kh, kw, c):                                            # as a 1 x kw kernel over kh*C channels
        x, pads = rows_as_channels(x, kh, pads)
        dk = kernel_gradient(x, dy, pads, (1, kw))                        # (1, kw, kh*C, F)
        dk = dk.reshape(kw, kh, c, f).transpose(1, 0, 2, 3)               # undo kernel_rows_as_channels
    else:
        dk = out if out is not None and out.dtype == dy.dtype else xp.empty((kh, kw, c, f), dtype=dy.dtype)
        dk_rows = dk.reshape(kh, kw * c, f)                               # dK_i (kw*C, F), views
        dy = xp.ascontiguousarray(planes(dy))                             # (F, Ho, N, Wo)
        for block in im2col_blocks(x, kh, kw, pads, f):
            dy_block = dy[:, block.rows].reshape(f, block.pixels).T       # dY^T (block pixels, F), a view
            for i in range(kh):
                if block.rows.start == 0:                                 # the first block
                    xp.matmul(block.kernel_row(i), dy_block, out=dk_rows[i])
                else:                                                     # the others add on
                    partial = scratch("dK_i", dk_rows[i].shape, dk.dtype, xp)
                    dk_rows[i] += xp.matmul(block.kernel_row(i), dy_block, out=partial)
    if out is None:
        return xp.ascontiguousarray(dk)
    if dk is not out:
        out[...] = dk
    return out


def flipped(kernel):
    """textbook ``conv2d_backward``'s flipped kernel: K'[i, j, f, c] = K[kh-1-i, kw-1-j, c, f],
    turned by 180 degrees in space with its channels swapped, so that dx is dy correlated
    with K'. Copied into a buffer kept between calls, laid out (kh, C, kw, F) so that each
    K'_i^T that ``correlate`` multiplies by is contiguous (an element-wise transpose of the
    kernel would cost as much as the deepest layer's products); returned as its
    (kh, kw, F, C) view, valid until the next call."""
    xp = get_array_module(kernel)
    kh, kw, c, f = kernel.shape
    buffer = scratch("flipped kernel", (kh, c, kw, f), kernel.dtype, xp)
    buffer[...] = kernel[::-1, ::-1].transpose(0, 2, 1, 3)
    return buffer.transpose(0, 2, 3, 1)                                   # (kh, kw, F, C)


def sum_over_pixels(dy, out=None):
    """textbook's dbias: dy (N, H, W, F) summed over n, h and w, (F,)."""
    return flat_planes(dy).sum(axis=1, out=out)


# ------------------------------------------------------ transposed convolution
def pixelwise(x, matrix, kept=False):
    """y[n, h, w, :] = x[n, h, w, :] @ matrix, for x (N, H, W, C) and matrix (C, K): a 1x1
    convolution, one product (matrix^T @ X on the planes, so y is stored channel-major).
    With ``kept``, y is the ``scratch`` array "patches", valid until the next request: for
    a result used at once, which then faults in no fresh pages."""
    xp = get_array_module(x)
    n, h, w, _ = x.shape
    k = matrix.shape[1]
    if kept:
        y = layout.nhwc(scratch("patches", (k, h, n, w), x.dtype, xp))
    else:
        y = layout.empty((n, h, w, k), x.dtype, xp)
    xp.matmul(matrix.T, flat_planes(x), out=flat_planes(y))
    return y


def product_over_pixels(a, b, out=None):
    """The matrix product A^T @ B, (Ca, Cb), its inner index running over the pixels, for
    a (N, H, W, Ca) and b (N, H, W, Cb) seen as (pixels, C) matrices: the sum over pixels p
    of the outer products a[p]^T b[p]. (``sum_over_pixels`` is dy's plain sum, the bias
    gradient.)"""
    xp = get_array_module(a)
    return xp.matmul(flat_planes(a), flat_planes(b).T, out=out)


def im2col(x, kh, kw, stride):
    """textbook ``im2col`` with a stride and no padding: (N, Ho, Wo, kh*kw*C) with
    cols[n, h, w, (i, j, c)] = x[n, s*h + i, s*w + j, c], Ho = (H - kh) // s + 1 (so too
    Wo). One strided slice copy per kernel offset, into the ``scratch`` array "patches"
    (valid until the next request: the transposed convolution's backward uses it at once)."""
    xp = get_array_module(x)
    n, h, w, c = x.shape
    ho, wo = (h - kh) // stride + 1, (w - kw) // stride + 1
    cols = layout.nhwc(scratch("patches", (kh * kw * c, ho, n, wo), x.dtype, xp))   # (N, Ho, Wo, kh*kw*C)
    x_planes = planes(x)                                                  # (C, H, N, W)
    cols_planes = planes(cols).reshape(kh, kw, c, ho, n, wo)              # (kh, kw, C, Ho, N, Wo)
    for i in range(kh):
        for j in range(kw):
            cols_planes[i, j] = x_planes[:, strided(i, ho, stride), :, strided(j, wo, stride)]
    return cols


def col2im(cols, kh, kw, stride, out_shape, bias=None):
    """textbook ``col2im``, plus a bias: y of out_shape (N, H, W, F) = bias + each row of cols
    (N, Hc, Wc, kh*kw*F) added back where its window lies, y[n, s*h + i, s*w + j, f] +=
    cols[n, h, w, (i, j, f)], for out_shape = (N, (Hc - 1)*s + kh, (Wc - 1)*s + kw, F), the
    transposed convolution's. When the windows tile y (kernel size = stride, the U-Net's
    2x2 stride 2: then H = Hc*s, W = Wc*s) each pixel of y comes from one window: written
    once, not zeroed and added to."""
    xp = get_array_module(cols)
    n, hc, wc, _ = cols.shape
    f = out_shape[3]
    cols_planes = planes(cols).reshape(kh, kw, f, hc, n, wc)              # (kh, kw, F, Hc, N, Wc)
    bias_planes = None if bias is None else bias.astype(cols.dtype, copy=False).reshape(f, 1, 1, 1)
    y = layout.empty(out_shape, cols.dtype, xp)
    y_planes = planes(y)                                                  # (F, Ho, N, Wo)
    tiled = (kh, kw) == (stride, stride)
    if not tiled:
        y_planes[...] = 0 if bias is None else bias_planes
    for i in range(kh):
        for j in range(kw):
            window = y_planes[:, strided(i, hc, stride), :, strided(j, wc, stride)]
            if not tiled:
                window += cols_planes[i, j]
            elif bias is None:
                window[...] = cols_planes[i, j]
            else:
                xp.add(cols_planes[i, j], bias_planes, out=window)
    return y


# ----------------------------------------------------------------- the pool
_local = threading.local()


def scratch(name, shape, dtype, xp):
    """An uninitialized array of ``shape``: a view into one buffer per (name, array module,
    dtype), kept between calls and replaced by a larger one when a larger shape is asked
    for. Valid until the next request for the same name: a scratch array never leaves the
    call that asked for it (outputs, caches and gradients are arrays of their own). A
    fresh array of tens of MB costs the operating system's zeroing of its pages; the pool
    holds, per name, the largest buffer the process has needed. Each thread has its own."""
    pool = _local.__dict__.setdefault("pool", {})
    key = (name, xp.__name__, np.dtype(dtype).str)
    size = prod(shape)
    buffer = pool.get(key)
    if buffer is None or buffer.size < size:
        buffer = pool[key] = xp.empty(size, dtype=dtype)
    return buffer[:size].reshape(shape)
