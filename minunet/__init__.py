"""minunet: a U-Net written from scratch in NumPy, with hand-written backward passes.

    import minunet
    model = minunet.UNet(depth=4, base_filters=16)
    logits = model.forward(x)                  # x: (N, H, W, 1) float32
    loss, dlogits = minunet.losses.softmax_cross_entropy(logits, masks)
    model.backward(dlogits)
    opt = minunet.Adam(model.params); opt.step(model.grads)
"""
__version__ = "0.1.0"

from . import backend, gradcheck, keras_h5, layers, losses, model
from .model import UNet, load_checkpoint
from .optim import SGD, Adam


def load(path):
    """A UNet from a minunet model file, or from a Keras .h5 model file (see keras_h5)."""
    return keras_h5.load(path) if keras_h5.is_keras_file(path) else model.load(path)


__all__ = ["UNet", "Adam", "SGD", "load", "load_checkpoint", "backend", "layers", "losses", "gradcheck", "keras_h5",
           "__version__"]
