"""im2col and its adjoint col2im, as a loop over the kh*kw kernel offsets.

For a kernel offset (i, j), the pixels that it multiplies form one strided
slice of the (padded) input. Copying those kh*kw slices side by side turns a
convolution into one matrix product::

    cols[n, y, x, i, j, c] = x[n, s*y + i, s*x + j, c]

col2im is the adjoint (transpose) of that linear map: it adds each slice back
where it came from, summing where windows overlap. The loop runs kh*kw times
(9 for a 3x3 kernel), never over pixels or over the batch, and uses only
slicing, so it is the same code on NumPy and CuPy.
"""
from ..backend import get_array_module


def out_size(size, k, stride):
    """Number of windows of width k, step `stride`, that fit in `size`."""
    return (size - k) // stride + 1


def im2col(x, kh, kw, stride=1):
    """(N, Hp, Wp, C) -> (N, Ho, Wo, kh, kw, C), with Ho = (Hp - kh) // stride + 1."""
    xp = get_array_module(x)
    n, hp, wp, c = x.shape
    ho, wo = out_size(hp, kh, stride), out_size(wp, kw, stride)
    cols = xp.empty((n, ho, wo, kh, kw, c), dtype=x.dtype)
    for i in range(kh):
        for j in range(kw):
            cols[:, :, :, i, j, :] = x[:, i : i + stride * (ho - 1) + 1 : stride, j : j + stride * (wo - 1) + 1 : stride, :]
    return cols


def col2im(cols, hp, wp, stride=1):
    """Adjoint of im2col: (N, Ho, Wo, kh, kw, C) -> (N, hp, wp, C), overlaps summed."""
    xp = get_array_module(cols)
    n, ho, wo, kh, kw, c = cols.shape
    x = xp.zeros((n, hp, wp, c), dtype=cols.dtype)
    for i in range(kh):
        for j in range(kw):
            x[:, i : i + stride * (ho - 1) + 1 : stride, j : j + stride * (wo - 1) + 1 : stride, :] += cols[:, :, :, i, j, :]
    return x
