"""Check hand-written backward passes against finite differences, in float64.

Run: python examples/gradient_check.py
(`minunet gradcheck` runs the same checks on every layer as one table.)
"""
import numpy as np

import minunet
from minunet import losses
from minunet.gradcheck import check_layer, check_loss, randomize_biases
from minunet.layers import Conv2D, MaxPool2D

rng = np.random.default_rng(0)
x = rng.standard_normal((2, 7, 7, 3))                     # float64: finite differences need it

# One layer: the report has one row per array, the input and each parameter.
print(check_layer(Conv2D(3, 4, 3, dtype=np.float64, rng=0), x))

# Max-pooling is not differentiable at ties: give it distinct values.
distinct = rng.permutation(x.size).reshape(x.shape) * 0.01
print(check_layer(MaxPool2D(2), distinct))

# A loss, fused with its softmax.
logits, labels = rng.standard_normal((2, 5, 5, 2)), rng.integers(0, 2, (2, 5, 5))
print(check_loss(losses.ce_dice_loss, logits, labels))

# A whole U-Net through a loss: every parameter of every layer.
model = minunet.UNet(1, 2, depth=2, base_filters=3, dtype=np.float64, seed=0)
randomize_biases(model)                                   # keep ReLU inputs off exactly 0
report = check_layer(model, rng.standard_normal((1, 16, 16, 1)), loss=losses.softmax_cross_entropy,
                     target=rng.integers(0, 2, (1, 16, 16)))
print(report)
print(f"largest relative error over the whole model: {report.max_error:.1e}")
