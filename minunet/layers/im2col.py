"""im2col and its adjoint col2im, as a loop over the kh*kw kernel offsets.

For a kernel offset (i, j), the pixels that it multiplies form one strided
slice of the (padded) input. im2col copies those slices one after another::

    cols[i, j, n, y, x, c] = x[n, s*y + i, s*x + j, c]

Each copy fills one contiguous block of ``cols`` from rows of the input that are
themselves contiguous (W*C floats), so it runs at memory speed; a convolution is
then one matrix product per offset, ``sum_ij cols[i, j] @ K[i, j]``.

Its adjoint, col2im, adds each block back where it came from, summing where
windows overlap: ``out[window(i, j)] += block_ij``. The layers fuse it with the
matrix product of each offset (no (kh, kw, ...) buffer is built for it). The loops
run kh*kw times (9 for a 3x3 kernel), never over pixels or over the batch, and use
only slicing, so they are the same code on NumPy and CuPy.
"""
from ..backend import get_array_module


def out_size(size, k, stride):
    """Number of windows of width k, step `stride`, that fit in `size`."""
    return (size - k) // stride + 1


def window(i, j, ho, wo, stride=1):
    """The strided slice of a (padded) NHWC array that kernel offset (i, j) reads."""
    return (slice(None), slice(i, i + stride * (ho - 1) + 1, stride), slice(j, j + stride * (wo - 1) + 1, stride))


def im2col(x, kh, kw, stride=1):
    """(N, Hp, Wp, C) -> (kh, kw, N, Ho, Wo, C), with Ho = (Hp - kh) // stride + 1."""
    xp = get_array_module(x)
    n, hp, wp, c = x.shape
    ho, wo = out_size(hp, kh, stride), out_size(wp, kw, stride)
    cols = xp.empty((kh, kw, n, ho, wo, c), dtype=x.dtype)
    for i in range(kh):
        for j in range(kw):
            cols[i, j] = x[window(i, j, ho, wo, stride)]
    return cols
