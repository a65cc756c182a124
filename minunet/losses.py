"""Segmentation losses, each fused with its activation: ``loss, dlogits = f(logits, target)``.

Every loss takes the logits (the network's output before softmax or sigmoid) and
returns the scalar loss, averaged over batch and pixels, and its gradient with
respect to the logits. Fusing the activation into the loss keeps both stable for
logits of any size and makes the gradient short:

softmax cross-entropy   L = -1/P sum_p w[t_p] log softmax(z_p)[t_p]      dz = w (softmax(z) - onehot) / P
sigmoid cross-entropy   L = 1/P sum_p w (max(z,0) - z t + log(1 + e^-|z|))  dz = w (sigmoid(z) - t) / P
soft Dice               D_nk = (2 sum_p q t + eps) / (sum_p q + sum_p t + eps),  L = 1 - mean_nk D_nk

Logits are (N, H, W, K): K >= 2 classes go through softmax, K = 1 through sigmoid.
Targets are integer labels (N, H, W) or one-hot / probabilities (N, H, W, K).
"""
import numpy as np

from .backend import get_array_module
from .layers import sigmoid, softmax
from .layers.layout import flat_planes, nhwc


def _one_hot(logits, target):
    """target as float one-hot (N, H, W, K) in the logits' dtype, checked against the logits;
    stored channel-major like the layers' outputs (``layers.layout``)."""
    xp = get_array_module(logits)
    if logits.ndim != 4:
        raise ValueError(f"loss: logits must be (N, H, W, K), received shape {tuple(logits.shape)}")
    k = logits.shape[-1]
    target = xp.asarray(target)
    if target.shape == logits.shape[:3]:
        labels = target.astype(np.int64, copy=False)
        if target.dtype.kind == "f" and not bool((target == labels).all()):
            raise ValueError("loss: integer labels expected for a target of shape (N, H, W); received fractional values")
        n_classes = max(k, 2)
        if labels.size and (int(labels.min()) < 0 or int(labels.max()) >= n_classes):
            raise ValueError(f"loss: labels must lie in [0, {n_classes - 1}], received "
                             f"[{int(labels.min())}, {int(labels.max())}]")
        classes = xp.arange(1, 2) if k == 1 else xp.arange(k)                 # sigmoid: the foreground
        rows = labels.transpose(1, 0, 2)[None] == classes[:, None, None, None]   # (K, H, N, W) planes
        return nhwc(rows.astype(logits.dtype))
    if target.shape == logits.shape:
        return target.astype(logits.dtype, copy=False)
    raise ValueError(f"loss: target shape {tuple(target.shape)} does not fit logits {tuple(logits.shape)}; "
                     f"give labels (N, H, W) or one-hot (N, H, W, K)")


def _pixel_weights(t, class_weights):
    """Per-pixel weight w[t] (pixels,) from per-class weights and the target's planes t
    (K, pixels), or None."""
    if class_weights is None:
        return None
    xp = get_array_module(t)
    w = xp.asarray(class_weights, dtype=t.dtype)
    if t.shape[0] == 1:  # sigmoid: (w_background, w_foreground)
        return w[0] * (1 - t[0]) + w[1] * t[0]
    return w @ t


def softmax_cross_entropy(logits, target, class_weights=None):
    """Mean pixel-wise cross-entropy of softmax(logits); `class_weights` has one weight per class.
    Computed on the class planes (K, pixels), so every reduction over classes adds whole rows."""
    xp = get_array_module(logits)
    t = flat_planes(_one_hot(logits, target))                # (K, pixels)
    z = flat_planes(logits)
    pixels = z.shape[1]
    z = z - z.max(axis=0)                                    # largest logit is 0: no overflow
    e = xp.exp(z)
    s = e.sum(axis=0)                                        # (pixels,) softmax = e / s
    w = _pixel_weights(t, class_weights)
    per_pixel = xp.log(s) - (t * z).sum(axis=0)              # -log softmax of the target class
    dz = e / s - t                                           # softmax - one-hot
    if w is not None:
        per_pixel, dz = per_pixel * w, dz * w
    return per_pixel.sum() / pixels, _as_logits(dz / pixels, logits)


def _as_logits(p, logits):
    """p, a (K, pixels) matrix of class planes, as an NHWC array shaped like the logits."""
    n, h, w, k = logits.shape
    return nhwc(p.reshape(k, h, n, w))


def sigmoid_cross_entropy(logits, target, class_weights=None):
    """Mean binary cross-entropy of sigmoid(logits) (N, H, W, 1); weights are (background, foreground)."""
    xp = get_array_module(logits)
    if logits.ndim != 4 or logits.shape[-1] != 1:
        raise ValueError(f"sigmoid_cross_entropy: logits must be (N, H, W, 1), received {tuple(logits.shape)}")
    t = flat_planes(_one_hot(logits, target))                # (1, pixels)
    z = flat_planes(logits)
    per_pixel = xp.maximum(z, 0) - z * t + xp.log1p(xp.exp(-xp.abs(z)))
    dz = sigmoid(z) - t
    w = _pixel_weights(t, class_weights)
    if w is not None:
        per_pixel, dz = per_pixel * w, dz * w
    return per_pixel.sum() / z.size, _as_logits(dz / z.size, logits)


def probabilities(logits):
    """softmax over classes for K >= 2 channels, sigmoid for one channel."""
    return sigmoid(logits) if logits.shape[-1] == 1 else softmax(logits, axis=-1)


def dice_loss(logits, target, class_weights=None, eps=1.0):
    """1 - mean soft Dice over images and foreground classes (class 1.. for softmax, the one channel
    for sigmoid). `eps` smooths the ratio so that an image with no foreground and no prediction
    scores 1. `class_weights`, if given, has one weight per foreground class."""
    xp = get_array_module(logits)
    t = _one_hot(logits, target)
    q = probabilities(logits)
    fg = slice(0, 1) if logits.shape[-1] == 1 else slice(1, None)
    qf, tf = q[..., fg], t[..., fg]
    inter = (qf * tf).sum(axis=(1, 2))                       # (N, K_fg)
    denom = qf.sum(axis=(1, 2)) + tf.sum(axis=(1, 2)) + eps  # (N, K_fg)
    dice = (2 * inter + eps) / denom
    w = xp.ones(dice.shape[1], dtype=logits.dtype) if class_weights is None else xp.asarray(class_weights, logits.dtype)
    w = w / (w.sum() * dice.shape[0])                        # mean over images, weighted over classes
    loss = 1 - (dice * w).sum()
    # dD/dq = (2 t denom - (2 inter + eps)) / denom^2, then through the activation
    denom4, num4 = denom[:, None, None, :], (2 * inter + eps)[:, None, None, :]
    dq = xp.zeros_like(q)
    dq[..., fg] = -w * (2 * tf * denom4 - num4) / denom4**2
    if logits.shape[-1] == 1:
        dz = dq * q * (1 - q)
    else:
        dz = q * (dq - (dq * q).sum(axis=-1, keepdims=True))
    return loss, dz


def cross_entropy(logits, target, class_weights=None):
    """softmax_cross_entropy for K >= 2 channels, sigmoid_cross_entropy for one."""
    ce = sigmoid_cross_entropy if logits.shape[-1] == 1 else softmax_cross_entropy
    return ce(logits, target, class_weights)


def ce_dice_loss(logits, target, class_weights=None):
    """Cross-entropy (softmax or sigmoid, by channel count) plus soft Dice."""
    l1, d1 = cross_entropy(logits, target, class_weights)
    fg_weights = None if class_weights is None or logits.shape[-1] == 1 else class_weights[1:]
    l2, d2 = dice_loss(logits, target, fg_weights)
    return l1 + l2, d1 + d2


LOSSES = {"ce": cross_entropy, "dice": dice_loss, "ce+dice": ce_dice_loss}


def get(name):
    """A loss function by its name: 'ce', 'dice' or 'ce+dice'."""
    try:
        return LOSSES[name]
    except KeyError:
        raise ValueError(f"unknown loss {name!r}; choose one of {sorted(LOSSES)}") from None
