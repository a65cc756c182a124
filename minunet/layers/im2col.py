"""The input as one kernel offset sees it: im2col a few offsets at a time.

A kh x kw convolution is a sum of kh*kw shifted 1x1 convolutions. For kernel
offset (i, j), every output pixel reads the input pixel (s*y + i, s*x + j) of the
zero-padded input, so the whole layer is::

    Y = sum_ij shifted(x, i, j) @ K[i, j]          shifted(x, i, j): (N*Ho*Wo, C)

``shifted`` copies that strided window into a (N, Ho, Wo, C) buffer: a copy of rows
that are contiguous in the input (W*C floats), so it runs at memory speed. The
layers stack g windows side by side, im2col for a group of g offsets, and make one
product per group: ``offset_groups`` picks g. The full (N*Ho*Wo, kh*kw*C) matrix is
built only when C is tiny, and the layers recompute the windows in the backward
pass instead of keeping nine copies of their input.

The padding is never built either: ``span`` gives, per offset, the outputs that read
real pixels and the input rows they read; the buffer's other rows and columns are
zeroed. The adjoint (col2im) adds a block back where it came from:
``dx[:, rows_in, cols_in] += block[:, rows_out, cols_out]``. Loops run over the kh*kw
offsets, never over pixels or over the batch, and use only slicing: the same code on
NumPy and CuPy.
"""


MIN_COLUMNS = 16


def offset_groups(kh, kw, c):
    """The kernel offsets (i, j), row-major, in equal groups: one matrix product each.

    g offsets per group, the fewest (a divisor of kh*kw) that give the product
    X_g (N*Ho*Wo, g*C) @ K_g (g*C, F) at least MIN_COLUMNS columns. A product with
    fewer columns is slow per FLOP: with C = 1 (a grayscale image) and one offset
    at a time, the first layer of the U-Net took longer than the second. Larger
    groups cost strided copies (each pixel's C values land g*C apart), which lose to
    one offset at a time once C >= 16 (benchmarks/RESULTS.md).
    """
    n = kh * kw
    g = next(g for g in range(1, n + 1) if n % g == 0 and (g * c >= MIN_COLUMNS or g == n))
    offsets = [(i, j) for i in range(kh) for j in range(kw)]
    return [offsets[k : k + g] for k in range(0, n, g)]


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


def shifted(x, i, j, out, pads=(0, 0), stride=1):
    """Fill ``out`` (N, Ho, Wo, C) with what kernel offset (i, j) reads from x (N, H, W, C)
    zero-padded by ``pads`` = (top, left): out[n, y, x] = xpad[n, s*y + i, s*x + j]."""
    _, h, w, _ = x.shape
    _, ho, wo, _ = out.shape
    rows, cols = span(i, pads[0], h, ho, stride), span(j, pads[1], w, wo, stride)
    if rows is None or cols is None:
        out[...] = 0
        return out
    out[:, rows[0], cols[0]] = x[:, rows[1], cols[1]]
    out[:, : rows[0].start] = 0                            # rows and columns that read the padding
    out[:, rows[0].stop :] = 0
    out[:, :, : cols[0].start] = 0
    out[:, :, cols[0].stop :] = 0
    return out


def add_shifted(dx, block, i, j, pads=(0, 0), stride=1):
    """The adjoint of ``shifted`` (col2im, one offset): dx[n, s*y + i - top, s*x + j - left]
    += block[n, y, x] wherever that pixel is a real one, not padding."""
    _, h, w, _ = dx.shape
    _, ho, wo, _ = block.shape
    rows, cols = span(i, pads[0], h, ho, stride), span(j, pads[1], w, wo, stride)
    if rows is not None and cols is not None:
        dx[:, rows[1], cols[1]] += block[:, rows[0], cols[0]]
    return dx
