"""The floor under minunet's convolutions: the time of their matrix products alone.

For every 3x3 Conv2D of the depth-5 U-Net (128x128, batch 8), the products the layer makes
(Y += K_i^T X_i, dK_i = X_i dY^T, dX += K'_i^T D_i, on the same widened blocks), timed with
the blocks prepared beforehand: no window copies, no accumulation, no layout transposes.
Whatever the rest of the layer does can only add to this. Best of --repeat runs.

Run: python benchmarks/products.py [--base 16] [--repeat 7]
Not a test: the numbers belong to the machine.
"""
import argparse
import time

import numpy as np

from minunet.layers import Conv2D
from minunet.layers.im2col import stacked_rows, widened
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
    on (x, dy), on widened blocks prepared beforehand as the layer prepares them (the kernel
    rows stacked as ``stacked_rows`` says); dX's products only with ``input_gradient``."""
    n, h, w, c = x.shape
    (kh, kw), f = layer.kernel_size, layer.filters
    s, sd = stacked_rows(kh, kw, c), stacked_rows(kh, kw, f)                          # kernel rows per product
    kt = layer.params["kernel"].reshape(kh // s, s * kw * c, f).transpose(0, 2, 1)    # K_g^T
    flipped = np.ascontiguousarray(layer.params["kernel"][::-1, ::-1].transpose(0, 2, 1, 3)).reshape(kh, c, kw * f)
    flipped = flipped.reshape(kh // sd, sd, c, kw * f).transpose(0, 2, 1, 3).reshape(kh // sd, c, sd * kw * f)
    ho, wo = dy.shape[1:3]
    dy_planes = np.ascontiguousarray(planes(dy))
    x_blocks = [(xw.copy(), dy_planes[:, rows].reshape(f, -1).T, (rows.stop - rows.start) * n * wo)
                for rows, xw in widened(planes(x), kh, kw, layer._pads(), f)]
    dy_blocks = [(dw.copy(), (rows.stop - rows.start) * n * w)
                 for rows, dw in widened(dy_planes, kh, kw, layer._input_gradient_pads(h, w, ho, wo), c)]

    def forward():
        for xw, _, m in x_blocks:
            for g in range(kh // s):
                kt[g] @ xw[:, g * s * n * wo : g * s * n * wo + m]          # Y += K_g^T X_g

    def backward():
        for xw, dyt, m in x_blocks:
            for g in range(kh // s):
                xw[:, g * s * n * wo : g * s * n * wo + m] @ dyt            # dK_g = X_g dY^T
        for dw, m in dy_blocks if input_gradient else ():
            for g in range(kh // sd):
                flipped[g] @ dw[:, g * sd * n * w : g * sd * n * w + m]     # dX += K'_g^T D_g

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
