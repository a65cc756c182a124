"""Losses: values computed by hand, gradients against finite differences, stability."""
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from minunet import losses
from minunet.gradcheck import check_loss


@st.composite
def logits_and_target(draw, channels=None):
    n, h, w = draw(st.integers(1, 3)), draw(st.integers(1, 6)), draw(st.integers(1, 6))
    k = channels or draw(st.integers(2, 4))
    rng = np.random.default_rng(draw(st.integers(0, 2**31 - 1)))
    return rng.standard_normal((n, h, w, k)) * 2, rng.integers(0, max(k, 2), (n, h, w))


@given(logits_and_target(), st.booleans())
def test_softmax_cross_entropy_gradient(case, weighted):
    logits, t = case
    w = np.linspace(0.5, 2.0, logits.shape[-1]) if weighted else None
    assert check_loss(lambda z, y: losses.softmax_cross_entropy(z, y, w), logits, t).max_error < 1e-6


@given(logits_and_target(channels=1), st.booleans())
def test_sigmoid_cross_entropy_gradient(case, weighted):
    logits, t = case
    w = (0.3, 3.0) if weighted else None
    assert check_loss(lambda z, y: losses.sigmoid_cross_entropy(z, y, w), logits, t).max_error < 1e-6


@given(st.one_of(logits_and_target(), logits_and_target(channels=1)))
def test_dice_and_combined_gradients(case):
    logits, t = case
    assert check_loss(losses.dice_loss, logits, t).max_error < 1e-6
    assert check_loss(losses.ce_dice_loss, logits, t).max_error < 1e-6


def test_softmax_cross_entropy_by_hand():
    logits = np.array([0.0, np.log(3.0)]).reshape(1, 1, 1, 2)     # softmax = (1/4, 3/4)
    loss, d = losses.softmax_cross_entropy(logits, np.array([[[1]]]))
    assert np.isclose(loss, -np.log(0.75))
    np.testing.assert_allclose(d.ravel(), [0.25, -0.25])
    loss_w, d_w = losses.softmax_cross_entropy(logits, np.array([[[1]]]), class_weights=[1.0, 4.0])
    assert np.isclose(loss_w, -4 * np.log(0.75)) and np.allclose(d_w.ravel(), [1.0, -1.0])


def test_sigmoid_cross_entropy_by_hand():
    logits = np.array([0.0, 2.0]).reshape(1, 1, 2, 1)
    loss, d = losses.sigmoid_cross_entropy(logits, np.array([[[1, 0]]]))
    s2 = 1 / (1 + np.exp(-2.0))
    assert np.isclose(loss, (np.log(2) - np.log(1 - s2)) / 2)
    np.testing.assert_allclose(d.ravel(), [(0.5 - 1) / 2, s2 / 2])


def test_dice_by_hand():
    # two pixels, class-1 probabilities 0.5 and 0.5 (logits 0), target [1, 0]: D = (2*0.5 + 1) / (1 + 1 + 1)
    logits = np.zeros((1, 1, 2, 2))
    loss, _ = losses.dice_loss(logits, np.array([[[1, 0]]]))
    assert np.isclose(loss, 1 - 2 / 3)
    perfect = 50.0 * (2 * np.eye(2)[[1, 0]] - 1).reshape(1, 1, 2, 2)           # logits +-50 for [1, 0]
    assert losses.dice_loss(perfect, np.array([[[1, 0]]]))[0] < 1e-12


@pytest.mark.parametrize("scale", [1e2, 1e4])
def test_losses_stable_for_huge_logits(scale):
    rng = np.random.default_rng(0)
    logits = rng.standard_normal((2, 4, 4, 3)) * scale
    t = rng.integers(0, 3, (2, 4, 4))
    for f in (losses.softmax_cross_entropy, losses.dice_loss, losses.ce_dice_loss):
        loss, d = f(logits, t)
        assert np.isfinite(loss) and np.all(np.isfinite(d))
    loss, d = losses.sigmoid_cross_entropy(logits[..., :1], t.clip(0, 1))
    assert np.isfinite(loss) and np.all(np.isfinite(d))
    # a confidently right softmax has loss ~0, a confidently wrong one ~ the logit gap
    right = np.zeros((1, 1, 1, 2)); right[..., 1] = 1e4
    assert losses.softmax_cross_entropy(right, np.array([[[1]]]))[0] == 0.0
    assert np.isclose(losses.softmax_cross_entropy(right, np.array([[[0]]]))[0], 1e4)


def test_one_hot_and_labels_agree_and_float32_stays_float32():
    rng = np.random.default_rng(1)
    logits = rng.standard_normal((2, 3, 3, 3)).astype(np.float32)
    t = rng.integers(0, 3, (2, 3, 3))
    onehot = np.eye(3, dtype=np.float32)[t]
    for f in (losses.softmax_cross_entropy, losses.dice_loss, losses.ce_dice_loss):
        (l1, d1), (l2, d2) = f(logits, t), f(logits, onehot)
        assert np.isclose(l1, l2) and np.allclose(d1, d2)
        assert d1.dtype == np.float32


def test_bad_targets_are_named():
    logits = np.zeros((1, 2, 2, 3))
    with pytest.raises(ValueError, match=r"labels must lie in \[0, 2\], received \[0, 5\]"):
        losses.softmax_cross_entropy(logits, np.array([[[0, 5], [1, 1]]]))
    with pytest.raises(ValueError, match="does not fit logits"):
        losses.softmax_cross_entropy(logits, np.zeros((1, 3, 3)))
    with pytest.raises(ValueError, match=r"unknown loss 'l2'"):
        losses.get("l2")
