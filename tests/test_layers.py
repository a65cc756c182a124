"""Layers: gradients against finite differences, shape rules, loop references, errors."""
import contextlib

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import reference
from strategies import away_from_zero, distinct, nhwc, normal
from minunet.gradcheck import check_layer, randomize_biases
from minunet.layers import (Concatenate, Conv2D, ConvTranspose2D, MaxPool2D, ReLU, Sigmoid, Softmax,
                            UpSampling2D, engine, layout)

TOL = 1e-6
F64 = np.float64


@contextlib.contextmanager
def kernel_rows_stacked(stacked):
    """Conv2D with its kernel rows stacked into one product (``engine.rows_as_channels``), as
    for inputs of few channels, or never stacked, as for wide ones: whatever the test's channels."""
    saved, engine.NARROW = engine.NARROW, (10**9 if stacked else 0)
    try:
        yield
    finally:
        engine.NARROW = saved


# ---------------------------------------------------------------------- gradients
@given(nhwc(), st.integers(1, 5), st.sampled_from([1, 2, 3, 5]), st.sampled_from(["same", "valid"]),
       st.booleans(), st.sampled_from([None, "relu"]), st.booleans())
def test_conv2d_gradients(spec, filters, k, padding, use_bias, activation, stacked):
    shape, seed = spec
    if padding == "valid" and min(shape[1:3]) < k:
        return
    layer = randomize_biases(Conv2D(shape[3], filters, k, padding, use_bias, activation, dtype=F64, rng=seed),
                             seed, scale=1.0)
    with kernel_rows_stacked(stacked):
        report = check_layer(layer, normal(shape, seed), seed=seed)
    assert set(report.errors) == {"x", "kernel"} | ({"bias"} if use_bias else set())
    assert report.max_error < TOL, str(report)


@given(nhwc(max_size=6), st.integers(1, 5), st.integers(1, 3), st.integers(1, 3))
def test_conv_transpose2d_gradients(spec, filters, k, stride):
    shape, seed = spec
    layer = randomize_biases(ConvTranspose2D(shape[3], filters, k, stride, dtype=F64, rng=seed), seed, scale=1.0)
    report = check_layer(layer, normal(shape, seed), seed=seed)
    assert report.max_error < TOL, str(report)


@given(nhwc(min_size=3), st.integers(1, 3), st.integers(1, 3))
def test_max_pool_gradients(spec, pool, stride):
    shape, seed = spec
    report = check_layer(MaxPool2D(pool, stride), distinct(shape, seed), seed=seed)
    assert report.max_error < TOL, str(report)


@given(nhwc(), st.integers(1, 3))
def test_upsampling_gradients(spec, size):
    shape, seed = spec
    assert check_layer(UpSampling2D(size), normal(shape, seed), seed=seed).max_error < TOL


@given(nhwc(), st.sampled_from([ReLU, Sigmoid, Softmax]))
def test_activation_gradients(spec, kind):
    shape, seed = spec
    x = away_from_zero(shape, seed) * 3
    assert check_layer(kind(), x, seed=seed).max_error < TOL


@given(nhwc(), st.integers(1, 4))
def test_concatenate_gradients_split(spec, c2):
    shape, seed = spec
    a, b = normal(shape, seed), normal(shape[:3] + (c2,), seed + 1)
    layer = Concatenate()
    y = layer.forward([a, b])
    np.testing.assert_array_equal(y[..., : shape[3]], a)
    np.testing.assert_array_equal(y[..., shape[3] :], b)
    assert check_layer(layer, [a, b], seed=seed).max_error < TOL


# -------------------------------------------------------------------- shape rules
@given(nhwc(max_size=40), st.integers(1, 4), st.sampled_from([1, 3, 5]))
def test_same_padding_keeps_size(spec, filters, k):
    shape, seed = spec
    layer = Conv2D(shape[3], filters, k, "same", rng=0)
    y = layer.forward(normal(shape, seed).astype(np.float32))
    assert y.shape == layer.output_shape(shape) == shape[:3] + (filters,)


@given(nhwc(min_size=2, max_size=40), st.integers(1, 4), st.integers(1, 4))
def test_pooling_size_rule(spec, pool, stride):
    shape, seed = spec
    if min(shape[1:3]) < pool:
        return
    y = MaxPool2D(pool, stride).forward(normal(shape, seed))
    assert y.shape[1:3] == tuple((s - pool) // stride + 1 for s in shape[1:3])


@given(nhwc(max_size=20), st.integers(1, 4))
def test_upsampling_size_rule(spec, size):
    shape, seed = spec
    layer = UpSampling2D(size)
    y = layer.forward(normal(shape, seed))
    assert y.shape == layer.output_shape(shape) == (shape[0], shape[1] * size, shape[2] * size, shape[3])


@given(nhwc(max_size=20), st.integers(1, 3))
def test_transposed_conv_size_rule(spec, stride):
    shape, seed = spec
    layer = ConvTranspose2D(shape[3], 2, kernel_size=stride, strides=stride, rng=0)
    y = layer.forward(normal(shape, seed).astype(np.float32))
    assert y.shape == (shape[0], shape[1] * stride, shape[2] * stride, 2)


# ------------------------------------------------------------- loop references
@given(nhwc(max_size=7), st.integers(1, 4), st.sampled_from([1, 2, 3]), st.sampled_from(["same", "valid"]))
def test_conv2d_equals_loop_reference(spec, filters, k, padding):
    shape, seed = spec
    if padding == "valid" and min(shape[1:3]) < k:
        return
    layer = randomize_biases(Conv2D(shape[3], filters, k, padding, dtype=F64, rng=seed), seed, scale=1.0)
    x = normal(shape, seed)
    expected = reference.conv2d(x, layer.params["kernel"], layer.params["bias"], padding)
    for stacked in (False, True):
        with kernel_rows_stacked(stacked):
            np.testing.assert_allclose(layer.forward(x), expected, rtol=1e-12, atol=1e-12)


@given(nhwc(max_size=5), st.integers(1, 4), st.integers(1, 3), st.integers(1, 3))
def test_conv_transpose2d_equals_loop_reference(spec, filters, k, stride):
    shape, seed = spec
    layer = randomize_biases(ConvTranspose2D(shape[3], filters, k, stride, dtype=F64, rng=seed), seed, scale=1.0)
    x = normal(shape, seed)
    expected = reference.conv_transpose2d(x, layer.params["kernel"], layer.params["bias"], stride)
    np.testing.assert_allclose(layer.forward(x), expected, rtol=1e-12, atol=1e-12)


@given(nhwc(min_size=3), st.integers(1, 3), st.integers(1, 3))
def test_max_pool_equals_loop_reference(spec, pool, stride):
    shape, seed = spec
    x = normal(shape, seed)
    np.testing.assert_array_equal(MaxPool2D(pool, stride).forward(x), reference.max_pool2d(x, pool, stride))


@given(nhwc(), st.integers(1, 3))
def test_upsampling_equals_loop_reference(spec, size):
    shape, seed = spec
    x = normal(shape, seed)
    np.testing.assert_array_equal(UpSampling2D(size).forward(x), reference.upsampling2d(x, size))


@contextlib.contextmanager
def row_blocks_of_one():
    """Conv2D's im2col blocks shrunk to one output row each: every block boundary,
    halo and partial sum of the blocked path runs, even on tiny images."""
    saved, engine.rows_per_block = engine.rows_per_block, lambda *sizes: 1
    try:
        yield
    finally:
        engine.rows_per_block = saved


@given(nhwc(max_size=8), st.integers(1, 4), st.sampled_from([(1, 1), (3, 3), (2, 3), (3, 2), (5, 1)]),
       st.sampled_from(["same", "valid"]), st.booleans())
def test_conv2d_in_row_blocks_matches_one_block_and_the_loop_reference(spec, filters, k, padding, stacked):
    shape, seed = spec
    if padding == "valid" and (shape[1] < k[0] or shape[2] < k[1]):
        return
    layer = randomize_biases(Conv2D(shape[3], filters, k, padding, dtype=F64, rng=seed), seed, scale=1.0)
    x = normal(shape, seed)
    y = layer.forward(x)
    dy = normal(y.shape, seed + 1)
    dx = layer.backward(dy)
    grads = {name: g.copy() for name, g in layer.grads.items()}
    with row_blocks_of_one(), kernel_rows_stacked(stacked):
        y1 = layer.forward(x)
        dx1 = layer.backward(dy)
        for name, g in grads.items():
            np.testing.assert_allclose(layer.grads[name], g, rtol=1e-12, atol=1e-12)
        report = check_layer(layer, x, seed=seed)
    np.testing.assert_allclose(y1, reference.conv2d(x, layer.params["kernel"], layer.params["bias"], padding),
                               rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(y1, y, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(dx1, dx, rtol=1e-12, atol=1e-12)
    assert report.max_error < TOL, str(report)


def test_row_blocks_fit_the_cache_but_are_never_smaller_than_the_kernel_or_4096_pixels():
    mb = 1 << 20
    assert (engine.BLOCK_BYTES, engine.BLOCK_PIXELS) == (12 * mb, 4096)
    # level 1 at base 16: rows of 8 x 128 pixels x 48 floats, a 9 KB kernel: 12 MB hold 62 + 2 rows,
    # so 3 blocks, of 43 rows each (the last 42), not two of 62 and one of 4
    assert engine.rows_per_block(128, 3, 8 * 128 * 48 * 4, 3 * 3 * 16 * 16 * 4, 8 * 128) == 43
    # level 2, 32 -> 32 channels: rows of 8 x 64 pixels x 96 floats; 62 + 2 rows would fit: two
    # blocks of 32 rows, not 62 and 2
    assert engine.rows_per_block(64, 3, 8 * 64 * 96 * 4, 3 * 3 * 32 * 32 * 4, 8 * 64) == 32
    # the bridge at base 64: 8 x 8 pixels x 6144 floats a row, a 75 MB kernel: one block for all 8 rows
    assert engine.rows_per_block(8, 3, 8 * 8 * 6144 * 4, 3 * 3 * 2048 * 1024 * 4, 8 * 8) == 8
    # level 2's first decoder layer at base 64, 256 -> 128 channels: rows of 8 x 64 pixels x 768
    # floats (1.5 MB), so 12 MB would make blocks of 6 rows; 4096 pixels make 8
    assert engine.rows_per_block(64, 3, 8 * 64 * 768 * 4, 3 * 3 * 256 * 128 * 4, 8 * 64) == 8
    # rows larger than a block, and of 4096 pixels or more: one output row at a time
    assert engine.rows_per_block(64, 3, 16 * mb, 1024, 4096) == 1


def test_kernel_rows_are_stacked_only_for_inputs_of_few_channels():
    assert engine.NARROW == 8
    assert engine.stacks_rows(3, 3, 1)              # the network's image: one product with 9 rows, not 3 with 3
    assert engine.stacks_rows(3, 3, 2)              # 6 rows a kernel row
    assert not engine.stacks_rows(3, 3, 3)          # 9: kh products of kw*C rows, as everywhere in the U-Net
    assert engine.stacks_rows(5, 1, 4)
    assert not engine.stacks_rows(1, 1, 2)          # one kernel row: nothing to stack (the head's input gradient)


def test_rows_as_channels_is_the_same_correlation_with_one_kernel_row():
    """A kh x kw correlation over C channels equals the 1 x kw correlation of rows_as_channels(x)
    with kernel_rows_as_channels(K), padding rows built in."""
    x = normal((2, 5, 6, 2), 0)
    kernel = normal((3, 2, 2, 4), 1)
    pads = (1, 1, 0, 1)
    stacked, stacked_pads = engine.rows_as_channels(x, 3, pads)
    assert stacked.shape == (2, 5, 6, 6) and stacked_pads == (0, 0, 0, 1)
    np.testing.assert_array_equal(stacked[..., 2:4], x)                             # channels (i=1, c): x itself
    np.testing.assert_array_equal(stacked[:, 0, :, :2], 0)                          # the padding row on top
    expected = reference.conv2d(np.pad(x, ((0, 0), (1, 1), (0, 1), (0, 0))), kernel, np.zeros(4), "valid")
    with kernel_rows_stacked(False):
        np.testing.assert_allclose(engine.correlate(stacked, engine.kernel_rows_as_channels(kernel), stacked_pads),
                                   expected, rtol=1e-12, atol=1e-12)


def test_layers_reuse_gradient_arrays_and_never_return_scratch():
    """grads arrays are overwritten in place by every backward; outputs and input gradients
    are arrays of their own, untouched by the next layer's use of the scratch buffers."""
    rng = np.random.default_rng(0)
    a, b = Conv2D(3, 4, 3, rng=0), Conv2D(3, 4, 3, rng=1)
    x = rng.standard_normal((2, 6, 6, 3)).astype(np.float32)
    y = a.forward(x)
    y_before = y.copy()
    dx = a.backward(np.ones_like(y))
    dx_before, kernel_grad = dx.copy(), a.grads["kernel"]
    b.forward(2 * x)
    b.backward(np.full_like(y, 3.0))
    np.testing.assert_array_equal(y, y_before)
    np.testing.assert_array_equal(dx, dx_before)
    first = kernel_grad.copy()
    a.forward(x)
    a.backward(2 * np.ones_like(y))
    assert a.grads["kernel"] is kernel_grad                 # the same array, overwritten
    np.testing.assert_allclose(kernel_grad, 2 * first, rtol=1e-6)


def stored(x, order):
    """x (NHWC) with the same values, stored in another memory order: 'C' (a user's batch),
    'planes' (what minunet's layers make) or 'scrambled' (neither)."""
    if order == "C":
        return np.ascontiguousarray(x)
    if order == "planes":
        y = layout.empty(x.shape, x.dtype, np)
    else:
        y = np.empty((x.shape[2], x.shape[0], x.shape[3], x.shape[1]), x.dtype).transpose(1, 3, 0, 2)
    y[...] = x
    return y


@pytest.mark.parametrize("make", [
    lambda: Conv2D(3, 4, 3, dtype=F64, rng=0), lambda: Conv2D(3, 4, 3, activation="relu", dtype=F64, rng=0),
    lambda: Conv2D(3, 4, (2, 3), "valid", dtype=F64, rng=0), lambda: Conv2D(3, 2, 1, dtype=F64, rng=0),
    lambda: ConvTranspose2D(3, 4, 2, 2, dtype=F64, rng=0), lambda: ConvTranspose2D(3, 2, 3, 2, dtype=F64, rng=0),
    lambda: MaxPool2D(2), lambda: UpSampling2D(2), lambda: ReLU()],
    ids=["conv3x3", "conv3x3-relu", "conv2x3-valid", "conv1x1", "convT", "convT-overlap", "maxpool", "upsample", "relu"])
def test_layers_store_their_outputs_as_planes_and_take_any_memory_order(make):
    """Every output and input gradient is stored channel-major (its planes contiguous; an
    element-wise layer keeps the order it is given), and the values never depend on how x
    and dy are stored: bit for bit the same."""
    layer = make()
    x0 = distinct((2, 6, 7, 3), 0)
    y0 = dx0 = None
    for x_order in ("C", "planes", "scrambled"):
        for dy_order in ("C", "planes", "scrambled"):
            y = layer.forward(stored(x0, x_order))
            dy = stored(normal(y.shape, 1), dy_order)
            dx = layer.backward(dy)
            if not isinstance(layer, ReLU) or x_order == dy_order == "planes":
                assert layout.planes(y).flags.c_contiguous, (x_order, dy_order)
                assert layout.planes(dx).flags.c_contiguous, (x_order, dy_order)
            if y0 is None:
                y0, dx0, grads0 = y.copy(), dx.copy(), {k: g.copy() for k, g in layer.grads.items()}
            np.testing.assert_array_equal(y, y0)
            np.testing.assert_array_equal(dx, dx0)
            for k, g in grads0.items():
                np.testing.assert_array_equal(layer.grads[k], g)


def test_concatenate_stores_planes_and_splits_dy_into_views():
    a, b = stored(normal((2, 4, 5, 3), 0), "C"), stored(normal((2, 4, 5, 2), 1), "planes")
    concat = Concatenate()
    y = concat.forward([a, b])
    assert layout.planes(y).flags.c_contiguous
    np.testing.assert_array_equal(y, np.concatenate([a, b], axis=-1))
    da, db = concat.backward(y)
    assert np.shares_memory(da, y) and np.shares_memory(db, y)       # channel ranges of dy: no copies
    assert layout.planes(db).flags.c_contiguous                       # whole planes
    np.testing.assert_array_equal(db, b)


def test_scratch_reuses_one_buffer_per_name_and_dtype():
    scratch = engine.scratch
    a = scratch("test", (4, 5), np.float32, np)
    b = scratch("test", (2, 3), np.float32, np)                # smaller: a view of the same memory
    assert np.shares_memory(a, b) and b.shape == (2, 3)
    assert not np.shares_memory(a, scratch("test", (4, 5), np.float64, np))   # another dtype, another buffer
    c = scratch("test", (10, 10), np.float32, np)              # larger: a new buffer
    assert c.shape == (10, 10) and not np.shares_memory(a, c)
    assert np.shares_memory(c, scratch("test", (4, 5), np.float32, np))


def test_conv_transpose_is_the_adjoint_of_the_strided_conv():
    """<convT(x), y> = <x, conv_s(y)>: the transposed conv is the adjoint of a stride-2 conv."""
    rng = np.random.default_rng(0)
    up = ConvTranspose2D(3, 4, 2, 2, use_bias=False, dtype=F64, rng=0)
    x, y = rng.standard_normal((2, 5, 6, 3)), rng.standard_normal((2, 10, 12, 4))
    k = up.params["kernel"]  # (2, 2, F=4, C=3)
    conv_y = np.einsum("nhpwqf,pqfc->nhwc", y.reshape(2, 5, 2, 6, 2, 4), k)  # stride-2 conv of y
    assert np.isclose(np.sum(up.forward(x) * y), np.sum(x * conv_y), rtol=1e-12)


# ----------------------------------------------------------------- max-pool ties
def test_max_pool_tie_sends_gradient_to_one_argmax():
    x = np.zeros((1, 4, 4, 1))          # every window is a four-way tie at 0
    x[0, 2, 3, 0] = 5.0                 # except the bottom-right one
    pool = MaxPool2D(2)
    pool.forward(x)
    dx = pool.backward(np.array([[[[1.0], [2.0]], [[3.0], [4.0]]]]))
    expected = np.zeros((1, 4, 4, 1))
    expected[0, 0, 0, 0], expected[0, 0, 2, 0], expected[0, 2, 0, 0] = 1.0, 2.0, 3.0  # first (top-left) wins
    expected[0, 2, 3, 0] = 4.0
    np.testing.assert_array_equal(dx, expected)
    assert dx.sum() == 10.0             # nothing split, nothing lost


# ------------------------------------------------------------------ softmax etc.
@given(nhwc(), st.floats(1.0, 1e4))
def test_softmax_sums_to_one_and_stays_finite(spec, scale):
    shape, seed = spec
    y = Softmax().forward(normal(shape, seed) * scale)
    assert np.all(np.isfinite(y))
    np.testing.assert_allclose(y.sum(axis=-1), 1.0, rtol=1e-12)


def test_sigmoid_is_finite_and_exact_at_extremes():
    y = Sigmoid().forward(np.array([-1e4, -30.0, 0.0, 30.0, 1e4]).reshape(1, 1, 5, 1))
    np.testing.assert_allclose(y.ravel(), [0.0, 9.357622968839299e-14, 0.5, 1 - 9.357622968839299e-14, 1.0],
                               rtol=1e-9, atol=1e-300)


@given(nhwc(max_size=7), st.integers(1, 4), st.sampled_from([1, 3, (2, 3)]), st.sampled_from(["same", "valid"]))
def test_conv2d_with_relu_is_exactly_conv2d_then_relu(spec, filters, k, padding):
    """activation='relu' fuses max(y, 0) into the convolution: the same output, input gradient
    and parameter gradients as a ReLU layer after it, bit for bit."""
    shape, seed = spec
    kh, kw = (k, k) if isinstance(k, int) else k
    if padding == "valid" and (shape[1] < kh or shape[2] < kw):
        return
    fused = randomize_biases(Conv2D(shape[3], filters, k, padding, activation="relu", dtype=F64, rng=seed), seed)
    conv, relu = Conv2D(shape[3], filters, k, padding, dtype=F64, rng=seed), ReLU()
    conv.params = {name: p.copy() for name, p in fused.params.items()}
    x = normal(shape, seed)
    y = fused.forward(x)
    np.testing.assert_array_equal(y, relu.forward(conv.forward(x)))
    dy = normal(y.shape, seed + 1)
    np.testing.assert_array_equal(fused.backward(dy), conv.backward(relu.backward(dy)))
    for name in fused.params:
        np.testing.assert_array_equal(fused.grads[name], conv.grads[name])


def test_conv2d_relu_by_hand():
    """A 1x1 convolution that doubles and subtracts 1, then ReLU: y = max(2x - 1, 0) and
    dx = 2 dy where 2x - 1 > 0."""
    conv = Conv2D(1, 1, 1, activation="relu", dtype=F64)
    conv.params["kernel"][...], conv.params["bias"][...] = 2.0, -1.0
    x = np.array([-1.0, 0.25, 1.0, 3.0]).reshape(1, 1, 4, 1)
    np.testing.assert_array_equal(conv.forward(x).ravel(), [0, 0, 1, 5])
    np.testing.assert_array_equal(conv.backward(np.full_like(x, 7.0)).ravel(), [0, 0, 14, 14])
    np.testing.assert_array_equal(conv.grads["bias"], [14.0])                    # 7 + 7
    np.testing.assert_array_equal(conv.grads["kernel"].ravel(), [7.0 * 1 + 7.0 * 3])


def test_relu_forward_and_mask():
    relu = ReLU()
    x = np.array([-2.0, -0.0, 0.5, 3.0]).reshape(1, 1, 4, 1)
    np.testing.assert_array_equal(relu.forward(x).ravel(), [0, 0, 0.5, 3])
    np.testing.assert_array_equal(relu.backward(np.full_like(x, 7.0)).ravel(), [0, 0, 7, 7])


# ----------------------------------------------------------------- dtypes, init
@pytest.mark.parametrize("make", [
    lambda: Conv2D(3, 4, dtype=np.float32), lambda: ConvTranspose2D(3, 4, dtype=np.float32),
    lambda: MaxPool2D(), lambda: UpSampling2D(), lambda: ReLU(), lambda: Sigmoid(), lambda: Softmax()])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_output_and_gradients_follow_the_input_dtype(make, dtype):
    layer = make()
    x = np.random.default_rng(0).standard_normal((2, 6, 6, 3)).astype(dtype)
    y = layer.forward(x)
    assert y.dtype == dtype
    assert layer.backward(np.ones_like(y)).dtype == dtype
    for k, g in layer.grads.items():
        assert g.dtype == layer.params[k].dtype == np.float32


def test_glorot_uniform_and_he_normal_statistics():
    conv = Conv2D(64, 128, 3, rng=0)
    k = conv.params["kernel"]
    limit = np.sqrt(6 / (9 * 64 + 9 * 128))
    assert k.dtype == np.float32 and np.abs(k).max() <= limit
    assert np.isclose(k.std(), limit / np.sqrt(3), rtol=0.02)       # std of U(-a, a)
    np.testing.assert_array_equal(conv.params["bias"], 0)
    he = Conv2D(64, 128, 3, kernel_initializer="he_normal", rng=0).params["kernel"]
    assert np.isclose(he.std(), np.sqrt(2 / (9 * 64)), rtol=0.02)
    assert np.abs(he).max() <= 2 * np.sqrt(2 / (9 * 64)) / 0.87962566103423978
    np.testing.assert_array_equal(Conv2D(3, 4, rng=7).params["kernel"], Conv2D(3, 4, rng=7).params["kernel"])


# -------------------------------------------------------------------- bad input
@pytest.mark.parametrize("layer, x, fragment", [
    (Conv2D(3, 4, name="c"), np.zeros((2, 8, 8)), "received shape (2, 8, 8)"),
    (Conv2D(3, 4, name="c"), np.zeros((2, 8, 8, 5)), "(N, H, W, 3)"),
    (Conv2D(3, 4, name="c"), np.zeros((2, 8, 8, 3), dtype=np.int64), "dtype int64"),
    (Conv2D(3, 4, 5, padding="valid", name="c"), np.zeros((1, 4, 8, 3)), "H, W >= 5"),
    (MaxPool2D(3, name="p"), np.zeros((1, 2, 8, 1)), "H, W >= 3"),
    (ConvTranspose2D(2, 4, name="t"), np.zeros((1, 4, 4, 3)), "(N, H, W, 2)"),
    (UpSampling2D(name="u"), np.zeros((4, 4, 1), dtype=np.float32), "received shape (4, 4, 1)"),
    (ReLU(name="r"), np.zeros((1, 4, 4, 1), dtype=np.int32), "dtype int32"),
    (Softmax(name="s"), np.zeros((2, 3)), "received shape (2, 3)"),
])
def test_bad_input_names_layer_expected_and_received(layer, x, fragment):
    with pytest.raises(ValueError) as e:
        layer.forward(x)
    assert f"'{layer.name}'" in str(e.value) and fragment in str(e.value)
    assert "\n" not in str(e.value)


def test_bad_constructor_arguments():
    with pytest.raises(ValueError, match="padding must be 'same' or 'valid'"):
        Conv2D(1, 1, padding="full")
    with pytest.raises(ValueError, match="kernel_size must be a positive int"):
        Conv2D(1, 1, kernel_size=0)
    with pytest.raises(ValueError, match="unknown initializer 'orthogonal'"):
        Conv2D(1, 1, kernel_initializer="orthogonal")
    with pytest.raises(ValueError, match="activation must be None, 'linear' or 'relu', received 'tanh'"):
        Conv2D(1, 1, activation="tanh")


# ------------------------------------------------------------ on every backend
@pytest.mark.parametrize("make", [
    lambda: Conv2D(3, 4, 3, activation="relu", dtype=F64, rng=0), lambda: Conv2D(3, 2, 1, dtype=F64, rng=0),
    lambda: ConvTranspose2D(3, 4, 2, 2, dtype=F64, rng=0), lambda: MaxPool2D(2), lambda: UpSampling2D(2),
    lambda: ReLU(), lambda: Sigmoid(), lambda: Softmax()], ids=["conv3x3", "conv1x1", "convT", "maxpool", "upsample",
                                                                  "relu", "sigmoid", "softmax"])
def test_gradients_on_each_backend(xp, make):
    """The same gradient checks with the arrays on NumPy, and on CuPy where a GPU is present."""
    layer = make()                                    # parameters are created on the selected backend
    x = xp.asarray(distinct((2, 6, 6, 3), 0) if isinstance(layer, MaxPool2D) else away_from_zero((2, 6, 6, 3), 0))
    report = check_layer(layer, x)
    assert report.max_error < TOL, str(report)


# ------------------------------------------- every path of the engine = the textbook
# Each trick of the engine (docs/READING.md, the ledger) is forced on and off here and its
# forward and backward compared with minunet/textbook.py or the loop references.
def close(actual, expected):
    """Equal to 1e-10, relative to the largest entry of expected."""
    scale = float(np.abs(expected).max()) if expected.size else 0.0
    np.testing.assert_allclose(actual, expected, rtol=1e-10, atol=1e-10 * scale)


@given(nhwc(max_size=7), st.integers(1, 4), st.sampled_from([(1, 1), (3, 3), (2, 3), (5, 1)]),
       st.sampled_from(["same", "valid"]), st.booleans(), st.booleans(), st.booleans())
def test_every_conv2d_path_equals_the_textbook(spec, filters, k, padding, stacked, one_row_blocks, relu):
    """Kernel rows stacked as channels or not, blocks of one output row or as sized, with or
    without the fused ReLU: y, dx, dK and db are the textbook's."""
    from minunet import textbook as tb

    shape, seed = spec
    if padding == "valid" and (shape[1] < k[0] or shape[2] < k[1]):
        return
    layer = randomize_biases(Conv2D(shape[3], filters, k, padding, activation="relu" if relu else None,
                                    dtype=F64, rng=seed), seed, scale=1.0)
    x = away_from_zero(shape, seed)
    kernel, bias = layer.params["kernel"], layer.params["bias"]
    with kernel_rows_stacked(stacked), (row_blocks_of_one() if one_row_blocks else contextlib.nullcontext()):
        y = layer.forward(x)
        dy = normal(y.shape, seed + 1)
        dx = layer.backward(dy)
    y_tb = tb.conv2d(x, kernel, bias, padding)
    dy_tb = dy
    if relu:
        y_tb = tb.relu(y_tb)
        dy_tb = tb.relu_backward(dy, y_tb)
    dx_tb, dkernel_tb, dbias_tb = tb.conv2d_backward(dy_tb, x, kernel, padding)
    close(y, y_tb)
    close(dx, dx_tb)
    close(layer.grads["kernel"], dkernel_tb)
    close(layer.grads["bias"], dbias_tb)


@given(nhwc(max_size=5), st.integers(1, 4), st.integers(1, 3), st.integers(1, 3))
def test_every_conv_transpose2d_path_equals_the_textbook(spec, filters, k, stride):
    """Windows that tile the output (k == stride: written once) or overlap (zeroed, then added)."""
    from minunet import textbook as tb

    shape, seed = spec
    layer = randomize_biases(ConvTranspose2D(shape[3], filters, k, stride, dtype=F64, rng=seed), seed, scale=1.0)
    x = normal(shape, seed)
    y = layer.forward(x)
    dy = normal(y.shape, seed + 1)
    dx = layer.backward(dy)
    kernel, bias = layer.params["kernel"], layer.params["bias"]
    close(y, tb.conv_transpose2d(x, kernel, bias, stride))
    dx_tb, dkernel_tb, dbias_tb = tb.conv_transpose2d_backward(dy, x, kernel, stride)
    close(dx, dx_tb)
    close(layer.grads["kernel"], dkernel_tb)
    close(layer.grads["bias"], dbias_tb)


@given(nhwc(min_size=3), st.integers(1, 3), st.integers(1, 3), st.booleans())
def test_every_max_pool_path_equals_the_textbook_and_the_loop_reference(spec, pool, stride, ties):
    """Tiled windows (stride = pool: dx written once) against the textbook, overlapping ones
    (dx accumulated) against the loop reference; with ties, the first arg-max takes dy."""
    from minunet import textbook as tb

    shape, seed = spec
    x = distinct(shape, seed)
    if ties:
        x = np.round(x * 3) / 3                                         # many equal values in a window
    layer = MaxPool2D(pool, stride)
    y = layer.forward(x)
    dy = normal(y.shape, seed + 1)
    dx = layer.backward(dy)
    np.testing.assert_array_equal(y, reference.max_pool2d(x, pool, stride))
    close(dx, reference.max_pool2d_backward(dy, x, pool, stride))    # overlapping: sums in another order
    if stride == pool:
        np.testing.assert_array_equal(y, tb.max_pool2d(x, pool))
        np.testing.assert_array_equal(dx, tb.max_pool2d_backward(dy, x, pool))
