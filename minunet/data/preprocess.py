"""Intensity normalization and resizing shared by every data source.

Every image that minunet trains on or predicts on, phantom or real, passes
through ``normalize``: clip to the 0.5th..99.5th percentile of that image (MRI
intensities have no absolute scale and a few hot pixels), then z-score.
"""
import numpy as np


def normalize(images, low=0.5, high=99.5):
    """Per-image percentile clip then z-score; (N, H, W[, C]) -> float32, mean 0, std 1."""
    x = np.asarray(images, dtype=np.float32)
    flat = x.reshape(len(x), -1)
    lo, hi = np.percentile(flat, [low, high], axis=1)                   # (N,), (N,)
    flat = np.clip(flat, lo[:, None], hi[:, None])
    std = flat.std(axis=1, keepdims=True)
    flat = (flat - flat.mean(axis=1, keepdims=True)) / np.where(std > 0, std, 1)
    return flat.reshape(x.shape).astype(np.float32)


def resize(images, size, order=1):
    """Resize a stack (N, H, W) to (N, size, size), or to (N, *size) for a (height, width)
    pair: bilinear (order=1) for images, nearest (order=0) for label masks. Pixel centres
    are aligned, as in align_corners=False."""
    x = np.asarray(images)
    n, h, w = x.shape[:3]
    out_h, out_w = (size, size) if np.ndim(size) == 0 else size
    if (h, w) == (out_h, out_w):
        return x
    ys = (np.arange(out_h) + 0.5) * h / out_h - 0.5
    xs = (np.arange(out_w) + 0.5) * w / out_w - 0.5
    if order == 0:
        yi = np.clip(np.round(ys).astype(int), 0, h - 1)
        xi = np.clip(np.round(xs).astype(int), 0, w - 1)
        return x[:, yi][:, :, xi]
    ys, xs = np.clip(ys, 0, h - 1), np.clip(xs, 0, w - 1)
    y0, x0 = np.floor(ys).astype(int), np.floor(xs).astype(int)
    y1, x1 = np.minimum(y0 + 1, h - 1), np.minimum(x0 + 1, w - 1)
    fy, fx = (ys - y0)[:, None], (xs - x0)[None, :]
    x = x.astype(np.float32)
    top = x[:, y0][:, :, x0] * (1 - fx) + x[:, y0][:, :, x1] * fx
    bottom = x[:, y1][:, :, x0] * (1 - fx) + x[:, y1][:, :, x1] * fx
    return (top * (1 - fy) + bottom * fy).astype(np.float32)
