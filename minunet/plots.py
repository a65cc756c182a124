"""Pictures with matplotlib (Agg, files only): the U-Net's architecture, training
curves, image / ground truth / prediction overlays, feature maps per level, the
per-layer gradient norms of one step, and a grid of phantom samples."""
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.patches import FancyArrowPatch, Rectangle  # noqa: E402

from .backend import asarray, to_numpy  # noqa: E402
from .h5file import replace_atomic  # noqa: E402

DISC_COLOR = (1.0, 0.25, 0.1)


def _save(fig, path, tight=True):
    """Write the figure through a temporary file (see h5file.replace_atomic) and close it."""
    try:
        replace_atomic(path, lambda tmp: fig.savefig(tmp, dpi=fig.dpi, bbox_inches="tight" if tight else None))
    finally:
        plt.close(fig)
    return path


def _overlay(ax, image, mask, color=DISC_COLOR, alpha=0.45, title=None):
    ax.imshow(image, cmap="gray", interpolation="nearest")
    if mask is not None:
        rgba = np.zeros(mask.shape + (4,))
        rgba[..., :3] = color
        rgba[..., 3] = alpha * (mask > 0)
        ax.imshow(rgba, interpolation="nearest")
    ax.set_axis_off()
    if title:
        ax.set_title(title, fontsize=8)


def architecture(model, input_size, path):
    """The U shape of the configured network: each level with its spatial size and
    filters; max-pooling down, up-sampling up, skip connections across."""
    depth, base = model.depth, model.config["base_filters"]
    up = "ConvT 2x2/2" if model.config["upsampling"] == "transpose" else "up 2x (nearest)"
    w, h, dy = 1.7, 0.75, 1.25                     # box size; vertical step between levels
    fig, ax = plt.subplots(figsize=(1.45 * (2 * depth + 5), 1.1 * (depth + 2)), dpi=100)
    ax.set_axis_off()

    def box(x, y, text, color):
        ax.add_patch(Rectangle((x - w / 2, y - h / 2), w, h, facecolor=color, edgecolor="black", lw=0.8))
        ax.text(x, y, text, ha="center", va="center", fontsize=7.5)

    def arrow(a, b, color, label=None, ls="-"):
        ax.add_patch(FancyArrowPatch(a, b, arrowstyle="-|>", color=color, lw=1.2, ls=ls, mutation_scale=10))
        if label:
            ax.text((a[0] + b[0]) / 2, (a[1] + b[1]) / 2 + 0.08, label, ha="center", va="bottom", fontsize=6.5, color=color)

    for k in range(depth):
        size, filters, y = input_size // 2**k, base * 2**k, -dy * k
        xe, xd = 1.2 * k, 1.2 * (2 * depth - k)
        box(xe, y, f"enc{k + 1}\n2x conv3x3+ReLU\n{size}x{size}x{filters}", "#cfe2f3")
        box(xd, y, f"dec{k + 1}\nconcat, 2x conv3x3\n{size}x{size}x{filters}", "#d9ead3")
        arrow((xe + w / 2, y), (xd - w / 2, y), "gray", "skip connection (concatenate)" if k == 0 else None, ls="--")
        arrow((xe, y - h / 2), (xe + 1.2, y - dy + h / 2), "#c0392b")
        ax.text(xe + 0.45, y - dy / 2, "maxpool\n2x2", fontsize=6.5, color="#c0392b", ha="right", va="center")
        arrow((xd - 1.2, y - dy + h / 2), (xd, y - h / 2), "#27ae60")
        ax.text(xd - 0.45, y - dy / 2, up, fontsize=6.5, color="#27ae60", ha="left", va="center")
    size = input_size // 2**depth
    box(1.2 * depth, -dy * depth, f"bridge\n2x conv3x3+ReLU\n{size}x{size}x{base * 2 ** depth}", "#fce5cd")
    n_out, x_end = model.head.filters, 1.2 * 2 * depth
    box(x_end + 2.2, 0, f"head\nconv1x1, {model.head_activation}\n{input_size}x{input_size}x{n_out}", "#ead1dc")
    arrow((x_end + w / 2, 0), (x_end + 2.2 - w / 2, 0), "black")
    box(-2.2, 0, f"input\n{input_size}x{input_size}x{model.config['in_channels']}", "white")
    arrow((-2.2 + w / 2, 0), (-w / 2, 0), "black")
    ax.set_xlim(-2.2 - w, x_end + 2.2 + w)
    ax.set_ylim(-dy * depth - h, h + 0.3)
    ax.set_title(f"U-Net: depth {depth}, base {base} filters, {model.n_params:,} parameters", fontsize=10)
    return _save(fig, path)


def curves(history, path):
    """Training and validation loss, and validation Dice, per epoch."""
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.2), dpi=100)
    epochs = np.arange(1, len(history["loss"]) + 1)
    axes[0].plot(epochs, history["loss"], label="train")
    if history.get("val_loss"):
        axes[0].plot(epochs, history["val_loss"], label="validation")
    axes[0].set(xlabel="epoch", ylabel="loss", title="loss")
    axes[0].legend()
    if history.get("val_dice"):
        axes[1].plot(epochs, history["val_dice"], color="tab:green")
        axes[1].set(xlabel="epoch", ylabel="Dice", title="validation Dice (disc)", ylim=(0, 1))
    for ax in axes:
        ax.grid(alpha=0.3)
    return _save(fig, path)


def overlays(images, masks, preds, path, n=6, min_panel=192):
    """Rows: the image, ground truth on it, the prediction on it (red = disc). Each panel
    shows its image at its own size in pixels or larger (at least ``min_panel`` pixels
    across), never shrunk."""
    n = min(n, len(images))
    rows = 3 if masks is not None else 2
    h, w = images.shape[1:3]
    scale = max(1, int(np.ceil(min_panel / max(h, w))))      # whole pixels per image pixel
    dpi, title, gap = 100, 22, 6                                # title strip and gap between panels, in pixels
    ph, pw = h * scale, w * scale
    width, height = n * pw + (n + 1) * gap, rows * (ph + title) + gap
    fig = plt.figure(figsize=(width / dpi, height / dpi), dpi=dpi)
    titles = ["image"] + (["ground truth"] if masks is not None else []) + ["prediction"]
    for r in range(rows):
        for i in range(n):
            left, bottom = gap + i * (pw + gap), height - (r + 1) * (ph + title)
            ax = fig.add_axes((left / width, bottom / height, pw / width, ph / height))
            image = images[i, ..., 0]
            mask = None if r == 0 else (masks[i] if masks is not None and r == 1 else preds[i])
            color = (0.1, 0.8, 0.2) if masks is not None and r == 1 else DISC_COLOR
            _overlay(ax, image, mask, color=color, title=titles[r] if i == 0 else None)
    return _save(fig, path, tight=False)


def overlay_pages(images, masks, preds, titles, stem, per_page=12, cols=4):
    """Every slice, ``per_page`` to a page: the prediction in red, the ground truth as a
    green outline, each titled (name and Dice). Writes STEM_1.png, STEM_2.png, ...;
    returns their paths."""
    from pathlib import Path

    stem, paths = Path(stem), []
    for page, first in enumerate(range(0, len(images), per_page), 1):
        idx = range(first, min(first + per_page, len(images)))
        rows = -(-len(idx) // cols)
        fig, axes = plt.subplots(rows, cols, figsize=(2.6 * cols, 2.75 * rows), dpi=100, squeeze=False)
        for ax in axes.flat:
            ax.set_axis_off()
        for ax, i in zip(axes.flat, idx):
            _overlay(ax, images[i, ..., 0], preds[i], title=titles[i])
            if masks is not None and masks[i].any():
                ax.contour(masks[i] > 0, levels=[0.5], colors=[(0.1, 0.8, 0.2)], linewidths=0.7)
        fig.suptitle("prediction (red), ground truth (green outline)", fontsize=9)
        paths.append(_save(fig, stem.with_name(f"{stem.name}_{page}.png")))
    return paths


def feature_maps(model, image, path, channels=4):
    """What each encoder level, the bridge and each decoder level sees for one image
    (H, W, C): the first ``channels`` feature maps of every level's output."""
    levels = [(k, to_numpy(v)[0]) for k, v in model.features(asarray(image[None], dtype=model.dtype)).items() if k != "head"]
    fig, axes = plt.subplots(len(levels), channels + 1, figsize=(1.6 * (channels + 1), 1.6 * len(levels)), dpi=100)
    for row, (name, out) in enumerate(levels):
        axes[row, 0].text(0.5, 0.5, f"{name}\n{out.shape[0]}x{out.shape[1]}x{out.shape[2]}", ha="center", va="center", fontsize=8)
        axes[row, 0].set_axis_off()
        for c in range(channels):
            if c < out.shape[-1]:
                axes[row, c + 1].imshow(out[..., c], cmap="magma")
            axes[row, c + 1].set_axis_off()
    fig.suptitle("feature maps (first channels of each level)", fontsize=9)
    return _save(fig, path)


def gradient_norms(model, path):
    """Bar chart of ||dL/dkernel|| for every layer after the last backward pass."""
    names, norms = [], []
    for key, g in model.grads.items():
        if key.endswith("kernel"):
            names.append(key[: -len("/kernel")])
            norms.append(float(np.sqrt((to_numpy(g).astype(np.float64) ** 2).sum())))
    fig, ax = plt.subplots(figsize=(max(6, 0.35 * len(names)), 3.2), dpi=100)
    ax.bar(range(len(names)), norms, color="tab:blue")
    ax.set_yscale("log")
    ax.set_xticks(range(len(names)), names, rotation=70, fontsize=7)
    ax.set(ylabel="||dL/dkernel||", title="gradient norm per layer (one step)")
    return _save(fig, path)


def phantom_grid(images, masks, path, cols=6):
    """Phantom samples: the image above, the disc mask overlaid below."""
    n = min(cols, len(images))
    fig, axes = plt.subplots(2, n, figsize=(1.9 * n, 4.0), dpi=100, squeeze=False)
    for i in range(n):
        _overlay(axes[0, i], images[i, ..., 0], None)
        _overlay(axes[1, i], images[i, ..., 0], masks[i])
    return _save(fig, path)
