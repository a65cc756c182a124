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


# ------------------------------------------------------------------ backward passes
# dL/d(inputs) by the chain rule applied one output pixel at a time: each output value
# y[b, i, j, :] was made from a few inputs, and hands its gradient dy[b, i, j, :] back to them.

def conv2d_backward(dy, x, kernel, padding):
    """(dx, dkernel, dbias) of ``conv2d``: every output pixel's dy flows back through its window."""
    n, h, w, c = x.shape
    kh, kw, _, f = kernel.shape
    pt, pl = ((kh - 1) // 2, (kw - 1) // 2) if padding == "same" else (0, 0)
    hp, wp = (h + kh - 1, w + kw - 1) if padding == "same" else (h, w)
    xpad = np.zeros((n, hp, wp, c))
    xpad[:, pt : pt + h, pl : pl + w] = x
    dxpad = np.zeros_like(xpad)
    dkernel = np.zeros(kernel.shape)
    dbias = np.zeros(f)
    for b in range(n):
        for i in range(dy.shape[1]):
            for j in range(dy.shape[2]):
                g = dy[b, i, j]                                              # (F,)
                dxpad[b, i : i + kh, j : j + kw, :] += kernel @ g            # sum_f K[p, q, c, f] g[f]
                dkernel += xpad[b, i : i + kh, j : j + kw, :, None] * g      # patch[p, q, c] g[f]
                dbias += g
    return dxpad[:, pt : pt + h, pl : pl + w], dkernel, dbias


def conv_transpose2d_backward(dy, x, kernel, stride):
    """(dx, dkernel, dbias) of ``conv_transpose2d``: every input pixel stamped a patch, so it
    collects the gradient of that patch."""
    n, h, w, c = x.shape
    kh, kw, f, _ = kernel.shape
    dx = np.zeros(x.shape)
    dkernel = np.zeros(kernel.shape)
    for b in range(n):
        for i in range(h):
            for j in range(w):
                for p in range(kh):
                    for q in range(kw):
                        g = dy[b, i * stride + p, j * stride + q, :]           # (F,)
                        dx[b, i, j] += kernel[p, q].T @ g
                        dkernel[p, q] += np.outer(g, x[b, i, j])
    return dx, dkernel, dy.sum(axis=(0, 1, 2))


def max_pool2d_backward(dy, x, pool, stride):
    """dx of ``max_pool2d``: each window's dy to its first arg-max, scanning row by row."""
    n, h, w, c = x.shape
    dx = np.zeros(x.shape)
    for b in range(n):
        for i in range(dy.shape[1]):
            for j in range(dy.shape[2]):
                for k in range(c):
                    best = None
                    for p in range(pool):
                        for q in range(pool):
                            v = x[b, i * stride + p, j * stride + q, k]
                            if best is None or v > best:                     # strictly greater: ties keep the first
                                best, at = v, (i * stride + p, j * stride + q)
                    dx[b, at[0], at[1], k] += dy[b, i, j, k]
    return dx


def upsampling2d_backward(dy, size):
    """dx of ``upsampling2d``: every output pixel hands its dy back to the pixel it copied."""
    n, ho, wo, c = dy.shape
    dx = np.zeros((n, ho // size, wo // size, c))
    for i in range(ho):
        for j in range(wo):
            dx[:, i // size, j // size, :] += dy[:, i, j, :]
    return dx
