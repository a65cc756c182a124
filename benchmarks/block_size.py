"""Conv2D's block size (``minunet.layers.im2col.BLOCK_BYTES``) swept on the whole U-Net.

The sizes take turns within one process, one training step and one inference each per
round: the shared machine's drift (up to 30% within minutes) then hits every size alike,
where separate runs minutes apart cannot tell 5% apart. Median and min per size.

Run: python benchmarks/block_size.py [--base 16] [--rounds 12] [--mb 4,6,8]
Not a test: the numbers belong to the machine (benchmarks/RESULTS.md has this one's).
"""
import argparse
import time

import numpy as np

import minunet
from minunet import losses
from minunet.layers import im2col

N, SIZE, DEPTH = 8, 128, 5


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=12)
    parser.add_argument("--mb", default="4,6,8", help="block sizes in MB, comma-separated")
    args = parser.parse_args()
    sizes = [float(mb) for mb in args.mb.split(",")]
    rng = np.random.default_rng(0)
    model = minunet.UNet(depth=DEPTH, base_filters=args.base)
    opt = minunet.Adam(model.params)
    x = rng.standard_normal((N, SIZE, SIZE, 1)).astype(np.float32)
    t = rng.integers(0, 2, (N, SIZE, SIZE))

    def step():
        _, d = losses.softmax_cross_entropy(model.forward(x), t)
        model.backward(d, input_gradient=False)
        opt.step(model.grads)

    def infer():
        model.activation(model.forward(x, training=False))

    times = {mb: ([], []) for mb in sizes}
    for r in range(args.rounds + 1):             # round 0 warms up every size
        for mb in sizes:
            im2col.BLOCK_BYTES = int(mb * (1 << 20))
            for fn, record in zip((step, infer), times[mb]):
                start = time.perf_counter()
                fn()
                if r:
                    record.append(time.perf_counter() - start)
    print(f"depth {DEPTH}, base {args.base}, {SIZE}x{SIZE}, batch {N}; {args.rounds} rounds, sizes taking turns")
    for mb, (steps, infers) in times.items():
        print(f"{mb:5.1f} MB: step median {np.median(steps):.4f} s (min {min(steps):.4f}), "
              f"inference median {np.median(infers):.4f} s (min {min(infers):.4f})")


if __name__ == "__main__":
    main()
