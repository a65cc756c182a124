"""Time forward + backward of each layer on (8, 128, 128, 16) float32, and the share of
that time spent in matrix products. Inputs and gradients are stored channel-major, as the
layers store what they pass each other in the network (minunet/layers/layout.py).

Run: python benchmarks/layers.py [--repeat 5]
Not a test: numbers depend on the machine. It reports the BLAS in use and the
OPENBLAS_* settings, which change the speed of NumPy's matrix products.
"""
import argparse
import os
import platform
import time

import numpy as np

from minunet.layers import Concatenate, Conv2D, ConvTranspose2D, MaxPool2D, ReLU, Sigmoid, Softmax, UpSampling2D, layout
from minunet.layers.layout import flat_planes
from products import conv_products  # benchmarks/products.py, beside this file


def blas_info():
    try:
        from threadpoolctl import threadpool_info

        infos = [f"{i.get('internal_api')} {i.get('version')} ({i.get('architecture')}, {i.get('num_threads')} threads)"
                 for i in threadpool_info() if i.get("user_api") == "blas"]
        return "; ".join(infos) or "unknown"
    except ImportError:
        return "threadpoolctl not installed (pip install threadpoolctl)"


def as_planes(a):
    """a, stored channel-major."""
    out = layout.empty(a.shape, a.dtype, np)
    out[...] = a
    return out


def median_time(fn, repeat):
    fn()                                             # warm-up
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return float(np.median(times)), float(np.min(times)), float(np.max(times))


def matmul_time(layer, x, dy, repeat):
    """Time of the matrix products alone that the layer performs (same shapes, same data,
    same blocks): the forward products and the two backward ones."""
    layer.forward(x)
    if isinstance(layer, Conv2D):
        forward, backward = conv_products(layer, x, dy)
        return median_time(lambda: (forward(), backward()), repeat)[0]
    if isinstance(layer, ConvTranspose2D):
        xf = flat_planes(x)                                      # X (C, N*H*W)
        k = layer.params["kernel"].reshape(-1, layer.filters, layer.in_channels)   # the K_ij (F, C)
        dz = np.empty((k.shape[0] * layer.filters, xf.shape[1]), np.float32)      # the dY_ij stacked

        def products():
            for o in range(len(k)):
                k[o] @ xf
            dz @ xf.T, k.reshape(-1, layer.in_channels).T @ dz
        return median_time(products, repeat)[0]
    return 0.0


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    shape = (8, 128, 128, 16)
    x = as_planes(rng.standard_normal(shape).astype(np.float32))
    layers = [("Conv2D 3x3 16->16", Conv2D(16, 16, 3, rng=0)),
              ("Conv2D 3x3 16->16 + ReLU", Conv2D(16, 16, 3, activation="relu", rng=0)),
              ("Conv2D 1x1 16->2", Conv2D(16, 2, 1, rng=0)),
              ("ConvTranspose2D 2x2/2 16->16", ConvTranspose2D(16, 16, 2, 2, rng=0)),
              ("MaxPool2D 2x2/2", MaxPool2D(2)), ("UpSampling2D 2x", UpSampling2D(2)), ("ReLU", ReLU()),
              ("Sigmoid", Sigmoid()), ("Softmax", Softmax()), ("Concatenate 16+16", Concatenate())]
    print(f"minunet layer benchmark: input {shape} float32, median of {args.repeat} after a warm-up")
    print(f"machine: {platform.machine()}, {os.cpu_count()} CPUs, numpy {np.__version__}, BLAS: {blas_info()}")
    print("OPENBLAS_CORETYPE=" + os.environ.get("OPENBLAS_CORETYPE", "(unset)") + ", OPENBLAS_L2_SIZE="
          + os.environ.get("OPENBLAS_L2_SIZE", "(unset)"))
    print(f"{'layer':<30} {'fwd+bwd (ms)':>13} {'min..max':>15} {'matmul (ms)':>12} {'matmul share':>13}")
    for name, layer in layers:
        inp = [x, x] if isinstance(layer, Concatenate) else x
        y = layer.forward(inp)
        dy = as_planes(rng.standard_normal(y.shape).astype(np.float32))

        def step(layer=layer, inp=inp, dy=dy):
            layer.forward(inp)
            layer.backward(dy)

        med, lo, hi = median_time(step, args.repeat)
        mm = matmul_time(layer, x, dy, args.repeat) if not isinstance(layer, Concatenate) else 0.0
        share = f"{100 * mm / med:.0f}%" if mm else "-"
        print(f"{name:<30} {1e3 * med:>13.1f} {f'{1e3 * lo:.1f}..{1e3 * hi:.1f}':>15} {1e3 * mm:>12.1f} {share:>13}")


if __name__ == "__main__":
    main()
