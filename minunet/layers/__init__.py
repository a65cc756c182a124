"""Hand-written layers, each with a forward and a backward pass (NHWC, Keras names). Each
pass is a few operations of ``minunet/textbook.py``, computed by ``engine`` (channel planes,
see ``layout``; docs/READING.md reads them in order)."""
from .activations import ReLU, Sigmoid, Softmax, sigmoid, softmax
from .base import Layer
from .conv import Conv2D, ConvTranspose2D
from .merge import Concatenate
from .pooling import MaxPool2D, UpSampling2D

__all__ = ["Layer", "Conv2D", "ConvTranspose2D", "MaxPool2D", "UpSampling2D", "ReLU", "Sigmoid", "Softmax",
           "Concatenate", "sigmoid", "softmax"]
