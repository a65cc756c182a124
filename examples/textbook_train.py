"""Train the demo's U-Net with the textbook functions alone, beside the fast engine.

Run: python examples/textbook_train.py                      (144 steps of each network: minutes on 2 cores)
     python examples/textbook_train.py --epochs 10 --n 480  (the demo's 600 steps: 10 epochs of 60 batches)

The network is the demo's (``python -m minunet demo``): depth 4, base 8, 128x128 phantom
slices, batches of 8, Adam with lr 3e-3. Its loss is softmax cross-entropy alone (the demo
adds Dice, which the textbook leaves out). Two copies of the same initial weights train on
the same batches: one through ``minunet.textbook`` (plain functions, every forward beside its
backward), one through the engine (``UNet`` and ``Adam``). Both print their loss and their
seconds per training step. The two compute the same numbers (in float64 to 1e-10, see
tests/test_textbook.py); in float32 their losses agree to four digits for the first 64 steps,
then drift apart: rounding differences of about 1e-6, which Adam's division by sqrt(v) magnifies
for small gradients, grow once the network starts to find the discs. Cross-entropy alone first
teaches it the background (97% of the pixels): the discs appear after about 110 steps, and
the held-out Dice climbs from there.
"""
import argparse
import time

import numpy as np

import minunet
from minunet import data, losses, metrics
from minunet import textbook as tb
from minunet.cli import DEMO

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--epochs", type=int, default=9, help="passes over the training slices (default %(default)s)")
parser.add_argument("--n", type=int, default=128, help="training slices (default %(default)s; the demo uses 480)")
parser.add_argument("--seed", type=int, default=DEMO["seed"], help="phantom and weights seed (default %(default)s)")
args = parser.parse_args()
if args.epochs < 1 or args.n < 1:
    parser.error(f"--epochs and --n must be at least 1, received {args.epochs} and {args.n}")

depth, size, batch_size, lr = DEMO["depth"], DEMO["size"], DEMO["batch_size"], DEMO["lr"]
n_test = 32
images, masks = data.phantom.generate(args.n + n_test, size=size, seed=args.seed)   # (n, 128, 128, 1), (n, 128, 128)
train, test = (images[: args.n], masks[: args.n]), (images[args.n :], masks[args.n :])

model = minunet.UNet(in_channels=1, n_classes=2, depth=depth, base_filters=DEMO["base_filters"], seed=args.seed)
optimizer = minunet.Adam(model.params, lr=lr)                        # the engine
params = {name: p.copy() for name, p in model.params.items()}        # the textbook's own copy of the weights
state = {}                                                           # Adam's step count and moments
print(f"U-Net depth {depth}, base {DEMO['base_filters']}: {model.n_params:,} parameters, {len(params)} arrays; "
      f"{args.n} training slices of {size}x{size}, batches of {batch_size}, lr {lr}")
print(f"{'epoch':>5}  {'textbook loss':>13}  {'s/step':>6}  {'engine loss':>11}  {'s/step':>6}  {'textbook/engine':>15}")

textbook_seconds, engine_seconds = [], []
for epoch in range(args.epochs):
    textbook_loss = engine_loss = 0.0
    steps = 0
    for x, y in data.batches(*train, batch_size=batch_size, seed=args.seed, epoch=epoch):
        start = time.perf_counter()
        logits, cache = tb.unet_forward(params, x, depth)            # (8, 128, 128, 2), what backward needs
        loss, dlogits = tb.softmax_cross_entropy(logits, y)          # mean over pixels, dL/dlogits
        grads = tb.unet_backward(params, cache, dlogits)             # keyed as params
        tb.adam_update(params, grads, state, lr=lr)                  # in place
        middle = time.perf_counter()
        logits = model.forward(x)
        loss_engine, dlogits = losses.softmax_cross_entropy(logits, y)
        model.backward(dlogits, input_gradient=False)
        optimizer.step(model.grads)
        end = time.perf_counter()

        textbook_seconds.append(middle - start)
        engine_seconds.append(end - middle)
        textbook_loss += float(loss)
        engine_loss += float(loss_engine)
        steps += 1
    t, e = np.median(textbook_seconds[-steps:]), np.median(engine_seconds[-steps:])
    print(f"{epoch + 1:>5}  {textbook_loss / steps:>13.4f}  {t:>6.2f}  {engine_loss / steps:>11.4f}  {e:>6.2f}  "
          f"{t / e:>15.2f}")


def textbook_segment(images):
    """Label maps (N, H, W) from the textbook network: the arg-max class of each pixel."""
    out = [tb.unet_forward(params, images[i : i + batch_size], depth)[0].argmax(axis=-1)
           for i in range(0, len(images), batch_size)]
    return np.concatenate(out)


t, e = np.median(textbook_seconds), np.median(engine_seconds)
print(f"median seconds per step: textbook {t:.2f}, engine {e:.2f}: the textbook takes {t / e:.2f}x the engine's time")
print(f"Dice on {n_test} held-out slices: textbook {metrics.dice(textbook_segment(test[0]), test[1]):.3f}, "
      f"engine {metrics.dice(model.segment(test[0]), test[1]):.3f}")
