"""Scratch arrays kept between calls: the convolutions' intermediate buffers.

A fresh array of tens of MB costs the operating system's zeroing of its pages
(about 0.07 ms per MB here, as much as one pass of arithmetic over it), and one
training step of a depth-5 U-Net would allocate a few GB of intermediates that way.
Instead a layer asks for ``scratch(name, shape, dtype, xp)``: a view into one buffer
per (name, array module, dtype), kept between calls and replaced by a larger one when
a larger shape is asked for. So the pool holds, per name, the largest such buffer the
process has needed. Conv2D's are widened blocks of about 12 MB (``im2col.rows_per_block``;
larger where the kernel or the image rows are: up to 28 MB in the decoder at base 64),
their products, one kernel row's gradient and the flipped kernel of the input gradient
(as large as the largest kernel: 151 MB for the bridge's 2048 x 2048 at base 64, whose
fresh pages cost more than the copy into them); ConvTranspose2D's, one for both passes,
is as large as its output. For the depth-5 U-Net at base 64 and batch 8 the pool holds
226 MB (37 MB at base 16).

A scratch array is valid until the next request for the same name: it never leaves
the call that asked for it (layer outputs, caches and gradients are always arrays of
their own). Each thread has its own pool.
"""
import threading
from math import prod

import numpy as np

_local = threading.local()


def scratch(name, shape, dtype, xp):
    """An uninitialized array of ``shape``, reused by the next request for ``name``."""
    pool = _local.__dict__.setdefault("pool", {})
    key = (name, xp.__name__, np.dtype(dtype).str)
    size = prod(shape)
    buffer = pool.get(key)
    if buffer is None or buffer.size < size:
        buffer = pool[key] = xp.empty(size, dtype=dtype)
    return buffer[:size].reshape(shape)
