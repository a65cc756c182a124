"""What every layer shares: parameters, their gradients, and input checks.

A layer follows the CS231n pattern::

    y = layer.forward(x)        # keeps what the backward pass needs
    dx = layer.backward(dy)     # dy = dL/dy; returns dL/dx, fills layer.grads

``params`` and ``grads`` are dicts with the same keys (``kernel``, ``bias``),
as in Keras, so Keras weights map one to one.
"""
import numpy as np

from ..backend import DEFAULT_DTYPE, asarray, get_array_module


class Layer:
    """Base class: a name, parameters and their gradients."""

    def __init__(self, name=None):
        self.name = name or type(self).__name__
        self.params = {}
        self.grads = {}
        self._cache = None  # what forward keeps for backward

    def __call__(self, x):
        return self.forward(x)

    def __repr__(self):
        return f"{type(self).__name__}(name={self.name!r})"

    def _grad_array(self, key):
        """grads[key], the array the backward pass writes dL/d params[key] into: allocated
        once, like params[key], and overwritten by every backward pass, so that a training
        step faults in no fresh pages for its gradients (docs/READING.md, the ledger)."""
        p, g = self.params[key], self.grads.get(key)
        xp = get_array_module(p)
        if g is None or g.shape != p.shape or g.dtype != p.dtype or get_array_module(g) is not xp:
            g = self.grads[key] = xp.empty_like(p)
        return g

    def _check_input(self, x, channels=None, min_size=1):
        """Raise one clear ValueError unless x is a floating NHWC batch that fits this layer;
        ``min_size`` is the least H and W, or a pair (least H, least W)."""
        min_h, min_w = (min_size, min_size) if isinstance(min_size, int) else min_size
        expected = f"(N, H, W, {channels if channels is not None else 'C'}) floating"
        if min_h > 1 or min_w > 1:
            expected += f" with H, W >= {min_h}" if min_h == min_w else f" with H >= {min_h}, W >= {min_w}"
        shape = tuple(getattr(x, "shape", ()))
        dtype = getattr(x, "dtype", None)
        ok = (
            len(shape) == 4
            and dtype is not None
            and np.dtype(dtype).kind == "f"
            and (channels is None or shape[3] == channels)
            and shape[1] >= min_h
            and shape[2] >= min_w
        )
        if not ok:
            raise ValueError(
                f"{type(self).__name__} '{self.name}': expected input {expected}, "
                f"received shape {shape} dtype {dtype}"
            )


def _fans(shape):
    """Keras's fan-in and fan-out of a kernel (kh, kw, a, b): kh*kw*a and kh*kw*b."""
    receptive = int(np.prod(shape[:-2]))
    return receptive * shape[-2], receptive * shape[-1]


def initialize(shape, kind, rng, dtype=DEFAULT_DTYPE):
    """A new kernel on the current backend, drawn on the CPU from ``rng`` (seeded).

    ``glorot_uniform``: U(-a, a) with a = sqrt(6 / (fan_in + fan_out)), Keras's default.
    ``he_normal``: a normal truncated at two standard deviations, scaled as Keras does
    so that the standard deviation is sqrt(2 / fan_in).
    """
    rng = np.random.default_rng(rng)
    fan_in, fan_out = _fans(shape)
    if kind == "glorot_uniform":
        limit = np.sqrt(6.0 / (fan_in + fan_out))
        w = rng.uniform(-limit, limit, size=shape)
    elif kind == "he_normal":
        # 0.8796 is the std of a standard normal truncated to [-2, 2] (Keras's constant).
        std = np.sqrt(2.0 / fan_in) / 0.87962566103423978
        w = rng.standard_normal(size=shape)
        out = np.abs(w) > 2
        while out.any():  # redraw the tails; a few rounds at most
            w[out] = rng.standard_normal(size=int(out.sum()))
            out = np.abs(w) > 2
        w *= std
    else:
        raise ValueError(f"unknown initializer {kind!r}; use 'glorot_uniform' or 'he_normal'")
    return asarray(w, dtype=dtype)


def zeros(shape, dtype=DEFAULT_DTYPE):
    """Zeros on the current backend (Keras's bias initializer)."""
    return asarray(np.zeros(shape), dtype=dtype)
