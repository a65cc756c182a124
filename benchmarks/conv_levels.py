"""Every convolution of the U-Net's training step, forward and backward, in minunet and
(when installed) PyTorch: where the two differ, shape by shape.

minunet: each Conv2D's forward and backward timed inside the network's step (the step of
bench.py: forward, softmax cross-entropy, backward without dL/dx for the images, Adam).
PyTorch: torch.profiler on bench.py's PyTorch step, its convolutions grouped by input
shape. Milliseconds per step, summed over the layers that share a shape; minunet's
forward includes its fused ReLU, PyTorch's ReLU is a separate operation (not counted).

Run: python benchmarks/conv_levels.py [--base 16] [--steps 10]
Not a test: the numbers belong to the machine and its load (benchmarks/RESULTS.md).
"""
import argparse
import time
from collections import defaultdict

import numpy as np

from bench import DEPTH, N, SIZE, torch_unet  # benchmarks/bench.py, beside this file


def minunet_times(base, steps):
    """(seconds per step, {(H, C, F, k): [forward ms, backward ms, layers]} per step), from
    timers on each Conv2D."""
    import minunet
    from minunet import losses
    from minunet.layers import Conv2D

    rng = np.random.default_rng(0)
    model = minunet.UNet(depth=DEPTH, base_filters=base)
    opt = minunet.Adam(model.params)
    x = rng.standard_normal((N, SIZE, SIZE, 1)).astype(np.float32)
    t = rng.integers(0, 2, (N, SIZE, SIZE))
    table = defaultdict(lambda: [0.0, 0.0, 0])

    def timed(layer, method, backward):
        def wrapper(a, **options):                             # a: x, or dy (the same H)
            start = time.perf_counter()
            out = method(a, **options)
            entry = table[(a.shape[1], layer.in_channels, layer.filters, layer.kernel_size[0])]
            entry[backward] += time.perf_counter() - start
            entry[2] += not backward
            return out
        return wrapper

    for layer in model.layers:
        if isinstance(layer, Conv2D):
            layer.forward, layer.backward = timed(layer, layer.forward, 0), timed(layer, layer.backward, 1)

    def step():
        _, d = losses.softmax_cross_entropy(model.forward(x), t)
        model.backward(d, input_gradient=False)
        opt.step(model.grads)

    for _ in range(2):                                         # warm-up
        step()
    table.clear()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    seconds = (time.perf_counter() - start) / steps
    return seconds, {key: (fwd / steps * 1e3, bwd / steps * 1e3, calls // steps)
                     for key, (fwd, bwd, calls) in table.items()}


def torch_times(base, steps):
    """{(H, C, F, k): [forward ms, backward ms]} per step from torch.profiler, or None."""
    try:
        import torch
    except ImportError:
        return None
    from torch import nn
    from torch.profiler import ProfilerActivity, profile

    model = torch_unet(base)
    opt = torch.optim.Adam(model.parameters())
    x, t = torch.randn(N, 1, SIZE, SIZE), torch.randint(0, 2, (N, SIZE, SIZE))

    def step():
        opt.zero_grad()
        nn.functional.cross_entropy(model(x), t).backward()
        opt.step()

    for _ in range(2):
        step()
    with profile(activities=[ProfilerActivity.CPU], record_shapes=True) as prof:
        for _ in range(steps):
            step()
    table = defaultdict(lambda: [0.0, 0.0])
    for event in prof.key_averages(group_by_input_shape=True):
        shapes = event.input_shapes
        if event.key == "aten::convolution":                   # input (N, C, H, W), weight (F, C, k, k)
            (_, c, h, _), (f, _, k, _) = shapes[0], shapes[1]
            backward = False
        elif event.key == "aten::convolution_backward":        # dy, input, weight
            (_, c, h, _), (f, _, k, _) = shapes[1], shapes[2]
            backward = True
        else:
            continue
        if k != 2:                                             # not the 2x2 transposed convolutions
            table[(h, c, f, k)][backward] += event.cpu_time_total / steps / 1e3
    return table


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", type=int, default=16)
    parser.add_argument("--steps", type=int, default=10)
    args = parser.parse_args()
    seconds, ours = minunet_times(args.base, args.steps)
    theirs = torch_times(args.base, args.steps)
    print(f"depth {DEPTH}, base {args.base}, {SIZE}x{SIZE}, batch {N}: ms per step, {args.steps} steps "
          f"(minunet's step {seconds:.3f} s with its timers)")
    print(f"{'H':>4} {'C -> F':>12} {'k':>2} {'layers':>6}   {'minunet fwd':>11} {'bwd':>7}"
          + (f"   {'PyTorch fwd':>11} {'bwd':>7}" if theirs is not None else "   (PyTorch not installed)"))
    total = np.zeros(4)
    for key in sorted(ours, key=lambda k: (-k[0], k[1])):
        h, c, f, k = key
        fwd, bwd, layers = ours[key]
        row = f"{h:>4} {f'{c} -> {f}':>12} {k:>2} {layers:>6}   {fwd:>11.1f} {bwd:>7.1f}"
        if theirs is not None:
            tf, tb = theirs.get(key, (float("nan"), float("nan")))
            row += f"   {tf:>11.1f} {tb:>7.1f}"
            total[2:] += (tf, tb)
        total[:2] += (fwd, bwd)
        print(row)
    print(f"{'all':>4} {'':>12} {'':>2} {'':>6}   {total[0]:>11.1f} {total[1]:>7.1f}"
          + (f"   {total[2]:>11.1f} {total[3]:>7.1f}" if theirs is not None else ""))


if __name__ == "__main__":
    main()
