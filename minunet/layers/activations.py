"""Element-wise activations and the channel softmax.

ReLU:     y = max(x, 0)             dx = dy * [y > 0]   (from the output, which the next layer keeps anyway)
Sigmoid:  y = 1 / (1 + e^-x)        dx = dy * y * (1 - y)
Softmax:  y = e^x / sum(e^x)        dx = y * (dy - sum(dy * y))   (sums over the class axis)
"""
from ..backend import get_array_module
from .base import Layer


class ReLU(Layer):
    def output_shape(self, input_shape):
        return tuple(input_shape)

    def forward(self, x):
        self._check_input(x)
        xp = get_array_module(x)
        self._cache = y = xp.maximum(x, 0)
        return y

    def backward(self, dy):
        return relu_backward(dy, self._cache)


def relu_backward(dy, y):
    """dx = dy where the ReLU's output y is positive, else 0 (y > 0 exactly where x > 0)."""
    return dy * (y > 0)


def sigmoid(x):
    """Logistic function without overflow and accurate in both tails: with e = exp(-|x|),
    1 / (1 + e) for x >= 0 and e / (1 + e) for x < 0."""
    xp = get_array_module(x)
    e = xp.exp(-xp.abs(x))
    return xp.where(x >= 0, 1, e) / (1 + e)


def softmax(x, axis=-1):
    """Softmax along `axis`, stable for huge logits (the max is subtracted first)."""
    xp = get_array_module(x)
    e = xp.exp(x - x.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


class Sigmoid(Layer):
    def output_shape(self, input_shape):
        return tuple(input_shape)

    def forward(self, x):
        self._check_input(x)
        self._cache = sigmoid(x)
        return self._cache

    def backward(self, dy):
        y = self._cache
        return dy * y * (1 - y)


class Softmax(Layer):
    def __init__(self, axis=-1, name=None):
        super().__init__(name)
        self.axis = axis

    def output_shape(self, input_shape):
        return tuple(input_shape)

    def forward(self, x):
        self._check_input(x)
        self._cache = softmax(x, self.axis)
        return self._cache

    def backward(self, dy):
        y = self._cache
        return y * (dy - (dy * y).sum(axis=self.axis, keepdims=True))
