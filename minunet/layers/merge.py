"""Concatenate along channels: the U-Net's skip connection.

y = [x_1 | x_2 | ...] along the last axis, so dy splits back into the pieces:
dx_k = dy[..., offset_k : offset_k + C_k], views of dy (no copies).
"""
from ..backend import get_array_module
from . import layout
from .base import Layer


class Concatenate(Layer):
    """``forward([a, b])`` -> channels of a, then channels of b (Keras's ``concatenate``)."""

    def output_shape(self, input_shapes):
        n, h, w, _ = input_shapes[0]
        return (n, h, w, sum(s[3] for s in input_shapes))

    def forward(self, xs):
        for x in xs:
            self._check_input(x)
        if len({x.shape[:3] for x in xs}) != 1:
            raise ValueError(
                f"Concatenate '{self.name}': inputs must share (N, H, W), received shapes {[x.shape for x in xs]}"
            )
        xp = get_array_module(*xs)
        self._cache = [x.shape[3] for x in xs]
        y = layout.empty(self.output_shape([x.shape for x in xs]), xp.result_type(*xs), xp)
        start = 0
        for x, c in zip(xs, self._cache):           # stored channel-major: whole planes
            y[..., start : start + c] = x
            start += c
        return y

    def backward(self, dy):
        dxs, start = [], 0
        for c in self._cache:
            dxs.append(dy[..., start : start + c])
            start += c
        return dxs
