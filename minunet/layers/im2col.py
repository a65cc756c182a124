"""im2col and its adjoint, as a loop over the kh*kw kernel offsets.

For a kernel offset (i, j), the pixels that it multiplies form one strided slice of
the zero-padded input. im2col copies those slices one after another::

    cols[i, j, n, y, x, c] = xpad[n, s*y + i, s*x + j, c]

Each copy fills one contiguous block of ``cols`` from rows of the input that are
themselves contiguous (W*C floats), so it runs at memory speed; a convolution is
then one matrix product per offset, ``sum_ij cols[i, j] @ K[i, j]``. The padding is
never built: ``span`` gives, per offset, the part of the block that reads real pixels;
the rest of the block stays zero. A caller that keeps ``cols`` between steps (same
shape) reuses it: the zeros are already there and no memory is allocated.

The adjoint, col2im, adds each block back where it came from, ``dx[span] +=
block[span]``; the layers fuse it with each offset's matrix product. The loops run
kh*kw times (9 for a 3x3 kernel), never over pixels or over the batch, and use only
slicing, so they are the same code on NumPy and CuPy.
"""
from ..backend import get_array_module


def out_size(size, k, stride, pad=(0, 0)):
    """Number of windows of width k, step `stride`, in `size` padded by pad[0] + pad[1]."""
    return (size + pad[0] + pad[1] - k) // stride + 1


def span(i, pad, size, n_out, stride=1):
    """For kernel offset i along one axis: (slice of the outputs, slice of the input) where
    output y reads input row s*y + i - pad inside [0, size); None when there is none."""
    lo = max(0, -(-(pad - i) // stride))                   # first y with s*y + i - pad >= 0
    hi = min(n_out, (size - 1 + pad - i) // stride + 1)    # one past the last y inside
    if hi <= lo:
        return None
    start = stride * lo + i - pad
    return slice(lo, hi), slice(start, start + stride * (hi - lo - 1) + 1, stride)


def im2col(x, kh, kw, pads=((0, 0), (0, 0)), stride=1, out=None):
    """(N, H, W, C) -> (kh, kw, N, Ho, Wo, C) of x zero-padded by ``pads`` ((top, bottom),
    (left, right)). ``out``, if given, is a zero-bordered buffer from an earlier call."""
    xp = get_array_module(x)
    n, h, w, c = x.shape
    ho, wo = out_size(h, kh, stride, pads[0]), out_size(w, kw, stride, pads[1])
    shape = (kh, kw, n, ho, wo, c)
    if out is None or out.shape != shape or out.dtype != x.dtype:
        out = xp.zeros(shape, dtype=x.dtype)
    for i in range(kh):
        rows = span(i, pads[0][0], h, ho, stride)
        for j in range(kw):
            cols = span(j, pads[1][0], w, wo, stride)
            if rows and cols:
                out[i, j, :, rows[0], cols[0]] = x[:, rows[1], cols[1]]
    return out
