"""What each trick of the engine buys in one training step (docs/READING.md, the ledger).

For every trick, the operation it changes is timed alone on the shapes of one step of the
depth-5 U-Net (128x128, batch 8, float32), with the trick and without it (the plain way
the textbook would do it), the two taking turns; each figure is the lower quartile of
--repeat runs, summed over the layers of the step. Timing an operation alone keeps the
figures usable on a busy machine, where whole steps vary by more than the tricks buy.

Run: python benchmarks/tricks.py [--base 16] [--repeat 9] [--only stacked,relu,...]
Not a test: the numbers belong to the machine.
"""
import argparse
import time

import numpy as np

import minunet
from minunet.layers import Conv2D, MaxPool2D, engine, layout, pooling
from minunet.layers.layout import planes
from products import conv_shapes  # benchmarks/products.py, beside this file

N, SIZE, DEPTH = 8, 128, 5
rng = np.random.default_rng(0)


def as_planes(shape):
    out = layout.empty(shape, np.float32, np)
    out[...] = rng.standard_normal(shape)
    return out


def taking_turns(with_trick, without, repeat):
    """(seconds with, seconds without): lower quartiles of ``repeat`` runs each, alternating."""
    times = ([], [])
    with_trick(), without()
    for _ in range(repeat):
        for fn, out in zip((with_trick, without), times):
            start = time.perf_counter()
            fn()
            out.append(time.perf_counter() - start)
    return tuple(sorted(t)[len(t) // 4] for t in times)


class Patched:
    """Set obj.name = value inside a with block."""

    def __init__(self, obj, name, value):
        self.obj, self.name, self.value = obj, name, value

    def __enter__(self):
        self.saved = getattr(self.obj, self.name)
        setattr(self.obj, self.name, self.value)

    def __exit__(self, *exc):
        setattr(self.obj, self.name, self.saved)


def patched(obj, name, value, fn):
    def run():
        with Patched(obj, name, value):
            fn()
    return run


def stacked(base, repeat):
    """enc1/conv1 forward + kernel gradient, its kernel rows stacked as channels or not."""
    x = as_planes((N, SIZE, SIZE, 1))
    layer = Conv2D(1, base, 3, activation="relu", rng=0)

    def step():
        layer.backward(layer.forward(x), input_gradient=False)
    return taking_turns(step, patched(engine, "NARROW", 0, step), repeat)


def relu_zeros(base, repeat):
    """max(y, 0) over every 3x3 conv output: against a row of zeros, or the scalar 0."""
    ys = [np.random.default_rng(0).standard_normal((f, N * h * h)).astype(np.float32) for h, _, f in conv_shapes(base)]
    return taking_turns(lambda: [engine.relu_in_place(y) for y in ys],
                        lambda: [np.maximum(y, 0, out=y) for y in ys], repeat)


def gradient_arrays(base, repeat):
    """Every parameter's gradient written into an array kept between steps, or a fresh one."""
    params = list(minunet.UNet(depth=DEPTH, base_filters=base).params.values())
    kept = [np.empty_like(p) for p in params]
    return taking_turns(lambda: [np.multiply(p, 1.0, out=g) for p, g in zip(params, kept)],
                        lambda: [np.multiply(p, 1.0, out=np.empty_like(p)) for p in params], repeat)


def flipped_kernel(base, repeat):
    """The flipped kernels of the step's input gradients, into the kept buffer or a fresh array."""
    kernels = [np.random.default_rng(0).standard_normal((3, 3, c, f)).astype(np.float32)
               for _, c, f in conv_shapes(base)[1:]]
    return taking_turns(lambda: [engine.flipped(k) for k in kernels],
                        lambda: [np.ascontiguousarray(k[::-1, ::-1].transpose(0, 2, 1, 3)) for k in kernels], repeat)


def tiled_col2im(base, repeat):
    """The up-samplings' col2im: windows written once (they tile y), or zeroed then added."""
    cases = []
    for k in range(DEPTH):
        h, f = SIZE >> (k + 1), base << k
        cases.append((as_planes((N, h, h, 4 * f)), (N, 2 * h, 2 * h, f), np.zeros(f, np.float32)))

    def overlapping(cols, shape, bias):                  # the general path, as for kernel > stride
        y = layout.empty(shape, np.float32, np)
        y_planes, cols_planes = planes(y), planes(cols).reshape(2, 2, shape[3], *planes(cols).shape[1:])
        y_planes[...] = bias.reshape(-1, 1, 1, 1)
        h, w = cols.shape[1:3]
        for i in range(2):
            for j in range(2):
                y_planes[:, engine.strided(i, h, 2), :, engine.strided(j, w, 2)] += cols_planes[i, j]
    return taking_turns(lambda: [engine.col2im(c, 2, 2, 2, s, b) for c, s, b in cases],
                        lambda: [overlapping(c, s, b) for c, s, b in cases], repeat)


def max_pool(base, repeat):
    """The pools' backward: as MaxPool2D does it, or dx zeroed then added to, every offset compared."""
    cases = []
    for k in range(DEPTH):
        x = as_planes((N, SIZE >> k, SIZE >> k, base << k))
        layer = MaxPool2D(2)
        y = layer.forward(x)
        cases.append((layer, x, y, as_planes(y.shape)))

    def plain(x, y, dy):
        dx = layout.zeros(x.shape, np.float32, np)
        taken = np.zeros(y.shape, bool)
        for window in pooling._window_slices((2, 2), (2, 2), *y.shape[1:3]):
            first = (x[window] == y) & ~taken
            taken |= first
            dx[window] += dy * first

    def engine_pool():
        for layer, x, y, dy in cases:
            layer._cache = (x, y)
            layer.backward(dy)
    return taking_turns(engine_pool, lambda: [plain(x, y, dy) for _, x, y, dy in cases], repeat)


def adam_chunks(base, repeat):
    """Adam over every parameter: in chunks, or as whole-array expressions (the textbook's)."""
    from minunet import textbook

    params = minunet.UNet(depth=DEPTH, base_filters=base).params
    grads = {k: np.full_like(p, 1e-3) for k, p in params.items()}
    opt, state = minunet.Adam(params), {}
    return taking_turns(lambda: opt.step(grads), lambda: textbook.adam_update(params, grads, state),
                        max(3, repeat // 2))


def padding(base, repeat):
    """What building the padding would cost: np.pad of x twice and dy once per 3x3 conv."""
    cases = [(as_planes((N, h, h, c)), as_planes((N, h, h, f)), c) for h, c, f in conv_shapes(base)]

    def build():
        for x, dy, c in cases:
            for a in (x, x) + ((dy,) if c > 1 else ()):
                np.pad(planes(a), ((0, 0), (1, 1), (0, 0), (1, 1)))
    return 0.0, taking_turns(build, lambda: None, repeat)[0]


def concatenation(base, repeat):
    """What the decoder inputs' copies cost (the zero-copy concatenation saved them; removed)."""
    cases = [(as_planes((N, SIZE >> k, SIZE >> k, base << k)),) * 2 for k in range(DEPTH)]

    def copies():
        for up, skip in cases:
            y = layout.empty(up.shape[:3] + (2 * up.shape[3],), np.float32, np)
            y[..., : up.shape[3]] = up
            y[..., up.shape[3] :] = skip
    return 0.0, taking_turns(copies, lambda: None, repeat)[0]


TRICKS = {"stacked": stacked, "relu": relu_zeros, "gradients": gradient_arrays, "flipped": flipped_kernel,
          "col2im": tiled_col2im, "pool": max_pool, "adam": adam_chunks, "padding": padding,
          "concatenation": concatenation}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", type=int, default=16)
    parser.add_argument("--repeat", type=int, default=9)
    parser.add_argument("--only", default=",".join(TRICKS), help="comma-separated: " + ",".join(TRICKS))
    args = parser.parse_args()
    print(f"depth {DEPTH}, base {args.base}, {SIZE}x{SIZE}, batch {N}: ms a step, lower quartile of {args.repeat}")
    for name in args.only.split(","):
        with_trick, without = TRICKS[name](args.base, args.repeat)
        print(f"{name:<14} with the trick {1e3 * with_trick:9.2f}   without {1e3 * without:9.2f}   "
              f"buys {1e3 * (without - with_trick):+9.2f}   ({TRICKS[name].__doc__.splitlines()[0]})", flush=True)


if __name__ == "__main__":
    main()
