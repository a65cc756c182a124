"""Train a small U-Net on phantom slices, step by step, without the CLI.

Run: python examples/train_phantom.py      (about a minute on 2 cores)
"""
import numpy as np

import minunet
from minunet import data, losses, metrics

images, masks = data.phantom.generate(160, size=64, seed=0)   # (160, 64, 64, 1) float32, (160, 64, 64) uint8
train, test = (images[:128], masks[:128]), (images[128:], masks[128:])

model = minunet.UNet(in_channels=1, n_classes=2, depth=3, base_filters=8, seed=0)
model.summary(64)
optimizer = minunet.Adam(model.params, lr=3e-3)

for epoch in range(8):
    total = 0.0
    for x, y in data.batches(*train, batch_size=8, seed=0, epoch=epoch):
        logits = model.forward(x)                              # (8, 64, 64, 2)
        loss, dlogits = losses.ce_dice_loss(logits, y)         # loss and dL/dlogits, fused with softmax
        model.backward(dlogits, input_gradient=False)          # fills model.grads (no dL/dx needed)
        optimizer.step(model.grads)                            # Adam, in place
        total += float(loss) * len(x)
    dice = metrics.dice(model.segment(test[0]), test[1])
    print(f"epoch {epoch + 1}: loss {total / len(train[0]):.4f}, test Dice {dice:.3f}")

model.save("phantom-unet.h5", optimizer=optimizer)
print("saved phantom-unet.h5; minunet.load('phantom-unet.h5') reads it back")
assert np.array_equal(minunet.load("phantom-unet.h5").segment(test[0]), model.segment(test[0]))
