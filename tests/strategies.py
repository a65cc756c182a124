"""Hypothesis strategies and value makers shared by the layer and textbook tests (as in
MyGrad's tests: shapes are drawn first, then float64 values from a drawn seed, kept away
from kinks and ties where a test needs that)."""
import numpy as np
from hypothesis import strategies as st


@st.composite
def nhwc(draw, min_size=1, max_size=9, max_channels=4):
    """A shape (N, H, W, C) and a seed for the float64 values."""
    n = draw(st.integers(1, 3))
    h = draw(st.integers(min_size, max_size))
    w = draw(st.integers(min_size, max_size))
    c = draw(st.integers(1, max_channels))
    return (n, h, w, c), draw(st.integers(0, 2**31 - 1))


def normal(shape, seed):
    return np.random.default_rng(seed).standard_normal(shape)


def distinct(shape, seed):
    """Values with no ties and gaps of at least 0.01: no max-pool window is near a tie."""
    rng = np.random.default_rng(seed)
    return (rng.permutation(int(np.prod(shape))).reshape(shape) * 0.01 - 1.0) * rng.choice([1, -1])


def away_from_zero(shape, seed):
    """Normal values pushed at least 0.1 from 0, the ReLU's kink."""
    x = normal(shape, seed)
    return x + 0.1 * np.sign(x)
