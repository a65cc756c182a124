"""The whole U-Net as plain functions: every forward pass beside its backward pass.

This file is the network a student reads. The layers in ``minunet.layers`` compute
the same numbers faster (the tests prove them equal to these functions to 1e-10);
here nothing is traded for speed. Read it top to bottom:

    1. im2col / col2im      the windows of an image as the rows of a matrix, and back
    2. conv2d               a correlation: one matrix product over the windows
    3. conv_transpose2d     the adjoint of a strided correlation: the up-sampling
    4. max_pool2d           the largest pixel of each window; a tie goes to the first
    5. upsample2d           nearest-neighbour copies
    6. relu                 max(x, 0)
    7. softmax_cross_entropy   the loss, fused with its activation
    8. unet_forward / unet_backward   the network, built from the pieces above
    9. adam_update          one step of Adam, Keras's rule

Shapes. Images are NHWC: ``x[n, h, w, c]``, (batch, height, width, channels), as in
Keras. A Conv2D kernel is (kh, kw, C, F): C input channels, F filters. A transposed
convolution's kernel is (kh, kw, F, C), the layout Keras uses for Conv2DTranspose.
Each backward function takes dy = dL/dy, shaped like the forward's output y, and
returns dL/d of each input, shaped like that input: dx, dkernel, dbias.

Every function works on NumPy and CuPy arrays alike: it asks
``get_array_module(x)`` for the array module ``xp`` and calls ``xp.pad``,
``xp.zeros``... No Python loop runs over pixels or over the batch: inside a layer, the
only loops run over the kh*kw offsets of a kernel window.

A training step, as ``examples/textbook_train.py`` runs it, on a copy of a real model's weights::

    params = {name: p.copy() for name, p in minunet.UNet(depth=4, base_filters=8).params.items()}
    logits, cache = unet_forward(params, x, depth=4)
    loss, dlogits = softmax_cross_entropy(logits, labels)
    grads = unet_backward(params, cache, dlogits)
    state = adam_update(params, grads, state, lr=3e-3)     # state = {} at the first step
"""
from .backend import get_array_module


# --------------------------------------------------------------- 1. im2col, col2im
# A window of x is the kh x kw x C block that one output pixel reads. im2col lays every
# window out as one row of a matrix, in the kernel's own order (i, j, c), so that a
# correlation with any kernel becomes ONE matrix product:
#     cols[n, ho, wo, (i, j, c)] = x[n, s*ho + i, s*wo + j, c]
#     y = cols @ kernel.reshape(kh*kw*C, F)
# col2im is its adjoint (its transpose, as a linear map): every row is added back onto
# the pixels its window came from. Where windows overlap, a pixel receives several sums.
# (The names are Caffe's, whose windows were the columns of the matrix; NHWC, they are rows.)

def im2col(x, kh, kw, stride=1):
    """The windows of x (N, H, W, C) as rows: (N, Ho, Wo, kh*kw*C), with Ho = (H - kh) // stride + 1
    (no padding: pad x first for 'same'). One strided-slice copy per kernel offset (i, j)."""
    xp = get_array_module(x)
    n, h, w, c = x.shape
    ho, wo = (h - kh) // stride + 1, (w - kw) // stride + 1
    cols = xp.empty((n, ho, wo, kh, kw, c), dtype=x.dtype)
    for i in range(kh):
        for j in range(kw):
            # offset (i, j) of every window: rows i, i + s, ..., i + s*(Ho - 1), the same for columns
            cols[:, :, :, i, j, :] = x[:, i : i + stride * ho : stride, j : j + stride * wo : stride, :]
    return cols.reshape(n, ho, wo, kh * kw * c)                     # (N, Ho, Wo, kh*kw*C)


def col2im(cols, x_shape, kh, kw, stride=1):
    """The adjoint of ``im2col``: rows (N, Ho, Wo, kh*kw*C) summed back into an array of x_shape
    (N, H, W, C), each value onto the pixel its window took it from."""
    xp = get_array_module(cols)
    n, ho, wo, _ = cols.shape
    c = x_shape[3]
    cols = cols.reshape(n, ho, wo, kh, kw, c)                       # (N, Ho, Wo, kh, kw, C)
    x = xp.zeros(x_shape, dtype=cols.dtype)
    for i in range(kh):
        for j in range(kw):
            x[:, i : i + stride * ho : stride, j : j + stride * wo : stride, :] += cols[:, :, :, i, j, :]
    return x


# ------------------------------------------------------------------------- 2. conv2d
# Conv2D, stride 1, is a cross-correlation (as in Keras and PyTorch: the kernel is not flipped):
#     y[n, h, w, f] = b[f] + sum_{i, j, c} xpad[n, h + i, w + j, c] kernel[i, j, c, f]
# With X = im2col(xpad) (N*Ho*Wo, kh*kw*C) and K = kernel (kh*kw*C, F):   Y = X @ K + b.
# Backward, from dY = dL/dy (N*Ho*Wo, F), one operation per argument:
#     dK = X^T @ dY          dK[i, j, c, f] = sum over pixels of xpad[n, h + i, w + j, c] dy[n, h, w, f]
#     db = sum of dY over the pixels
#     dx = dy, padded, correlated with the kernel flipped in space, C and F swapped.
# Why flipped: x[h, w] reached y[h - i, w - j] through kernel[i, j], so dx[h, w] gathers
# dy[h - i, w - j] kernel[i, j]^T, a correlation with kernel[kh-1-i, kw-1-j]^T. The input
# gradient of a correlation is a full correlation with the flipped kernel. (It equals
# col2im(dY @ K^T), the transposed convolution of section 3 with stride 1, cropped by the
# padding: col2im gives the gradient of the padded x.)

def conv_pads(kh, kw, padding):
    """((top, bottom), (left, right)) zero padding. 'valid': none. 'same', Keras's rule: kh - 1
    rows in all, so that H is kept; for an even kernel the extra row goes at the bottom (and
    the extra column at the right)."""
    if padding == "valid":
        return (0, 0), (0, 0)
    if padding == "same":
        return ((kh - 1) // 2, kh // 2), ((kw - 1) // 2, kw // 2)
    raise ValueError(f"conv2d padding must be 'same' or 'valid', received {padding!r}")


def pad(x, rows, columns):
    """x (N, H, W, C) with zeros around: rows = (top, bottom), columns = (left, right)."""
    xp = get_array_module(x)
    return xp.pad(x, ((0, 0), rows, columns, (0, 0)))


def correlate(x, kernel):
    """The 'valid' correlation of x (N, H, W, C) with kernel (kh, kw, C, F): (N, H-kh+1, W-kw+1, F).
    im2col, then one matrix product."""
    kh, kw, c, f = kernel.shape
    cols = im2col(x, kh, kw)                                        # (N, Ho, Wo, kh*kw*C)
    y = cols.reshape(-1, kh * kw * c) @ kernel.reshape(kh * kw * c, f)   # (N*Ho*Wo, F)
    return y.reshape(cols.shape[:3] + (f,))                         # (N, Ho, Wo, F)


def conv2d(x, kernel, bias, padding="same"):
    """y = x correlated with kernel (kh, kw, C, F), plus bias (F,) (None: no bias), stride 1.
    'same' keeps H and W; 'valid' gives H - kh + 1, W - kw + 1."""
    kh, kw = kernel.shape[:2]
    y = correlate(pad(x, *conv_pads(kh, kw, padding)), kernel)      # (N, Ho, Wo, F)
    return y if bias is None else y + bias


def conv2d_backward(dy, x, kernel, padding="same"):
    """(dx, dkernel, dbias) from dy (N, Ho, Wo, F), the forward's input x and kernel.
    dbias is always returned: it is the same whether or not the layer has a bias (ignore it
    when the forward had bias=None)."""
    kh, kw, c, f = kernel.shape
    rows, columns = conv_pads(kh, kw, padding)
    dY = dy.reshape(-1, f)                                          # (N*Ho*Wo, F), a row per pixel
    cols = im2col(pad(x, rows, columns), kh, kw)                    # (N, Ho, Wo, kh*kw*C), recomputed
    cols = cols.reshape(-1, kh * kw * c)                            # X: (N*Ho*Wo, kh*kw*C)
    dkernel = (cols.T @ dY).reshape(kh, kw, c, f)                   # dK = X^T dY
    dbias = dY.sum(axis=0)                                          # (F,)
    # dx: pad dy by kh - 1 - top on top and kh - 1 - bottom at the bottom (so too for
    # columns): the 'full' correlation, which makes dx exactly x's size.
    flipped = kernel[::-1, ::-1].transpose(0, 1, 3, 2)              # (kh, kw, F, C), flipped in space
    dy_padded = pad(dy, (kh - 1 - rows[0], kh - 1 - rows[1]), (kw - 1 - columns[0], kw - 1 - columns[1]))
    dx = correlate(dy_padded, flipped)                              # (N, H, W, C)
    return dx, dkernel, dbias


# -------------------------------------------------------------- 3. conv_transpose2d
# The transposed convolution is the adjoint of a stride-s correlation: every input pixel
# stamps a kh x kw patch, weighted by the kernel, onto the output, s pixels from its
# neighbour's ('valid': Ho = (H - 1)*s + kh, Keras's default for kh >= s; the U-Net's 2x2, stride 2 doubles H):
#     y[n, s*h + i, s*w + j, f] += sum_c x[n, h, w, c] kernel[i, j, f, c]      (+ b[f])
# With X = x (N*H*W, C) and K = kernel (kh*kw*F, C), the patches are P = X @ K^T
# (N*H*W, kh*kw*F), one row per input pixel, and Y = col2im(P) + b.
# Backward: the forward read x through K^T and wrote through col2im; the backward reads dy
# through im2col (col2im's adjoint) and multiplies by K:
#     dP = im2col(dy, stride s)     (N*H*W, kh*kw*F): dy on the patch each input pixel stamped
#     dx = dP @ K                   a stride-s correlation of dy with the same kernel
#     dK = dP^T @ X                 db = sum of dy over the pixels
# So the transposed convolution's backward pass is an ordinary strided convolution, and
# conv2d's input gradient (section 2) is a transposed convolution.

def conv_transpose2d(x, kernel, bias, stride=2):
    """y (N, (H-1)*stride + kh, (W-1)*stride + kw, F) from x (N, H, W, C), kernel (kh, kw, F, C)
    and bias (F,) (None: no bias)."""
    n, h, w, c = x.shape
    kh, kw, f, _ = kernel.shape
    patches = x.reshape(-1, c) @ kernel.reshape(kh * kw * f, c).T   # (N*H*W, kh*kw*F): X K^T
    patches = patches.reshape(n, h, w, kh * kw * f)                 # one row per input pixel
    y = col2im(patches, (n, (h - 1) * stride + kh, (w - 1) * stride + kw, f), kh, kw, stride)
    return y if bias is None else y + bias


def conv_transpose2d_backward(dy, x, kernel, stride=2):
    """(dx, dkernel, dbias) from dy (N, Ho, Wo, F), the forward's input x and kernel (kh, kw, F, C)."""
    kh, kw, f, c = kernel.shape
    dpatches = im2col(dy, kh, kw, stride)                           # (N, H, W, kh*kw*F)
    dpatches = dpatches.reshape(-1, kh * kw * f)                    # dP: (N*H*W, kh*kw*F)
    dx = (dpatches @ kernel.reshape(kh * kw * f, c)).reshape(x.shape)   # (N, H, W, C): dP K
    dkernel = (dpatches.T @ x.reshape(-1, c)).reshape(kh, kw, f, c)  # dP^T X
    dbias = dy.reshape(-1, f).sum(axis=0)                           # (F,)
    return dx, dkernel, dbias


# -------------------------------------------------------------------- 4. max_pool2d
# Max pooling, window p = size, stride p, Keras's floor rule: Ho = (H - p) // p + 1; the last
# H - Ho*p rows (and columns) belong to no window.
#     y[n, h, w, c] = max_{i, j < p} x[n, p*h + i, p*w + j, c]
# The max is the identity on its arg-max and ignores the rest, so dy goes to one pixel of
# the window: dx[n, p*h + i*, p*w + j*, c] = dy[n, h, w, c], zero elsewhere. A tie (equal
# maxima, common in MRI backgrounds full of zeros) sends the whole of dy to the FIRST
# arg-max in row-major window order, top-left first, never split among the equal pixels
# (a split would leak gradient into every zero of the background).

def pool_windows(x, size):
    """The p x p windows of x (N, H, W, C): (N, Ho, Wo, C, p*p), each window's pixels row-major."""
    n, h, w, c = x.shape
    ho, wo = (h - size) // size + 1, (w - size) // size + 1
    x = x[:, : ho * size, : wo * size]                              # drop what no window covers
    x = x.reshape(n, ho, size, wo, size, c)                         # (N, Ho, i, Wo, j, C)
    return x.transpose(0, 1, 3, 5, 2, 4).reshape(n, ho, wo, c, size * size)   # (N, Ho, Wo, C, (i, j))


def max_pool2d(x, size=2):
    """y (N, Ho, Wo, C), Ho = (H - size) // size + 1: the maximum of each size x size window."""
    return pool_windows(x, size).max(axis=-1)


def max_pool2d_backward(dy, x, size=2):
    """dx (N, H, W, C): each window's dy at its first arg-max, zero everywhere else."""
    xp = get_array_module(dy)
    n, ho, wo, c = dy.shape
    first = pool_windows(x, size).argmax(axis=-1)                   # (N, Ho, Wo, C): argmax gives the first max
    winner = xp.arange(size * size) == first[..., None]             # (N, Ho, Wo, C, p*p): one True a window
    dwindows = winner * dy[..., None]                               # (N, Ho, Wo, C, p*p): dy at the winner
    dwindows = dwindows.reshape(n, ho, wo, c, size, size)           # (N, Ho, Wo, C, i, j)
    dwindows = dwindows.transpose(0, 1, 4, 2, 5, 3).reshape(n, ho * size, wo * size, c)   # pool_windows undone
    dx = xp.zeros(x.shape, dtype=dy.dtype)                          # rows no window covers: zero
    dx[:, : ho * size, : wo * size] = dwindows
    return dx


# -------------------------------------------------------------------- 5. upsample2d
# Nearest-neighbour up-sampling by s:   y[n, h, w, c] = x[n, h // s, w // s, c]
# Each x pixel is copied to an s x s block, so dx sums dy over that block.

def upsample2d(x, size=2):
    """y (N, H*size, W*size, C): every pixel repeated size times down and across."""
    return x.repeat(size, axis=1).repeat(size, axis=2)


def upsample2d_backward(dy, size=2):
    """dx (N, H, W, C): dy summed over each size x size block."""
    n, ho, wo, c = dy.shape
    blocks = dy.reshape(n, ho // size, size, wo // size, size, c)   # (N, H, i, W, j, C)
    return blocks.sum(axis=(2, 4))


# -------------------------------------------------------------------------- 6. relu
# y = max(x, 0);  dy/dx = 1 where x > 0, else 0. The mask is read from the output
# (y > 0 exactly where x > 0), which the next layer keeps as its input anyway.

def relu(x):
    xp = get_array_module(x)
    return xp.maximum(x, 0)


def relu_backward(dy, y):
    """dx = dy where the forward's output y is positive, else 0."""
    return dy * (y > 0)


# ----------------------------------------------------------- 7. softmax, cross-entropy
# Over the K classes of each pixel p, with z = logits and t the one-hot target:
#     q = softmax(z) = e^z / sum_k e^z_k          (z - max z first: e^z never overflows)
#     L = -1/P sum_p sum_k t_pk log q_pk          mean over the P = N*H*W pixels
#     dL/dz = (q - t) / P
# The gradient is this short because log q = z - log sum e^z: the softmax's Jacobian and
# the log's 1/q cancel. That is why the activation is fused into the loss.

def softmax(logits):
    """Probabilities over the last axis (classes); rows sum to 1."""
    xp = get_array_module(logits)
    e = xp.exp(logits - logits.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def softmax_cross_entropy(logits, labels):
    """(loss, dlogits) for logits (N, H, W, K) and labels: integers (N, H, W) in [0, K), or
    one-hot (N, H, W, K). The loss is the mean over pixels, a 0-d array."""
    xp = get_array_module(logits)
    n_classes = logits.shape[-1]
    labels = xp.asarray(labels)
    if labels.shape == logits.shape[:-1]:
        target = (labels[..., None] == xp.arange(n_classes)).astype(logits.dtype)   # one-hot (N, H, W, K)
    elif labels.shape == logits.shape:
        target = labels.astype(logits.dtype)
    else:
        raise ValueError(f"softmax_cross_entropy: labels of shape {tuple(labels.shape)} do not fit logits "
                         f"{tuple(logits.shape)}; give integers (N, H, W) or one-hot (N, H, W, K)")
    pixels = logits.size // n_classes
    z = logits - logits.max(axis=-1, keepdims=True)
    log_q = z - xp.log(xp.exp(z).sum(axis=-1, keepdims=True))      # log softmax, (N, H, W, K)
    loss = -(target * log_q).sum() / pixels
    dlogits = (xp.exp(log_q) - target) / pixels                     # (q - t) / P
    return loss, dlogits


# ---------------------------------------------------------------------- 8. the U-Net
#   x - enc1 --------------------------------- dec1 - head - logits
#         \ pool - enc2 ------------- dec2 -/ up
#                   \ pool - ... bridge -/ up
# Each level of the encoder (enc1 .. enc<depth>): two 3x3 'same' conv2d + relu, then a 2x2 max-pool.
# The bridge: two conv2d + relu. Each level of the decoder (dec<depth> down to dec1): up-sample
# (conv_transpose2d 2x2 stride 2, or upsample2d, which has no weights), concatenate
# [up-sampled, skip] along channels, two conv2d + relu. The head: a 1x1 conv2d, no activation.
# Backward runs the same list in reverse. Two places join paths: the concatenation, whose
# gradient splits back along channels, and each skip, used twice (by the pool and by the
# decoder), whose gradient is the sum of the two.

def conv_relu(params, name, x, cache):
    """relu(conv2d(x)) with the weights params[name + '/kernel'], params[name + '/bias'];
    remembers (x, y) in cache[name] for the backward pass."""
    y = relu(conv2d(x, params[f"{name}/kernel"], params[f"{name}/bias"]))
    cache[name] = (x, y)
    return y


def conv_relu_backward(params, name, dy, cache, grads):
    """dx of ``conv_relu``; fills grads[name + '/kernel'] and grads[name + '/bias']."""
    x, y = cache[name]
    dx, grads[f"{name}/kernel"], grads[f"{name}/bias"] = conv2d_backward(relu_backward(dy, y), x,
                                                                         params[f"{name}/kernel"])
    return dx


def unet_forward(params, x, depth, upsampling="transpose"):
    """(logits (N, H, W, K), cache) for images x (N, H, W, C), H and W multiples of 2**depth.
    ``params`` is keyed as ``UNet.params`` ('enc1/conv1/kernel', ..., 'head/bias'); ``upsampling``
    is 'transpose' or 'nearest', as the UNet that made the params. The cache holds, for every
    layer, what its backward needs: its input (and its output, for the ReLU's mask)."""
    if x.ndim != 4 or x.shape[1] % 2**depth or x.shape[2] % 2**depth:
        raise ValueError(f"unet_forward: x must be (N, H, W, C) with H and W multiples of 2**{depth}, "
                         f"received shape {tuple(x.shape)}")
    xp = get_array_module(x)
    cache = {"depth": depth, "upsampling": upsampling}
    skips = []
    for level in range(1, depth + 1):                               # encoder, shallowest level first
        x = conv_relu(params, f"enc{level}/conv1", x, cache)
        x = conv_relu(params, f"enc{level}/conv2", x, cache)
        skips.append(x)                                             # (N, H/2^(level-1), W/2^(level-1), F)
        x = max_pool2d(x)                                           # its input, the skip, is in the cache
    x = conv_relu(params, "bridge/conv1", x, cache)
    x = conv_relu(params, "bridge/conv2", x, cache)
    for level in range(depth, 0, -1):                               # decoder, deepest level first
        if upsampling == "transpose":
            cache[f"dec{level}/up"] = x
            x = conv_transpose2d(x, params[f"dec{level}/up/kernel"], params[f"dec{level}/up/bias"])
        else:
            x = upsample2d(x)
        x = xp.concatenate([x, skips[level - 1]], axis=-1)          # [up-sampled, skip]
        x = conv_relu(params, f"dec{level}/conv1", x, cache)
        x = conv_relu(params, f"dec{level}/conv2", x, cache)
    cache["head"] = x
    return conv2d(x, params["head/kernel"], params["head/bias"]), cache


def unet_backward(params, cache, dlogits):
    """grads, keyed and ordered as params, from dlogits = dL/dlogits and the forward's cache.
    (The input gradient dL/dx is enc1/conv1's dx, dropped here: training has no use for it.)"""
    depth = cache["depth"]
    grads = dict.fromkeys(params)                                   # the keys, in params' order
    dx, grads["head/kernel"], grads["head/bias"] = conv2d_backward(dlogits, cache["head"], params["head/kernel"])
    dskips = {}
    for level in range(1, depth + 1):                               # decoder, back from dec1
        dx = conv_relu_backward(params, f"dec{level}/conv2", dx, cache, grads)
        dx = conv_relu_backward(params, f"dec{level}/conv1", dx, cache, grads)
        skip_channels = cache[f"enc{level}/conv2"][1].shape[-1]
        dup, dskips[level] = dx[..., :-skip_channels], dx[..., -skip_channels:]   # dL/d[up-sampled, skip], split
        if cache["upsampling"] == "transpose":
            dx, grads[f"dec{level}/up/kernel"], grads[f"dec{level}/up/bias"] = conv_transpose2d_backward(
                dup, cache[f"dec{level}/up"], params[f"dec{level}/up/kernel"])
        else:
            dx = upsample2d_backward(dup)
    dx = conv_relu_backward(params, "bridge/conv2", dx, cache, grads)
    dx = conv_relu_backward(params, "bridge/conv1", dx, cache, grads)
    for level in range(depth, 0, -1):                               # encoder, back from the deepest level
        skip = cache[f"enc{level}/conv2"][1]                        # the pool's input
        dx = max_pool2d_backward(dx, skip) + dskips[level]          # the skip's two gradients add
        dx = conv_relu_backward(params, f"enc{level}/conv2", dx, cache, grads)
        dx = conv_relu_backward(params, f"enc{level}/conv1", dx, cache, grads)
    return grads


# ------------------------------------------------------------------------- 9. Adam
# Adam (Kingma & Ba) in Keras's form: the bias corrections of both moments are folded into
# the step size, and epsilon is added outside the square root. At step t = 1, 2, ...:
#     m <- b1 m + (1 - b1) g          v <- b2 v + (1 - b2) g^2
#     alpha = lr sqrt(1 - b2^t) / (1 - b1^t)
#     p <- p - alpha m / (sqrt(v) + eps)

def adam_update(params, grads, state, lr=1e-3, beta_1=0.9, beta_2=0.999, epsilon=1e-7):
    """One Adam step: updates every params[name] in place from grads[name]; ``state`` (pass {} at the
    first step) holds the step count t and the moments m and v. Returns state."""
    if not state:
        state.update(t=0, m={name: get_array_module(p).zeros_like(p) for name, p in params.items()},
                     v={name: get_array_module(p).zeros_like(p) for name, p in params.items()})
    state["t"] += 1
    t = state["t"]
    alpha = lr * (1 - beta_2**t) ** 0.5 / (1 - beta_1**t)
    for name, p in params.items():
        xp = get_array_module(p)
        g, m, v = grads[name], state["m"][name], state["v"][name]
        m[...] = beta_1 * m + (1 - beta_1) * g
        v[...] = beta_2 * v + (1 - beta_2) * g**2
        p -= alpha * m / (xp.sqrt(v) + epsilon)
    return state
