"""The input as kernel offsets see it: im2col with slices.

A kh x kw convolution is a sum of kh*kw shifted 1x1 convolutions. For kernel offset
(i, j), every output pixel reads the input pixel (s*y + i, s*x + j) of the zero-padded
input, so the whole layer is::

    Y = sum_ij shifted(x, i, j) @ K[i, j]          shifted(x, i, j): (N*Ho*Wo, C)

``shifted`` copies that strided window into an (N, Ho, Wo, C) buffer (rows of W*C
floats, contiguous in the input, so at memory speed); ``add_shifted`` is its adjoint
(col2im, one offset): it adds a block back where it came from. The transposed
convolution uses them, and the pooling layers ``strided``.

Conv2D uses ``widened``: the kw windows of one kernel row side by side, laid out rows
first, so that the kh kernel rows read kh contiguous blocks of one buffer. That is kw
window copies and kh products with kw*C columns, instead of kh*kw of each, and it is
built a block of output rows at a time, small enough to stay in cache.

The padding is never built: ``span`` gives, per offset, the outputs that read real
pixels and the input rows they read; the other rows and columns of a buffer are
zeroed. Loops run over kernel offsets and blocks of rows, never over pixels or over
the batch, and use only slicing: the same code on NumPy and CuPy.
"""
from ..backend import get_array_module
from .scratch import scratch

BLOCK_BYTES = 8 << 20   # a widened block of about this size stays in cache (benchmarks/RESULTS.md)


def strided(i, n, stride=1):
    """The slice i, i + s, ..., i + s*(n - 1): what offset i of n windows with step s reads."""
    return slice(i, i + stride * (n - 1) + 1, stride)


def span(i, pad, size, n_out, stride=1):
    """For kernel offset i along one axis: (slice of the outputs, slice of the input) where
    output y reads input row s*y + i - pad inside [0, size); None when there is none."""
    lo = max(0, -(-(pad - i) // stride))                   # first y with s*y + i - pad >= 0
    hi = min(n_out, (size - 1 + pad - i) // stride + 1)    # one past the last y inside
    if hi <= lo:
        return None
    return slice(lo, hi), strided(stride * lo + i - pad, hi - lo, stride)


def shifted(x, i, j, out, stride=1):
    """Fill ``out`` (N, Ho, Wo, C) with what kernel offset (i, j) reads from x (N, H, W, C):
    out[n, y, x] = x[n, s*y + i, s*x + j], zero where that lies outside x."""
    _, h, w, _ = x.shape
    _, ho, wo, _ = out.shape
    rows, cols = span(i, 0, h, ho, stride), span(j, 0, w, wo, stride)
    if rows is None or cols is None:
        out[...] = 0
        return out
    out[:, rows[0], cols[0]] = x[:, rows[1], cols[1]]
    out[:, : rows[0].start] = 0                            # rows and columns that read the padding
    out[:, rows[0].stop :] = 0
    out[:, :, : cols[0].start] = 0
    out[:, :, cols[0].stop :] = 0
    return out


def add_shifted(dx, block, i, j, stride=1):
    """The adjoint of ``shifted`` (col2im, one offset): dx[n, s*y + i, s*x + j] += block[n, y, x]
    wherever that pixel lies inside dx."""
    _, h, w, _ = dx.shape
    _, ho, wo, _ = block.shape
    rows, cols = span(i, 0, h, ho, stride), span(j, 0, w, wo, stride)
    if rows is not None and cols is not None:
        dx[:, rows[1], cols[1]] += block[:, rows[0], cols[0]]
    return dx


def widened(x, kh, kw, pads, out_channels):
    """im2col along the width, rows first, a block of output rows at a time.

    For x (N, H, W, C) zero-padded by pads = (top, bottom, left, right), output rows
    Ho = H + top + bottom - kh + 1 and columns Wo = W + left + right - kw + 1, yields
    (rows, xw) for consecutive blocks ``rows`` of output rows, where

        xw[r, n, w, j*C + c] = xpad[n, rows.start + r, w + j, c]      r < len(rows) + kh - 1

    each pixel beside the kw pixels its kernel row reads. Rows come first so that what
    kernel row i reads for the block, xw[i : i + len(rows)], is one contiguous block: an
    (len(rows)*N*Wo, kw*C) matrix without a copy. A block, and the block of the output
    it makes (``out_channels`` per pixel), are at most about BLOCK_BYTES, so they stay
    in the processor's cache while the products read the block kh times; one scratch
    buffer serves every block. kw window copies per block, not kh*kw.
    """
    xp = get_array_module(x)
    top, bottom, left, right = pads
    n, h, w, c = x.shape
    ho, wo = h + top + bottom - kh + 1, w + left + right - kw + 1
    row_bytes = n * wo * max(kw * c, out_channels) * x.itemsize
    block = max(1, min(ho, BLOCK_BYTES // row_bytes - (kh - 1)))
    buffer = scratch("widened", (block + kh - 1, n, wo, kw * c), x.dtype, xp)
    src = x.transpose(1, 0, 2, 3)                            # (H, N, W, C), a view
    for start in range(0, ho, block):
        rows = slice(start, min(ho, start + block))
        xw = buffer[: rows.stop - start + kh - 1]
        # the real input rows it reads: at least one, as no padding is a kernel high
        lo, hi = max(start - top, 0), min(rows.stop + kh - 1 - top, h)
        xw[: lo + top - start] = 0                           # rows of padding
        xw[hi + top - start :] = 0
        for j in range(kw):
            block_j = xw[lo + top - start : hi + top - start, :, :, j * c : (j + 1) * c]
            cols = span(j, left, w, wo)
            if cols is None:
                block_j[...] = 0
                continue
            block_j[:, :, cols[0]] = src[lo:hi, :, cols[1]]
            block_j[:, :, : cols[0].start] = 0               # columns of padding
            block_j[:, :, cols[0].stop :] = 0
        yield rows, xw
