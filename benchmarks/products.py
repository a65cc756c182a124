"""The floor under minunet's convolutions: the time of their matrix products alone.

For every 3x3 Conv2D of the depth-5 U-Net (128x128, batch 8), the products the layer makes
(Y += K_i^T X_i, dK_i = X_i dY^T, dX += K'_i^T D_i, on the same im2col blocks), timed with
the blocks prepared beforehand: no window copies, no accumulation, no layout transposes.
Whatever the rest of the layer does can only add to this. Best of --repeat runs.

Run: python benchmarks/products.py [--base 16] [--repeat 7]
Not a test: the numbers belong to the machine.
"""
import argparse
import time

import numpy as np

from minunet.layers import Conv2D
from minunet.layers.engine import Block, flipped, im2col_blocks, kernel_rows_as_channels, rows_as_channels, stacks_rows
from minunet.layers.layout import planes

N, SIZE, DEPTH = 8, 128, 5


def conv_shapes(base):
    """(H, C, F) of every 3x3 convolution, encoder, bridge, decoder."""
    shapes, c, h = [], 1, SIZE
    for k in range(DEPTH):
        f = base * 2**k
        shapes += [(h, c, f), (h, f, f)]
        c, h = f, h // 2
    f = base * 2**DEPTH
    shapes += [(h, c, f), (h, f, f)]
    for k in reversed(range(DEPTH)):
        f, h = base * 2**k, h * 2
        shapes += [(h, 2 * f, f), (h, f, f)]
    return shapes


def best_time(fn, repeat):
    fn()
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def conv_products(layer, x, dy, input_gradient=True):
    """(forward, backward): two functions that repeat the products ``layer`` (a Conv2D) makes
    on (x, dy), on im2col blocks prepared beforehand as the engine prepares them (kernel rows
    stacked where ``stacks_rows`` says); dX's products only with ``input_gradient``."""
    f = layer.filters
    h, w = x.shape[1:3]
    ho, wo = dy.shape[1:3]

    def blocks(a, kernel, pads, out_channels):
        """[(K_i^T for each kernel row, [(X_i, the block's rows, pixels)] for each block)]."""
        if stacks_rows(kernel.shape[0], kernel.shape[1], a.shape[3]):
            a, pads = rows_as_channels(a, kernel.shape[0], pads)
            kernel = kernel_rows_as_channels(kernel)
        k_rows = np.ascontiguousarray(kernel).reshape(kernel.shape[0], -1, kernel.shape[3]).transpose(0, 2, 1)
        made = []
        for b in im2col_blocks(a, kernel.shape[0], kernel.shape[1], pads, out_channels):
            b = Block(b.rows, b.widened.copy(), b.row_pixels)                # kept: the next block reuses the buffer
            made.append(([b.kernel_row(i) for i in range(kernel.shape[0])], b.rows, b.pixels))
        return k_rows, made

    kernel = layer.params["kernel"]
    k_rows, x_blocks = blocks(x, kernel, layer._pads(), f)
    dy_planes = np.ascontiguousarray(planes(dy))
    flip = np.ascontiguousarray(flipped(kernel))
    flip_rows, dy_blocks = blocks(dy, flip, layer._input_gradient_pads(), x.shape[3])

    def forward():
        for xs, _, _ in x_blocks:
            for k_i, x_i in zip(k_rows, xs):
                k_i @ x_i                                                   # Y += K_i^T X_i

    def backward():
        for xs, rows, m in x_blocks:
            dyt = dy_planes[:, rows].reshape(f, m).T
            for x_i in xs:
                x_i @ dyt                                                   # dK_i = X_i dY^T
        for ds, _, _ in dy_blocks if input_gradient else ():
            for k_i, d_i in zip(flip_rows, ds):
                k_i @ d_i                                                   # dX += K'_i^T D_i

    return forward, backward


def products_time(h, c, f, repeat, rng, input_gradient=True):
    """(forward, backward) seconds of one layer's products."""
    x = rng.standard_normal((N, h, h, c)).astype(np.float32)
    dy = rng.standard_normal((N, h, h, f)).astype(np.float32)
    forward, backward = conv_products(Conv2D(c, f, 3, rng=0), x, dy, input_gradient)
    return best_time(forward, repeat), best_time(backward, repeat)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", type=int, default=16)
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    # a training step skips the first layer's input gradient (UNet.backward(..., input_gradient=False))
    times = [products_time(h, c, f, args.repeat, rng, input_gradient=k > 0)
             for k, (h, c, f) in enumerate(conv_shapes(args.base))]
    fwd, bwd = sum(t[0] for t in times), sum(t[1] for t in times)
    print(f"depth {DEPTH}, base {args.base}, {SIZE}x{SIZE}, batch {N}: the 3x3 convolutions' products alone take "
          f"{1e3 * fwd:.0f} ms forward (inference) and {1e3 * (fwd + bwd):.0f} ms for a training step "
          f"(best of {args.repeat})")


if __name__ == "__main__":
    main()
