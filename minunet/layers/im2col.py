"""The input as kernel offsets see it: im2col with slices, on channel planes.

The layers work on the (C, H, N, W) planes of their NHWC arrays (``layout``): a
matrix product then reads and writes whole planes, and a copy moves rows of pixels.

A kh x kw convolution is a sum of kh*kw shifted 1x1 convolutions. For kernel offset
(i, j), every output pixel reads the input pixel (s*y + i, s*x + j) of the zero-padded
input, so the whole layer is::

    Y = sum_ij K[i, j]^T @ shifted(x, i, j)          shifted(x, i, j): (C, Ho*N*Wo)

``shifted`` copies that strided window into (C, Ho, N, Wo) planes; ``add_shifted`` is
its adjoint (col2im, one offset): it adds planes back where they came from. The
transposed convolution uses them, and the pooling layers ``strided``.

Conv2D uses ``widened``: the kw windows of one kernel row stacked, rows of the image
before images, so that the kh kernel rows read kh column ranges of one matrix. That
is kw window copies and kh products with kw*C rows, instead of kh*kw of each, and it
is built a block of output rows at a time: small enough to stay in cache, large enough
for long products (``rows_per_block``). An input of few channels (the network's image:
kw*C = 3) has its kernel rows stacked as well, all kh*kw windows: one product with
kh*kw*C rows instead of kh with 3 (``stacked_rows``).

The padding is never built: ``span`` gives, per offset, the outputs that read real
pixels and the input rows they read; the other rows and columns of a buffer are
zeroed. Loops run over kernel offsets and blocks of rows, never over pixels or over
the batch, and use only slicing: the same code on NumPy and CuPy.
"""
from ..backend import get_array_module
from .scratch import scratch

BLOCK_BYTES = 12 << 20  # a widened block of about this size: few re-widened halo rows (RESULTS.md, round 8)
BLOCK_PIXELS = 4096     # but makes at least this many output pixels (RESULTS.md, seventh round)
NARROW = 8              # fewer product rows (kw*C) than this: the kernel rows are stacked too


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
    """Fill the planes ``out`` (C, Ho, N, Wo) with what kernel offset (i, j) reads from the
    planes x (C, H, N, W): out[c, y, n, x] = x[c, s*y + i, n, s*x + j], zero outside x."""
    _, h, _, w = x.shape
    _, ho, _, wo = out.shape
    rows, cols = span(i, 0, h, ho, stride), span(j, 0, w, wo, stride)
    if rows is None or cols is None:
        out[...] = 0
        return out
    out[:, rows[0], :, cols[0]] = x[:, rows[1], :, cols[1]]
    out[:, : rows[0].start] = 0                            # rows and columns that read the padding
    out[:, rows[0].stop :] = 0
    out[..., : cols[0].start] = 0
    out[..., cols[0].stop :] = 0
    return out


def add_shifted(dx, block, i, j, stride=1):
    """The adjoint of ``shifted`` (col2im, one offset), on planes:
    dx[c, s*y + i, n, s*x + j] += block[c, y, n, x] wherever that pixel lies inside dx."""
    _, h, _, w = dx.shape
    _, ho, _, wo = block.shape
    rows, cols = span(i, 0, h, ho, stride), span(j, 0, w, wo, stride)
    if rows is not None and cols is not None:
        dx[:, rows[1], :, cols[1]] += block[:, rows[0], :, cols[0]]
    return dx


def rows_per_block(n_rows, kh, row_bytes, kernel_bytes, row_pixels):
    """How many output rows ``widened`` puts in a block: the block (kh - 1 rows more) is
    at most about BLOCK_BYTES, to stay in cache while kh products read it, but at least as
    large as the kernel, which every block's products read again (the bottom of the U-Net,
    where a 3x3 kernel of 2048 x 1024 is 75 MB, runs in one block), and at least
    BLOCK_PIXELS output pixels (rows of ``row_pixels``): a wide layer's rows are large (8
    images x 128 pixels x 384 floats is 1.5 MB), and blocks of one or two rows would widen
    kh - 1 extra rows for each and make products too short to run at full rate. The rows
    are then shared out evenly among as many blocks as that needs: no short last block,
    which would widen its kh - 1 extra rows for a few rows of output."""
    most = max(BLOCK_BYTES, kernel_bytes) // row_bytes - (kh - 1)
    most = max(1, min(n_rows, max(most, -(-BLOCK_PIXELS // row_pixels))))
    blocks = -(-n_rows // most)
    return -(-n_rows // blocks)


def stacked_rows(kh, kw, c):
    """How many kernel rows one widened block stacks: 1, or all kh when the input has so
    few channels that a kernel row's product would have fewer than NARROW rows (kw*C):
    matrix products that thin run several times below the machine's rate."""
    return kh if kw * c < NARROW else 1


def widened(x, kh, kw, pads, out_channels):
    """im2col along the width, on planes, a block of output rows at a time.

    For the planes x (C, H, N, W) zero-padded by pads = (top, bottom, left, right),
    output rows Ho = H + top + bottom - kh + 1 and columns Wo = W + left + right - kw + 1,
    yields (rows, xw) for consecutive blocks ``rows`` of output rows, where xw is an
    (s*kw*C, (len(rows) + kh - s)*N*Wo) matrix, s = ``stacked_rows(kh, kw, C)``:

        xw[(i, j, c), (r, n, w)] = xpad[c, rows.start + r + i, n, w + j]       i < s

    the kw planes a kernel row reads, stacked, for s kernel rows. Image rows come before
    images so that what kernel rows g*s ... g*s + s - 1 read for the block is a range of
    columns, X_g = xw[:, g*s*N*Wo : (g*s + len(rows))*N*Wo], an (s*kw*C, len(rows)*N*Wo)
    matrix without a copy: kh products for s = 1, one (all of xw) for s = kh. Blocks are
    sized by ``rows_per_block`` (the block of the output they make has ``out_channels``
    planes); one scratch buffer serves every block. s*kw window copies per block, each
    moving whole planes. A 1x1 window without padding reads x itself: its blocks are
    views of x's planes, when they are stored contiguously (the network's head), no copy.
    """
    xp = get_array_module(x)
    top, bottom, left, right = pads
    c, h, n, w = x.shape
    s = stacked_rows(kh, kw, c)
    ho, wo = h + top + bottom - kh + 1, w + left + right - kw + 1
    block = rows_per_block(ho, kh, n * wo * max(s * kw * c, out_channels) * x.itemsize,
                           kh * kw * c * out_channels * x.itemsize, n * wo)
    itself = (kh, kw) == (1, 1) and not any(pads) and x.flags.c_contiguous
    for start in range(0, ho, block):
        rows = slice(start, min(ho, start + block))
        if itself:
            yield rows, x[:, rows].reshape(c, -1)                           # (C, rows*N*W), a view
            continue
        extent = rows.stop - start + kh - s                                 # image rows per kernel row
        xw = scratch("widened", (s, kw, c, extent, n, wo), x.dtype, xp)
        for i in range(s):
            first = start + i                                               # the padded row it starts at
            lo = max(first - top, 0)                                        # the real input rows it reads
            hi = max(lo, min(first + extent - top, h))
            xw[i, :, :, : lo + top - first] = 0                             # rows of padding
            xw[i, :, :, hi + top - first :] = 0
            for j in range(kw):
                block_j = xw[i, j, :, lo + top - first : hi + top - first]  # (C, real rows, N, Wo)
                cols = span(j, left, w, wo)
                if cols is None:
                    block_j[...] = 0
                    continue
                if wo == w:     # 'same': one copy of the rows, flattened, shifted by j - left pixels
                    _shift_copy(block_j, x[:, lo:hi], j - left)
                else:
                    block_j[..., cols[0]] = x[:, lo:hi, :, cols[1]]
                block_j[..., : cols[0].start] = 0                           # columns of padding
                block_j[..., cols[0].stop :] = 0
        yield rows, xw.reshape(s * kw * c, -1)                              # (s*kw*C, (rows + kh - s)*N*Wo)


def _shift_copy(out, x, shift):
    """out[c, r, n, w] = x[c, r, n, w + shift] for planes of equal shape (C, R, N, W), out
    contiguous in each plane, as one copy of whole planes: flattened, every row's pixels
    run on into the next row's. So each row's |shift| pixels at one end receive the
    neighbour row's pixels (or are left as they were, at the plane's ends): those are the
    padding columns, which the caller zeroes. Rows of W pixels per copy would be short at
    the bottom of the U-Net (W = 4)."""
    c = x.shape[0]
    dst, src = out.reshape(c, -1), x.reshape(c, -1)         # (C, R*N*W); dst a view of out
    lo, hi = max(0, -shift), dst.shape[1] - max(0, shift)
    dst[:, lo:hi] = src[:, lo + shift : hi + shift]
