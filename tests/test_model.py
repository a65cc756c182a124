"""The U-Net, its optimizers and its model files."""
import h5py
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import minunet
from minunet import losses
from minunet.gradcheck import check_layer, randomize_biases
from minunet.model import pad_to_multiple
from minunet.optim import SGD, Adam


@given(depth=st.integers(1, 3), base=st.integers(2, 4), up=st.sampled_from(["transpose", "nearest"]),
       head=st.sampled_from(["softmax", "sigmoid"]), loss=st.sampled_from(["ce", "dice"]),
       size_factor=st.integers(1, 4), seed=st.integers(0, 1000))
@settings(max_examples=12)
def test_whole_model_gradients(depth, base, up, head, loss, size_factor, seed):
    size = min(2**depth * size_factor, 32)
    n_classes = 3 if head == "softmax" else 1
    model = randomize_biases(minunet.UNet(2, n_classes, depth, base, up, head, dtype=np.float64, seed=seed), seed)
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((2, size, size, 2))
    t = rng.integers(0, max(n_classes, 2), (2, size, size))
    report = check_layer(model, x, loss=losses.get(loss), target=t, directions=1, seed=seed)
    assert len(report.rows) == len(model.params) + 1
    assert report.max_error < 1e-6, str(report)


@given(depth=st.integers(1, 5), size_factor=st.integers(1, 3), n=st.integers(1, 3), classes=st.integers(2, 4),
       up=st.sampled_from(["transpose", "nearest"]))
@settings(max_examples=15)
def test_output_shapes_for_valid_sizes(depth, size_factor, n, classes, up):
    model = minunet.UNet(1, classes, depth, 2, up)
    h, w = 2**depth * size_factor, 2**depth * (size_factor + 1)
    x = np.zeros((n, h, w, 1), np.float32)
    logits = model.forward(x)
    assert logits.shape == (n, h, w, classes) and logits.dtype == np.float32
    assert model.backward(np.ones_like(logits)).shape == x.shape
    assert list(model.grads) == list(model.params)


def test_invalid_size_names_the_rule_and_nearest_sizes():
    model = minunet.UNet(depth=3, base_filters=2)
    with pytest.raises(ValueError, match=r"multiples of 2\*\*3 = 8, received 20x16; nearest valid sizes for 20: 16, 24"):
        model.forward(np.zeros((1, 20, 16, 1), np.float32))
    with pytest.raises(ValueError, match=r"expected input \(N, H, W, 1\), received shape \(1, 16, 16, 3\)"):
        model.forward(np.zeros((1, 16, 16, 3), np.float32))
    padded, crop = pad_to_multiple(np.ones((2, 20, 13, 1)), 8)
    assert padded.shape == (2, 24, 16, 1) and padded[crop].shape == (2, 20, 13, 1)
    probs = model.predict(np.random.default_rng(0).standard_normal((3, 20, 13, 1)))
    assert probs.shape == (3, 20, 13, 2)
    np.testing.assert_allclose(probs.sum(-1), 1, rtol=1e-5)


def test_parameter_counts_match_keras():
    # The seed's simplified Keras model; Keras's model.summary() counts 406,657.
    seed = minunet.UNet(depth=1, base_filters=64, upsampling="nearest", head="sigmoid")
    assert seed.n_params == 640 + 36_928 + 73_856 + 147_584 + 110_656 + 36_928 + 65 == 406_657
    assert minunet.UNet(depth=4, base_filters=64).n_params == 31_030_658      # Ronneberger's layout, 2 classes
    assert minunet.UNet(depth=5, base_filters=64).n_params == 124_361_090
    keys = list(seed.params)
    assert keys[:2] == ["enc1/conv1/kernel", "enc1/conv1/bias"] and keys[-2:] == ["head/kernel", "head/bias"]
    text = seed.summary(128, print_fn=None)
    assert "Total params: 406,657" in text and "(None, 128, 128, 192)" in text and "(None, 64, 64, 128)" in text


def test_float64_model_and_seeded_init():
    a = minunet.UNet(depth=2, base_filters=2, dtype=np.float64, seed=3)
    b = minunet.UNet(depth=2, base_filters=2, dtype=np.float64, seed=3)
    assert all(p.dtype == np.float64 for p in a.params.values())
    for k in a.params:
        np.testing.assert_array_equal(a.params[k], b.params[k])
    assert not np.array_equal(a.params["enc1/conv1/kernel"], minunet.UNet(depth=2, base_filters=2, seed=4).params["enc1/conv1/kernel"])


def test_every_activation_and_gradient_stays_float32():
    model = minunet.UNet(depth=2, base_filters=2, seed=0)
    x = np.random.default_rng(0).standard_normal((2, 8, 8, 1)).astype(np.float32)
    logits = model.forward(x)
    for layer in model.layers:
        cache = layer._cache
        arrays = cache if isinstance(cache, tuple) else (cache,)
        assert all(a.dtype in (np.float32, np.uint8, bool) for a in arrays if hasattr(a, "dtype")), layer.name
    loss, d = losses.ce_dice_loss(logits, np.zeros((2, 8, 8), int))
    assert logits.dtype == d.dtype == model.backward(d).dtype == np.float32
    assert all(g.dtype == np.float32 for g in model.grads.values())


def test_backward_frees_the_activations_and_needs_a_forward_first():
    model = minunet.UNet(depth=2, base_filters=2, seed=0)
    x = np.random.default_rng(0).standard_normal((2, 8, 8, 1)).astype(np.float32)
    _, d = losses.softmax_cross_entropy(model.forward(x), np.zeros((2, 8, 8), int))
    model.backward(d)
    assert all(layer._cache is None for layer in model.layers)
    with pytest.raises(ValueError, match=r"call model.forward\(x\) .*before each backward"):
        model.backward(d)
    model.forward(x, training=False)
    with pytest.raises(ValueError, match="no forward pass to go back through"):
        model.backward(d)


@pytest.mark.parametrize("up", ["transpose", "nearest"])
def test_each_decoder_input_is_the_up_sampling_then_the_skip(up):
    """Each decoder level's input is [up-sampled | skip] along channels, the skip being that
    level's encoder output, and its gradient splits back: the skip's part joins the pool's."""
    model = minunet.UNet(depth=3, base_filters=2, upsampling=up, seed=0)
    x = np.random.default_rng(0).standard_normal((2, 16, 16, 1)).astype(np.float32)
    features = model.features(x)
    for k, (block, up_layer) in enumerate(zip(reversed(model.up_blocks), reversed(model.ups))):   # shallowest first
        decoder_input = block.layers[0]._cache[0]
        skip = features[f"enc{k + 1}"]
        below = features["bridge"] if k + 1 == model.depth else features[f"dec{k + 2}"]
        expected = np.concatenate([up_layer.forward(below), skip], axis=-1)
        np.testing.assert_array_equal(decoder_input, expected)


def test_backward_without_the_input_gradient_gives_the_same_parameter_gradients():
    """input_gradient=False (what fit does) skips dL/dx only: every parameter gradient is
    bit for bit the one of a full backward pass, and the activations are freed all the same."""
    model = minunet.UNet(depth=2, base_filters=3, seed=0)
    x = np.random.default_rng(0).standard_normal((2, 8, 8, 1)).astype(np.float32)
    _, d = losses.softmax_cross_entropy(model.forward(x), np.random.default_rng(1).integers(0, 2, (2, 8, 8)))
    dx = model.backward(d)
    full = {k: g.copy() for k, g in model.grads.items()}
    model.forward(x)
    assert model.backward(d, input_gradient=False) is None
    assert all(layer._cache is None for layer in model.layers)
    for k, g in model.grads.items():
        np.testing.assert_array_equal(g, full[k], err_msg=k)
    assert dx.shape == x.shape and np.abs(dx).sum() > 0


def test_training_step_on_each_backend_gives_the_numpy_numbers(xp):
    """A whole step (forward, loss, backward without dL/dx, Adam) on every available backend:
    the same loss and parameters after the step as NumPy's, in float64."""
    from minunet import backend

    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 16, 16, 1))
    t = rng.integers(0, 2, (2, 16, 16))

    def step():
        model = minunet.UNet(depth=2, base_filters=3, dtype=np.float64, seed=0)
        opt = Adam(model.params, lr=1e-2)
        loss, d = losses.ce_dice_loss(model.forward(backend.xp().asarray(x)), backend.xp().asarray(t))
        model.backward(d, input_gradient=False)
        opt.step(model.grads)
        assert all(backend.get_array_module(p) is backend.xp() for p in model.params.values())
        return float(loss), {k: backend.to_numpy(p) for k, p in model.params.items()}

    loss, params = step()
    backend.use("numpy")
    ref_loss, ref_params = step()
    assert np.isclose(loss, ref_loss, rtol=1e-12)
    for k, p in params.items():
        np.testing.assert_allclose(p, ref_params[k], rtol=1e-9, atol=1e-12, err_msg=k)


# ----------------------------------------------------------------- optimizers
def test_adam_step_equals_closed_form():
    p = {"w": np.array([1.0, -2.0, 3.0])}
    g1, g2 = np.array([0.5, -1.0, 0.0]), np.array([0.1, 0.2, -0.3])
    opt = Adam(p, lr=0.1, beta_1=0.9, beta_2=0.999, epsilon=1e-7)
    opt.step({"w": g1})
    # t = 1: m = 0.1 g, v = 0.001 g^2, alpha = lr sqrt(1 - 0.999) / (1 - 0.9) = lr sqrt(0.001) / 0.1
    w1 = np.array([1.0, -2.0, 3.0]) - 0.1 * np.sqrt(0.001) * g1 / (np.sqrt(0.001) * np.abs(g1) + 1e-7)
    np.testing.assert_allclose(p["w"], w1, rtol=1e-12)
    assert np.allclose(p["w"], [0.9, -1.9, 3.0], atol=1e-5)     # Adam's first step is ~lr * sign(g)
    opt.step({"w": g2})
    m = 0.9 * 0.1 * g1 + 0.1 * g2
    v = 0.999 * 0.001 * g1**2 + 0.001 * g2**2
    alpha = 0.1 * np.sqrt(1 - 0.999**2) / (1 - 0.9**2)
    np.testing.assert_allclose(p["w"], w1 - alpha * m / (np.sqrt(v) + 1e-7), rtol=1e-12)
    assert opt.iterations == 2


def test_adam_in_chunks_equals_the_textbook_rule(monkeypatch):
    """Adam updates CHUNK elements at a time (the ledger in docs/READING.md); with chunks of 7
    elements, which split these parameters unevenly, every parameter and moment is that of
    the textbook's whole-array adam_update, step for step."""
    from minunet import optim
    from minunet import textbook as tb

    monkeypatch.setattr(optim, "CHUNK", 7)
    rng = np.random.default_rng(0)
    params = {"k": rng.standard_normal((3, 2, 5)), "b": rng.standard_normal(4)}
    params_tb = {name: p.copy() for name, p in params.items()}
    opt, state = Adam(params, lr=3e-3), {}
    for step in range(1, 4):
        grads = {name: rng.standard_normal(p.shape) for name, p in params.items()}
        opt.step(grads)
        tb.adam_update(params_tb, grads, state, lr=3e-3)
        for name in params:
            np.testing.assert_allclose(params[name], params_tb[name], rtol=1e-12)
            np.testing.assert_allclose(opt.slots["m"][name], state["m"][name], rtol=1e-12)
            np.testing.assert_allclose(opt.slots["v"][name], state["v"][name], rtol=1e-12)


def test_sgd_momentum_closed_form():
    p = {"w": np.array([1.0])}
    opt = SGD(p, lr=0.1, momentum=0.9)
    opt.step({"w": np.array([2.0])})     # u = -0.2
    opt.step({"w": np.array([2.0])})     # u = 0.9 * -0.2 - 0.2 = -0.38
    np.testing.assert_allclose(p["w"], [1.0 - 0.2 - 0.38])


def test_optimizer_rejects_mismatched_grads_and_strided_params():
    with pytest.raises(ValueError, match="grads do not match params"):
        Adam({"a": np.zeros(2)}).step({"b": np.zeros(2)})
    with pytest.raises(ValueError, match="parameter w is not contiguous"):
        Adam({"w": np.zeros((4, 4))[:, ::2]})


# ------------------------------------------------------------------ model files
def _train_steps(model, opt, x, t, steps):
    out = []
    for _ in range(steps):
        loss, d = losses.softmax_cross_entropy(model.forward(x), t)
        model.backward(d)
        opt.step(model.grads)
        out.append(float(loss))
    return out


def test_save_load_roundtrip_and_resume_equals_uninterrupted(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 16, 16, 1)).astype(np.float32)
    t = (x[..., 0] > 0.5).astype(int)
    model = minunet.UNet(depth=2, base_filters=4, seed=1)
    opt = Adam(model.params, lr=1e-2)
    _train_steps(model, opt, x, t, 3)
    model.save(tmp_path / "m.h5", optimizer=opt, history={"loss": [1.0, 0.5]}, state={"epoch": 3})
    ck = minunet.load_checkpoint(tmp_path / "m.h5")
    assert ck.history == {"loss": [1.0, 0.5]} and ck.state == {"epoch": 3} and ck.optimizer.iterations == 3
    np.testing.assert_array_equal(ck.model.predict(x), model.predict(x))            # bit for bit
    cont = _train_steps(model, opt, x, t, 3)
    resumed = _train_steps(ck.model, ck.optimizer, x, t, 3)
    assert cont == resumed
    for k in model.params:
        np.testing.assert_array_equal(model.params[k], ck.model.params[k])
    assert minunet.load(tmp_path / "m.h5").config == model.config
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.h5"]                   # no temporary left


def test_bad_model_files_raise_one_clear_error(tmp_path):
    model = minunet.UNet(depth=1, base_filters=2)
    model.save(tmp_path / "good.h5")
    data = (tmp_path / "good.h5").read_bytes()
    (tmp_path / "truncated.h5").write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match="truncated.h5: not a readable HDF5 file"):
        minunet.load(tmp_path / "truncated.h5")
    (tmp_path / "text.h5").write_text("hello")
    with pytest.raises(ValueError, match="not a readable HDF5 file"):
        minunet.load(tmp_path / "text.h5")
    with h5py.File(tmp_path / "foreign.h5", "w") as f:
        f["x"] = np.zeros(3)
    with pytest.raises(ValueError, match="foreign.h5: not a minunet model file"):
        minunet.load(tmp_path / "foreign.h5")
    with h5py.File(tmp_path / "good.h5", "a") as f:
        f.attrs["format_version"] = 99
    with pytest.raises(ValueError, match="format 99 is newer than this minunet reads"):
        minunet.load(tmp_path / "good.h5")
    with pytest.raises(FileNotFoundError, match="missing.h5: no such file"):
        minunet.load(tmp_path / "missing.h5")


def test_failed_save_leaves_the_old_file(tmp_path):
    model = minunet.UNet(depth=1, base_filters=2)
    model.save(tmp_path / "m.h5")
    before = (tmp_path / "m.h5").read_bytes()
    with pytest.raises(TypeError):
        model.save(tmp_path / "m.h5", state={"not json": object()})
    assert (tmp_path / "m.h5").read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.h5"]


def test_small_unet_overfits_one_image():
    size = 32
    yy, xx = np.mgrid[:size, :size]
    mask = (((yy - 16) / 4.0) ** 2 + ((xx - 14) / 9.0) ** 2 < 1).astype(np.int64)    # a disc-like lens
    rng = np.random.default_rng(0)
    image = (0.3 + 0.5 * mask + 0.1 * rng.standard_normal((size, size))).astype(np.float32)
    x, t = image[None, ..., None], mask[None]
    model = minunet.UNet(depth=2, base_filters=8, seed=0)
    opt = Adam(model.params, lr=1e-2)
    history = _train_steps(model, opt, x, t, 150)
    assert history[-1] < 0.1 * history[0], history[::10]
    assert ((model.predict(x)[0].argmax(-1) == mask).mean()) > 0.98
