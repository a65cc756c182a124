"""Time each augmentation level on a batch of 8 phantom slices at 128 and 256 px, beside one
training step (forward, loss, backward, Adam) of a depth-4, base-8 U-Net on the same batch.

Run: python benchmarks/augment.py [--repeat 10] [--sizes 128 256]
Not a test: numbers depend on the machine and on what else runs on it (medians are reported).
"""
import argparse

import numpy as np

import minunet
from layers import median_time  # benchmarks/layers.py, beside this file
from minunet import losses
from minunet.data import PRESETS, phantom


def median_ms(fn, repeat):
    """The median of ``repeat`` timed calls after a warm-up, in milliseconds."""
    return 1e3 * median_time(fn, repeat)[0]


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeat", type=int, default=10)
    p.add_argument("--sizes", type=int, nargs="+", default=[128, 256])
    args = p.parse_args()
    print(f"{'size':>5} {'level':>7} {'ms / batch of 8':>16}")
    for size in args.sizes:
        images, masks = phantom.generate(8, size=size, seed=0)
        rng = np.random.default_rng(0)
        for level, augment in PRESETS.items():
            if augment is not None:
                print(f"{size:>5} {level:>7} {median_ms(lambda: augment(images, masks, rng), args.repeat):>16.1f}")
        model = minunet.UNet(depth=4, base_filters=8, seed=0)
        optimizer, loss = minunet.Adam(model.params, 1e-3), losses.get("ce")

        def step():
            _, dlogits = loss(model.forward(images), masks)
            model.backward(dlogits, input_gradient=False)
            optimizer.step(model.grads)

        step_ms = median_ms(step, max(2, args.repeat // 3))
        print(f"{size:>5} {'step':>7} {step_ms:>16.1f}   (one training step, depth 4, base 8)")


if __name__ == "__main__":
    main()
