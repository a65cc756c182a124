"""Splits and shuffled mini-batches, each augmented (augment.py) with a generator seeded by (seed, epoch)."""
import numpy as np


def split(n, val=0.1, test=0.1, seed=0):
    """Shuffled index arrays (train, val, test) for n slices."""
    if not 0 <= val < 1 or not 0 <= test < 1 or val + test >= 1:
        raise ValueError(f"split fractions must be in [0, 1) and sum below 1, received val={val}, test={test}")
    order = np.random.default_rng(seed).permutation(n)
    n_val, n_test = int(round(n * val)), int(round(n * test))
    return order[n_val + n_test :], order[:n_val], order[n_val : n_val + n_test]


def folds(n, k, seed=0):
    """K-fold cross-validation: k (train, test) index-array pairs; the n slices are
    shuffled once and dealt into k folds whose sizes differ by at most one."""
    if not 2 <= k <= n:
        raise ValueError(f"cross-validation needs 2 <= k <= {n} (the number of slices), received k={k}")
    order = np.random.default_rng(seed).permutation(n)
    parts = np.array_split(order, k)
    return [(np.concatenate(parts[:i] + parts[i + 1 :]), part) for i, part in enumerate(parts)]


def batches(images, masks, batch_size=8, shuffle=True, seed=0, epoch=0, augment=None):
    """Yield (x, y) mini-batches; the last, partial batch is kept. The order (and the
    augmentation) depends only on (seed, epoch), so a resumed run sees the same batches."""
    if len(images) != len(masks):
        raise ValueError(f"batches: {len(images)} images but {len(masks)} masks")
    rng = np.random.default_rng([seed, epoch])
    order = rng.permutation(len(images)) if shuffle else np.arange(len(images))
    for start in range(0, len(order), batch_size):
        idx = order[start : start + batch_size]
        x, y = images[idx], masks[idx]
        if augment is not None:
            x, y = augment(x, y, rng)
        yield x, y
