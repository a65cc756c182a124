"""A forward and a backward pass through every layer, by hand, printing shapes.

Run: python examples/layers_by_hand.py
"""
import numpy as np

from minunet.layers import Concatenate, Conv2D, ConvTranspose2D, MaxPool2D, ReLU, Softmax, UpSampling2D

rng = np.random.default_rng(0)
x = rng.standard_normal((2, 16, 16, 1)).astype(np.float32)      # a batch of 2 one-channel 16x16 images (NHWC)
print(f"input                  {x.shape}")

# Encoder level: two 3x3 'same' convolutions with ReLU keep 16x16; max-pooling halves it.
conv1, relu1 = Conv2D(1, 8, 3, padding="same", rng=0, name="conv1"), ReLU()
conv2, relu2 = Conv2D(8, 8, 3, padding="same", rng=1, name="conv2"), ReLU()
pool = MaxPool2D(2)
skip = relu2.forward(conv2.forward(relu1.forward(conv1.forward(x))))
print(f"after two convs        {skip.shape}   'same' padding keeps H and W")
down = pool.forward(skip)
print(f"after max-pool 2x2/2   {down.shape}     (16 - 2) // 2 + 1 = 8")

# Decoder level: up-sample back to 16x16, concatenate the skip, 1x1 head, softmax over 2 classes.
up_t = ConvTranspose2D(8, 8, kernel_size=2, strides=2, rng=2)
up_n = UpSampling2D(2)
print(f"ConvTranspose2D 2x2/2  {up_t.forward(down).shape}   8 * 2 = 16, learned")
up = up_n.forward(down)
print(f"UpSampling2D 2x        {up.shape}   8 * 2 = 16, nearest copies")
concat = Concatenate()
merged = concat.forward([up, skip])
print(f"concatenate [up, skip] {merged.shape}  8 + 8 channels")
head, softmax = Conv2D(16, 2, 1, rng=3), Softmax()
probs = softmax.forward(head.forward(merged))
print(f"1x1 head + softmax     {probs.shape}   sums to 1 over classes: {np.allclose(probs.sum(-1), 1)}")

# Backward: start from a random upstream gradient and go back through every layer.
dy = rng.standard_normal(probs.shape).astype(np.float32)
d = head.backward(softmax.backward(dy))
d_up, d_skip = concat.backward(d)
d_down = up_n.backward(d_up)
d_skip = d_skip + pool.backward(d_down)          # the skip's gradient joins the pooled path's
dx = conv1.backward(relu1.backward(conv2.backward(relu2.backward(d_skip))))
print(f"dL/dx                  {dx.shape}")
for layer in (conv1, conv2, head):
    print(f"{layer.name:<8} dkernel {layer.grads['kernel'].shape}  dbias {layer.grads['bias'].shape}")
