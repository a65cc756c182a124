"""How activations lie in memory: NHWC arrays, stored channel by channel.

Every array a layer takes or returns is NHWC: shape (N, H, W, C), indexed
``a[n, h, w, c]``, as in Keras. The layers store what they make channel-major: one
plane of pixels per channel, rows before images, (C, H, N, W) in memory, and hand
out the NHWC view of it (a transpose: no copy). PyTorch's ``channels_last`` is the
same idea the other way round (NCHW shape, NHWC memory).

Why: a 3x3 convolution copies its input shifted by one pixel (``engine.im2col_blocks``)
and multiplies matrices whose rows are whole planes. Channel-major, the copies move
rows of W pixels and the products read and write the planes in place; channels-last,
they would move C floats at a time and every layer would transpose its output back.

Any NHWC array is a valid input, whatever its memory order (a user's batch is
C-ordered); ``planes`` then is a strided view, and only speed changes. Element-wise
operations keep the order of their operands, so ReLU's output is channel-major too.
"""


def planes(a):
    """The (C, H, N, W) view of an NHWC array: a[n, h, w, c] = planes(a)[c, h, n, w]."""
    return a.transpose(3, 1, 0, 2)


def nhwc(p):
    """The NHWC view of (C, H, N, W) planes: the inverse of ``planes``."""
    return p.transpose(2, 1, 3, 0)


def empty(shape, dtype, xp):
    """A new NHWC array of ``shape`` (N, H, W, C), uninitialized, stored channel-major."""
    n, h, w, c = shape
    return nhwc(xp.empty((c, h, n, w), dtype=dtype))


def zeros(shape, dtype, xp):
    """A new NHWC array of zeros, stored channel-major."""
    n, h, w, c = shape
    return nhwc(xp.zeros((c, h, n, w), dtype=dtype))


def flat_planes(a):
    """The (C, H*N*W) matrix of an NHWC array's planes: a view when a is stored channel-major,
    a copy otherwise."""
    p = planes(a)
    return p.reshape(p.shape[0], -1)
