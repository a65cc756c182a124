"""Conv2D's block size (``minunet.layers.engine.BLOCK_BYTES`` and ``BLOCK_PIXELS``) swept
on the whole U-Net.

Every (bytes, pixels) pair takes its turn within one process, one training step and one
inference each per round: the shared machine's drift (up to 30% within minutes) then
hits every size alike, where separate runs minutes apart cannot tell 5% apart. Median
and min per size, and the medians of the network's convolutions, forward and backward,
summed over its Conv2D layers during the training steps.

Run: python benchmarks/block_size.py [--base 16] [--rounds 12] [--mb 4,6,8] [--pixels 4096]
Not a test: the numbers belong to the machine (benchmarks/RESULTS.md has this one's).
"""
import argparse
import time

import numpy as np

import minunet
from minunet import losses
from minunet.layers import Conv2D, engine

N, SIZE, DEPTH = 8, 128, 5


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=12)
    parser.add_argument("--mb", default="4,6,8", help="BLOCK_BYTES in MB, comma-separated")
    parser.add_argument("--pixels", default=str(engine.BLOCK_PIXELS), help="BLOCK_PIXELS, comma-separated")
    args = parser.parse_args()
    sizes = [(float(mb), int(px)) for mb in args.mb.split(",") for px in args.pixels.split(",")]
    rng = np.random.default_rng(0)
    model = minunet.UNet(depth=DEPTH, base_filters=args.base)
    opt = minunet.Adam(model.params)
    x = rng.standard_normal((N, SIZE, SIZE, 1)).astype(np.float32)
    t = rng.integers(0, 2, (N, SIZE, SIZE))
    conv_seconds = [0.0, 0.0]                    # this step's Conv2D forward, backward

    def timed(method, which):
        def wrapper(*a, **k):
            start = time.perf_counter()
            out = method(*a, **k)
            conv_seconds[which] += time.perf_counter() - start
            return out
        return wrapper

    for layer in model.layers:
        if isinstance(layer, Conv2D):
            layer.forward, layer.backward = timed(layer.forward, 0), timed(layer.backward, 1)

    def step():
        _, d = losses.softmax_cross_entropy(model.forward(x), t)
        model.backward(d, input_gradient=False)
        opt.step(model.grads)

    def infer():
        model.activation(model.forward(x, training=False))

    times = {size: ([], [], []) for size in sizes}     # steps, inferences, (conv forward, backward)
    for r in range(args.rounds + 1):             # round 0 warms up every size
        for size in sizes:
            mb, engine.BLOCK_PIXELS = size
            engine.BLOCK_BYTES = int(mb * (1 << 20))
            steps, infers, convs = times[size]
            conv_seconds[:] = [0.0, 0.0]
            start = time.perf_counter()
            step()
            middle = time.perf_counter()
            convs.append(tuple(conv_seconds))
            infer()
            if r:
                steps.append(middle - start)
                infers.append(time.perf_counter() - middle)
    print(f"depth {DEPTH}, base {args.base}, {SIZE}x{SIZE}, batch {N}; {args.rounds} rounds, sizes taking turns")
    for (mb, px), (steps, infers, convs) in times.items():
        forward, backward = np.median(np.array(convs[1:]), axis=0) * 1e3
        print(f"{mb:5.1f} MB, {px:6d} pixels: step median {np.median(steps):.4f} s (min {min(steps):.4f}), "
              f"inference median {np.median(infers):.4f} s (min {min(infers):.4f}); "
              f"convolutions in the step: forward {forward:.1f} ms, backward {backward:.1f} ms")


if __name__ == "__main__":
    main()
