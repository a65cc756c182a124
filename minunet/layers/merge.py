"""Concatenate along channels: the U-Net's skip connection.

y = [x_1 | x_2 | ...] along the last axis, so dy splits back into the pieces:
dx_k = dy[..., offset_k : offset_k + C_k].

Stored channel-major (``layout``), each piece of y is a run of whole planes, so y can
be allocated before its pieces exist: ``reserve`` hands out the views where they will
go, a layer writes its output straight into its view (``forward(x, out=view)``), and
``forward`` then copies only the pieces that are not already in place. The U-Net
reserves each decoder level's input while its encoder runs: the skip is written there
by the encoder, the up-sampled channels by the decoder, and nothing is copied.
"""
from ..backend import get_array_module
from . import layout
from .base import Layer


class Concatenate(Layer):
    """``forward([a, b])`` -> channels of a, then channels of b (Keras's ``concatenate``)."""

    def __init__(self, name=None):
        super().__init__(name)
        self._reserved = None       # (y, views) from reserve, for the next forward

    def output_shape(self, input_shapes):
        n, h, w, _ = input_shapes[0]
        return (n, h, w, sum(s[3] for s in input_shapes))

    def reserve(self, input_shapes, dtype, xp):
        """Allocate the next forward's output now; returns the views of it where each piece
        goes. A piece that ``forward`` receives as that very view is not copied."""
        y = layout.empty(self.output_shape(input_shapes), dtype, xp)
        views, start = [], 0
        for shape in input_shapes:
            views.append(y[..., start : start + shape[3]])
            start += shape[3]
        self._reserved = (y, views)
        return views

    def forward(self, xs):
        for x in xs:
            self._check_input(x)
        if len({x.shape[:3] for x in xs}) != 1:
            raise ValueError(
                f"Concatenate '{self.name}': inputs must share (N, H, W), received shapes {[x.shape for x in xs]}"
            )
        xp = get_array_module(*xs)
        self._cache = [x.shape[3] for x in xs]
        shape, dtype = self.output_shape([x.shape for x in xs]), xp.result_type(*xs)
        y, views = self._reserved or (None, [])
        self._reserved = None
        if y is None or y.shape != shape or y.dtype != dtype:
            y, views = layout.empty(shape, dtype, xp), []
        start = 0
        for k, (x, c) in enumerate(zip(xs, self._cache)):       # stored channel-major: whole planes
            if not (k < len(views) and x is views[k]):            # a piece made in place is not copied
                y[..., start : start + c] = x
            start += c
        return y

    def backward(self, dy):
        dxs, start = [], 0
        for c in self._cache:
            dxs.append(dy[..., start : start + c])
            start += c
        return dxs
