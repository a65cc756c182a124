"""textbook.py: every function equals the fast layers, finite differences and the loop references,
and the whole textbook U-Net (forward, backward, Adam) equals UNet step for step.

"Equal" is to 1e-10 relative to the size of the expected array, in float64: the two faces add
the same products in other orders, nothing more."""
import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

import reference
from strategies import away_from_zero, distinct, nhwc, normal
from minunet import UNet, backend, losses
from minunet import textbook as tb
from minunet.gradcheck import check_layer, check_loss, randomize_biases
from minunet.layers import Conv2D, ConvTranspose2D, MaxPool2D, ReLU, UpSampling2D, softmax
from minunet.optim import Adam

F64 = np.float64
RTOL = 1e-10
FD_TOL = 1e-6
EXAMPLES = 25                   # per hypothesis test: the whole file runs in a few seconds


def assert_equal(actual, expected, rtol=RTOL):
    """Equal to rtol, relative to the largest entry of expected (entries near 0 are sums that
    cancelled, whose rounding is that of the large terms)."""
    actual, expected = backend.to_numpy(actual), backend.to_numpy(expected)
    assert actual.shape == expected.shape and actual.dtype == expected.dtype
    scale = float(np.abs(expected).max()) if expected.size else 0.0
    np.testing.assert_allclose(actual, expected, rtol=rtol, atol=rtol * scale)


class Pair:
    """A textbook forward/backward pair in the shape gradcheck.check_layer takes: forward(x),
    backward(dy) -> dx, and params and grads dicts. ``backward_fn(dy, x, y, **params)`` returns
    dx and the dict of parameter gradients."""

    def __init__(self, forward_fn, backward_fn, **params):
        self.forward_fn, self.backward_fn = forward_fn, backward_fn
        self.params, self.grads = params, {}

    def forward(self, x):
        self.x, self.y = x, self.forward_fn(x, **self.params)
        return self.y

    def backward(self, dy):
        dx, self.grads = self.backward_fn(dy, self.x, self.y, **self.params)
        return dx


def conv2d_pair(kernel, bias, padding):
    def backward(dy, x, y, kernel, bias):
        dx, dkernel, dbias = tb.conv2d_backward(dy, x, kernel, padding)
        return dx, {"kernel": dkernel, "bias": dbias}
    return Pair(lambda x, kernel, bias: tb.conv2d(x, kernel, bias, padding), backward, kernel=kernel, bias=bias)


def conv_transpose2d_pair(kernel, bias, stride):
    def backward(dy, x, y, kernel, bias):
        dx, dkernel, dbias = tb.conv_transpose2d_backward(dy, x, kernel, stride)
        return dx, {"kernel": dkernel, "bias": dbias}
    return Pair(lambda x, kernel, bias: tb.conv_transpose2d(x, kernel, bias, stride), backward,
                kernel=kernel, bias=bias)


# ------------------------------------------------------------ equal to the fast layers
@settings(max_examples=EXAMPLES)
@given(nhwc(), st.integers(1, 4), st.sampled_from([1, 2, 3, (2, 3), (3, 2)]), st.sampled_from(["same", "valid"]),
       st.booleans(), st.sampled_from([None, "relu"]))
def test_conv2d_equals_the_layer(spec, filters, k, padding, use_bias, activation):
    """Even kernels included: 'same' puts the extra padding row at the bottom, as Keras and Conv2D do."""
    shape, seed = spec
    kh, kw = (k, k) if isinstance(k, int) else k
    assume(padding == "same" or (shape[1] >= kh and shape[2] >= kw))
    layer = randomize_biases(Conv2D(shape[3], filters, k, padding, use_bias, activation, dtype=F64, rng=seed),
                             seed, scale=1.0)
    x = normal(shape, seed)
    y = layer.forward(x)
    dy = normal(y.shape, seed + 1)
    dx = layer.backward(dy)
    kernel, bias = layer.params["kernel"], layer.params.get("bias")

    y_tb = tb.conv2d(x, kernel, bias, padding)
    dz = dy
    if activation == "relu":                        # the layer's fused ReLU is relu after conv2d
        y_tb = tb.relu(y_tb)
        dz = tb.relu_backward(dy, y_tb)
    dx_tb, dkernel_tb, dbias_tb = tb.conv2d_backward(dz, x, kernel, padding)
    assert_equal(y_tb, y)
    assert_equal(dx_tb, dx)
    assert_equal(dkernel_tb, layer.grads["kernel"])
    if use_bias:
        assert_equal(dbias_tb, layer.grads["bias"])


@settings(max_examples=EXAMPLES)
@given(nhwc(max_size=6), st.integers(1, 4), st.integers(1, 3), st.integers(1, 3), st.booleans())
def test_conv_transpose2d_equals_the_layer(spec, filters, k, stride, use_bias):
    """Overlapping windows (kernel > stride), gaps (kernel < stride) and the U-Net's tiling 2x2/2."""
    shape, seed = spec
    layer = randomize_biases(ConvTranspose2D(shape[3], filters, k, stride, use_bias, dtype=F64, rng=seed),
                             seed, scale=1.0)
    x = normal(shape, seed)
    y = layer.forward(x)
    dy = normal(y.shape, seed + 1)
    dx = layer.backward(dy)
    kernel = layer.params["kernel"]
    assert_equal(tb.conv_transpose2d(x, kernel, layer.params.get("bias"), stride), y)
    dx_tb, dkernel_tb, dbias_tb = tb.conv_transpose2d_backward(dy, x, kernel, stride)
    assert_equal(dx_tb, dx)
    assert_equal(dkernel_tb, layer.grads["kernel"])
    if use_bias:
        assert_equal(dbias_tb, layer.grads["bias"])


@settings(max_examples=EXAMPLES)
@given(nhwc(min_size=3, max_size=9), st.integers(1, 3))
def test_max_pool2d_equals_the_layer(spec, size):
    """Odd sizes included: the floor rule leaves the last rows and columns out, with zero gradient."""
    shape, seed = spec
    layer = MaxPool2D(size)
    x = distinct(shape, seed)
    y = layer.forward(x)
    dy = normal(y.shape, seed + 1)
    assert_equal(tb.max_pool2d(x, size), y)
    assert_equal(tb.max_pool2d_backward(dy, x, size), layer.backward(dy))


@settings(max_examples=EXAMPLES)
@given(nhwc(), st.integers(1, 3))
def test_upsample2d_equals_the_layer(spec, size):
    shape, seed = spec
    layer = UpSampling2D(size)
    x = normal(shape, seed)
    y = layer.forward(x)
    dy = normal(y.shape, seed + 1)
    assert_equal(tb.upsample2d(x, size), y)
    assert_equal(tb.upsample2d_backward(dy, size), layer.backward(dy))


@settings(max_examples=EXAMPLES)
@given(nhwc())
def test_relu_equals_the_layer(spec):
    shape, seed = spec
    layer = ReLU()
    x = away_from_zero(shape, seed)
    y = layer.forward(x)
    dy = normal(shape, seed + 1)
    assert_equal(tb.relu(x), y)
    assert_equal(tb.relu_backward(dy, tb.relu(x)), layer.backward(dy))


@settings(max_examples=EXAMPLES)
@given(nhwc(max_channels=5), st.booleans())
def test_softmax_cross_entropy_equals_the_loss(spec, one_hot):
    (n, h, w, k), seed = spec
    k = max(k, 2)
    rng = np.random.default_rng(seed)
    logits = rng.standard_normal((n, h, w, k)) * 3
    labels = rng.integers(0, k, (n, h, w))
    target = np.eye(k)[labels] if one_hot else labels
    loss, dlogits = losses.softmax_cross_entropy(logits, target)
    loss_tb, dlogits_tb = tb.softmax_cross_entropy(logits, target)
    assert_equal(np.asarray(loss_tb), np.asarray(loss))
    assert_equal(dlogits_tb, dlogits)
    assert_equal(tb.softmax(logits), softmax(logits))


def test_softmax_cross_entropy_by_hand_and_for_huge_logits():
    """Two classes, logits (0, log 3): q = (1/4, 3/4); label 1 costs -log(3/4), dz = (1/4, -1/4)."""
    logits = np.array([0.0, np.log(3.0)]).reshape(1, 1, 1, 2)
    loss, dlogits = tb.softmax_cross_entropy(logits, np.array([[[1]]]))
    assert np.isclose(loss, -np.log(0.75), rtol=1e-14)
    np.testing.assert_allclose(dlogits.ravel(), [0.25, -0.25], rtol=1e-14)
    loss, dlogits = tb.softmax_cross_entropy(logits + 1e4, np.array([[[1]]]))   # e^1e4 would overflow
    assert np.isclose(loss, -np.log(0.75), rtol=1e-9) and np.all(np.isfinite(dlogits))


def test_adam_update_equals_adam_step_for_step():
    rng = np.random.default_rng(0)
    shapes = {"a/kernel": (3, 3, 2, 4), "a/bias": (4,), "b/kernel": (1, 1, 4, 2)}
    params = {name: rng.standard_normal(s) for name, s in shapes.items()}
    params_tb = {name: p.copy() for name, p in params.items()}
    optimizer = Adam(params, lr=3e-3, beta_1=0.8, beta_2=0.99, epsilon=1e-6)
    state = {}
    for step in range(1, 6):
        grads = {name: rng.standard_normal(s) * 10.0**-step for name, s in shapes.items()}   # small: eps matters
        optimizer.step(grads)
        assert tb.adam_update(params_tb, grads, state, lr=3e-3, beta_1=0.8, beta_2=0.99, epsilon=1e-6) is state
        assert state["t"] == optimizer.iterations == step
        for name in shapes:
            assert_equal(params_tb[name], params[name])
            assert_equal(state["m"][name], optimizer.slots["m"][name])
            assert_equal(state["v"][name], optimizer.slots["v"][name])


def test_adam_first_step_moves_each_weight_by_lr():
    """At t = 1, m = (1 - b1) g and sqrt(v) = (1 - b2)^(1/2) |g|: the step is lr sign(g), whatever |g|
    (epsilon aside)."""
    params = {"w": np.array([1.0, 2.0, 3.0])}
    tb.adam_update(params, {"w": np.array([5.0, -0.01, 1e3])}, {}, lr=0.1, epsilon=0.0)
    np.testing.assert_allclose(params["w"], [0.9, 2.1, 2.9], rtol=1e-14)


# ---------------------------------------------------------------- the whole U-Net
def small_unet(depth, upsampling, seed=0):
    return randomize_biases(UNet(in_channels=2, n_classes=3, depth=depth, base_filters=2, upsampling=upsampling,
                                 dtype=F64, seed=seed), seed)


@pytest.mark.parametrize("upsampling", ["transpose", "nearest"])
@pytest.mark.parametrize("depth", [1, 2, 3])
def test_unet_forward_and_backward_equal_the_model(depth, upsampling):
    model = small_unet(depth, upsampling)
    rng = np.random.default_rng(depth)
    x = rng.standard_normal((2, 16, 8, 2))
    logits = model.forward(x)
    dlogits = rng.standard_normal(logits.shape)
    model.backward(dlogits)

    logits_tb, cache = tb.unet_forward(model.params, x, depth, upsampling)
    grads = tb.unet_backward(model.params, cache, dlogits)
    assert_equal(logits_tb, logits)
    assert list(grads) == list(model.params)                        # the same keys, in the same order
    for name, g in model.grads.items():
        assert_equal(grads[name], g)


def test_a_textbook_training_step_equals_the_engine_s():
    """A learner's loop over a real model's weights: textbook forward, loss, backward and Adam,
    three steps, give the weights UNet, losses and Adam give."""
    model = small_unet(2, "transpose", seed=3)
    params_tb = {name: p.copy() for name, p in model.params.items()}
    optimizer, state = Adam(model.params, lr=1e-2), {}
    rng = np.random.default_rng(0)
    for _ in range(3):
        x, labels = rng.standard_normal((2, 8, 8, 2)), rng.integers(0, 3, (2, 8, 8))
        loss, dlogits = losses.softmax_cross_entropy(model.forward(x), labels)
        model.backward(dlogits, input_gradient=False)
        optimizer.step(model.grads)

        logits, cache = tb.unet_forward(params_tb, x, depth=2)
        loss_tb, dlogits_tb = tb.softmax_cross_entropy(logits, labels)
        tb.adam_update(params_tb, tb.unet_backward(params_tb, cache, dlogits_tb), state, lr=1e-2)
        assert np.isclose(loss_tb, loss, rtol=RTOL)
    for name, p in model.params.items():
        assert_equal(params_tb[name], p)


# --------------------------------------------------------------- finite differences
@settings(max_examples=EXAMPLES)
@given(nhwc(max_size=6), st.integers(1, 3), st.sampled_from([1, 2, 3]), st.sampled_from(["same", "valid"]))
def test_conv2d_backward_equals_finite_differences(spec, filters, k, padding):
    shape, seed = spec
    assume(padding == "same" or min(shape[1:3]) >= k)
    kernel, bias = normal((k, k, shape[3], filters), seed + 2), normal(filters, seed + 3)
    report = check_layer(conv2d_pair(kernel, bias, padding), normal(shape, seed), seed=seed)
    assert set(report.errors) == {"x", "kernel", "bias"}
    assert report.max_error < FD_TOL, str(report)


@settings(max_examples=EXAMPLES)
@given(nhwc(max_size=5), st.integers(1, 3), st.integers(1, 3), st.integers(1, 3))
def test_conv_transpose2d_backward_equals_finite_differences(spec, filters, k, stride):
    shape, seed = spec
    kernel, bias = normal((k, k, filters, shape[3]), seed + 2), normal(filters, seed + 3)
    report = check_layer(conv_transpose2d_pair(kernel, bias, stride), normal(shape, seed), seed=seed)
    assert report.max_error < FD_TOL, str(report)


@settings(max_examples=EXAMPLES)
@given(nhwc(min_size=3), st.integers(1, 3))
def test_max_pool2d_backward_equals_finite_differences(spec, size):
    shape, seed = spec
    pair = Pair(lambda x: tb.max_pool2d(x, size), lambda dy, x, y: (tb.max_pool2d_backward(dy, x, size), {}))
    assert check_layer(pair, distinct(shape, seed), seed=seed).max_error < FD_TOL


@settings(max_examples=EXAMPLES)
@given(nhwc(), st.integers(1, 3))
def test_upsample2d_backward_equals_finite_differences(spec, size):
    shape, seed = spec
    pair = Pair(lambda x: tb.upsample2d(x, size), lambda dy, x, y: (tb.upsample2d_backward(dy, size), {}))
    assert check_layer(pair, normal(shape, seed), seed=seed).max_error < FD_TOL


@settings(max_examples=EXAMPLES)
@given(nhwc())
def test_relu_backward_equals_finite_differences(spec):
    shape, seed = spec
    pair = Pair(tb.relu, lambda dy, x, y: (tb.relu_backward(dy, y), {}))
    assert check_layer(pair, away_from_zero(shape, seed), seed=seed).max_error < FD_TOL


@settings(max_examples=EXAMPLES)
@given(nhwc(max_channels=4), st.booleans())
def test_softmax_cross_entropy_gradient_equals_finite_differences(spec, one_hot):
    (n, h, w, k), seed = spec
    k = max(k, 2)
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, k, (n, h, w))
    target = np.eye(k)[labels] if one_hot else labels
    assert check_loss(tb.softmax_cross_entropy, rng.standard_normal((n, h, w, k)) * 2, target).max_error < FD_TOL


@pytest.mark.parametrize("upsampling", ["transpose", "nearest"])
def test_unet_backward_equals_finite_differences(upsampling):
    """Every weight of a depth-2 U-Net (the cache, the concatenations and the skips' sums
    included): with L = sum(logits * dy), dy random, the change of L along a random direction d
    of each weight array, (L(p + eps d) - L(p - eps d)) / (2 eps), equals <dL/dp, d>. The logits
    are subtracted before the sum, so rounding scales with their change, not with L."""
    params = dict(small_unet(2, upsampling, seed=5).params)
    rng = np.random.default_rng(1)
    x = rng.standard_normal((2, 8, 8, 2))
    logits, cache = tb.unet_forward(params, x, 2, upsampling)
    dy = rng.standard_normal(logits.shape)
    grads = tb.unet_backward(params, cache, dy)
    assert list(grads) == list(params)
    eps = 1e-6
    for name, p in params.items():
        d = rng.standard_normal(p.shape)
        original = p.copy()
        p[...] = original + eps * d
        plus = tb.unet_forward(params, x, 2, upsampling)[0]
        p[...] = original - eps * d
        minus = tb.unet_forward(params, x, 2, upsampling)[0]
        p[...] = original
        numeric, analytic = float(((plus - minus) * dy).sum()) / (2 * eps), float((grads[name] * d).sum())
        assert abs(numeric - analytic) < FD_TOL * max(abs(numeric), abs(analytic)), (name, numeric, analytic)


# ------------------------------------------------------------------ max-pool ties
def test_max_pool_tie_sends_the_gradient_to_the_first_argmax():
    x = np.zeros((1, 4, 4, 1))          # every window is a four-way tie at 0
    x[0, 2, 3, 0] = 5.0                 # except the bottom-right one
    dx = tb.max_pool2d_backward(np.array([[[[1.0], [2.0]], [[3.0], [4.0]]]]), x)
    expected = np.zeros((1, 4, 4, 1))
    expected[0, 0, 0, 0], expected[0, 0, 2, 0], expected[0, 2, 0, 0] = 1.0, 2.0, 3.0  # top-left wins
    expected[0, 2, 3, 0] = 4.0
    np.testing.assert_array_equal(dx, expected)
    assert dx.sum() == 10.0             # nothing split, nothing lost


def test_max_pool_tie_order_is_row_major():
    """A 3x3 window with maxima at (0, 2) and (1, 0): row-major order meets (0, 2) first
    (column-major would meet (1, 0) first)."""
    x = np.zeros((1, 3, 3, 1))
    x[0, 0, 2, 0] = x[0, 1, 0, 0] = 1.0
    dx = tb.max_pool2d_backward(np.full((1, 1, 1, 1), 7.0), x, size=3)
    expected = np.zeros_like(x)
    expected[0, 0, 2, 0] = 7.0
    np.testing.assert_array_equal(dx, expected)


@settings(max_examples=EXAMPLES)
@given(nhwc(min_size=2, max_size=9), st.integers(2, 3))
def test_max_pool_ties_go_where_the_layer_and_the_loop_reference_send_them(spec, size):
    """Images of 0s and 1s, full of ties: all three faces pick the same pixel, bit for bit."""
    shape, seed = spec
    assume(min(shape[1:3]) >= size)
    x = np.random.default_rng(seed).integers(0, 2, shape).astype(F64)
    layer = MaxPool2D(size)
    dy = normal(layer.forward(x).shape, seed + 1)
    dx = tb.max_pool2d_backward(dy, x, size)
    np.testing.assert_array_equal(dx, layer.backward(dy))
    np.testing.assert_array_equal(dx, reference.max_pool2d_backward(dy, x, size, size))


# ---------------------------------------------------------------- loop references
@settings(max_examples=15)
@given(nhwc(max_size=5, max_channels=3), st.integers(1, 3), st.sampled_from([1, 2, 3]),
       st.sampled_from(["same", "valid"]))
def test_conv2d_equals_the_loop_reference(spec, filters, k, padding):
    shape, seed = spec
    assume(padding == "same" or min(shape[1:3]) >= k)
    x, kernel, bias = normal(shape, seed), normal((k, k, shape[3], filters), seed + 2), normal(filters, seed + 3)
    y = tb.conv2d(x, kernel, bias, padding)
    assert_equal(y, reference.conv2d(x, kernel, bias, padding))
    dy = normal(y.shape, seed + 1)
    got, expected = tb.conv2d_backward(dy, x, kernel, padding), reference.conv2d_backward(dy, x, kernel, padding)
    assert len(got) == len(expected) == 3                                      # dx, dkernel, dbias
    for g, e in zip(got, expected):
        assert_equal(g, e)


@settings(max_examples=15)
@given(nhwc(max_size=4, max_channels=3), st.integers(1, 3), st.integers(1, 3), st.integers(1, 3))
def test_conv_transpose2d_equals_the_loop_reference(spec, filters, k, stride):
    shape, seed = spec
    x, kernel, bias = normal(shape, seed), normal((k, k, filters, shape[3]), seed + 2), normal(filters, seed + 3)
    y = tb.conv_transpose2d(x, kernel, bias, stride)
    assert_equal(y, reference.conv_transpose2d(x, kernel, bias, stride))
    dy = normal(y.shape, seed + 1)
    got = tb.conv_transpose2d_backward(dy, x, kernel, stride)
    expected = reference.conv_transpose2d_backward(dy, x, kernel, stride)
    assert len(got) == len(expected) == 3                                      # dx, dkernel, dbias
    for g, e in zip(got, expected):
        assert_equal(g, e)


@settings(max_examples=15)
@given(nhwc(min_size=3, max_size=7), st.integers(1, 3))
def test_max_pool2d_equals_the_loop_reference(spec, size):
    shape, seed = spec
    x = distinct(shape, seed)
    y = tb.max_pool2d(x, size)
    np.testing.assert_array_equal(y, reference.max_pool2d(x, size, size))
    dy = normal(y.shape, seed + 1)
    np.testing.assert_array_equal(tb.max_pool2d_backward(dy, x, size), reference.max_pool2d_backward(dy, x, size, size))


@settings(max_examples=15)
@given(nhwc(max_size=5), st.integers(1, 3))
def test_upsample2d_equals_the_loop_reference(spec, size):
    shape, seed = spec
    x = normal(shape, seed)
    y = tb.upsample2d(x, size)
    np.testing.assert_array_equal(y, reference.upsampling2d(x, size))
    dy = normal(y.shape, seed + 1)
    assert_equal(tb.upsample2d_backward(dy, size), reference.upsampling2d_backward(dy, size))


# ------------------------------------------------------------------- errors, backends
def test_bad_input_is_refused_with_the_received_value():
    with pytest.raises(ValueError, match="padding must be 'same' or 'valid', received 'full'"):
        tb.conv2d(np.zeros((1, 4, 4, 1)), np.zeros((3, 3, 1, 1)), None, padding="full")
    with pytest.raises(ValueError, match=r"multiples of 2\*\*2, received shape \(1, 6, 8, 1\)"):
        tb.unet_forward(UNet(depth=2, base_filters=2).params, np.zeros((1, 6, 8, 1)), depth=2)
    with pytest.raises(ValueError, match=r"labels of shape \(1, 4\) do not fit logits \(1, 4, 4, 2\)"):
        tb.softmax_cross_entropy(np.zeros((1, 4, 4, 2)), np.zeros((1, 4), dtype=int))


def test_a_training_step_runs_on_each_backend(xp):
    """The textbook on the selected backend (CuPy where a GPU is present) gives NumPy's numbers."""
    model = small_unet(2, "transpose", seed=7)
    rng = np.random.default_rng(0)
    x, labels = rng.standard_normal((2, 8, 8, 2)), rng.integers(0, 3, (2, 8, 8))
    results = []
    for module in (np, xp):
        params = {name: module.asarray(backend.to_numpy(p).copy()) for name, p in model.params.items()}
        logits, cache = tb.unet_forward(params, module.asarray(x), depth=2)
        loss, dlogits = tb.softmax_cross_entropy(logits, module.asarray(labels))
        tb.adam_update(params, tb.unet_backward(params, cache, dlogits), {})
        assert backend.get_array_module(logits) is module
        results.append((float(loss), params))
    (loss_np, params_np), (loss_xp, params_xp) = results
    assert np.isclose(loss_xp, loss_np, rtol=1e-12)
    for name in params_np:
        assert_equal(params_xp[name], params_np[name], rtol=1e-9)
