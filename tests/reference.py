"""Slow, obvious loop versions of the layers: the references the fast layers must equal."""
import numpy as np


def conv2d(x, kernel, bias, padding):
    n, h, w, c = x.shape
    kh, kw, _, f = kernel.shape
    if padding == "same":
        pt, pl = (kh - 1) // 2, (kw - 1) // 2
        xpad = np.zeros((n, h + kh - 1, w + kw - 1, c))
        xpad[:, pt : pt + h, pl : pl + w] = x
        ho, wo = h, w
    else:
        xpad, ho, wo = x, h - kh + 1, w - kw + 1
    y = np.zeros((n, ho, wo, f))
    for b in range(n):
        for i in range(ho):
            for j in range(wo):
                patch = xpad[b, i : i + kh, j : j + kw, :]
                for o in range(f):
                    y[b, i, j, o] = np.sum(patch * kernel[:, :, :, o]) + bias[o]
    return y


def conv_transpose2d(x, kernel, bias, stride):
    """kernel (kh, kw, F, C): every input pixel stamps kernel . x into the output."""
    n, h, w, c = x.shape
    kh, kw, f, _ = kernel.shape
    y = np.zeros((n, (h - 1) * stride + kh, (w - 1) * stride + kw, f))
    for b in range(n):
        for i in range(h):
            for j in range(w):
                for p in range(kh):
                    for q in range(kw):
                        y[b, i * stride + p, j * stride + q, :] += kernel[p, q] @ x[b, i, j]
    return y + bias


def max_pool2d(x, pool, stride):
    n, h, w, c = x.shape
    ho, wo = (h - pool) // stride + 1, (w - pool) // stride + 1
    y = np.zeros((n, ho, wo, c))
    for b in range(n):
        for i in range(ho):
            for j in range(wo):
                for k in range(c):
                    y[b, i, j, k] = x[b, i * stride : i * stride + pool, j * stride : j * stride + pool, k].max()
    return y


def upsampling2d(x, size):
    n, h, w, c = x.shape
    y = np.zeros((n, h * size, w * size, c))
    for i in range(h * size):
        for j in range(w * size):
            y[:, i, j, :] = x[:, i // size, j // size, :]
    return y
