"""How close is the phantom to the real slices? Statistics, a zero-shot score and a figure.

Measured on the real sagittal slices in ../shared/data/real-spine (never part of this
repository) and on phantom slices drawn at the same 256 px, both normalized the way
every minunet input is (``data.normalize``: per-slice percentile clip, then z-score):

    disc z, body z, bg z    mean z-score of the disc, vertebral-body and background pixels
    body sd                 sd of the z-score inside the bodies (marrow texture)
    disc %                  disc pixels, percent of the slice
    disc h                  disc height in px: area / length of each disc (length along
                            its principal axis), the median over a slice's discs
    discs                   discs per slice (connected components of >= 10 px)
    column w                antero-posterior width of the vertebral bodies in px
                            (median over rows of the body pixels per row)
    sharpness               gradient energy: mean |grad z|^2 over the slice, per px^2

Each number is the mean +- sd over slices. The real slices split into the 9 mid-sagittal,
fully annotated ones and the 3 the data's README flags (01 and 13 para-sagittal with no
vertebra label, 04 incompletely labelled); statistics that need vertebra labels skip 01, 13.

With ``--model``, also the zero-shot Dice of a model at the real slices' native size
(``zero_shot_dice``: as ``minunet evaluate`` scores it, run at the size the model file
records, probabilities resampled back, scored against the native mask). With ``--figure``, phantom and real slices side
by side with the intensity histograms of disc, body and background.

Run: python benchmarks/phantom_vs_real.py [--model minunet-demo/model.h5] [--figure docs/phantom_vs_real.png]
"""
import argparse
import sys
import time
from pathlib import Path

import numpy as np

import minunet
from minunet import data, metrics
from minunet.cli import segment_at
from minunet.data.preprocess import normalize

FLAGGED = ("01", "04", "13")     # para-sagittal or incompletely labelled (the data's README)
STATS = ("disc z", "body z", "bg z", "body sd", "disc %", "disc h", "discs", "column w", "sharpness")


# ------------------------------------------------------------------ the slices
def real_slices(folder):
    """{case id: (raw image (256, 256) float32, labels (256, 256): 0 bg, 1 disc, 2 vertebra)}."""
    out = {}
    for f in sorted(Path(folder).glob("case_*.npz")):
        with np.load(f) as z:
            out[f.stem[len("case_"):]] = (z["image"].astype(np.float32), z["labels"].astype(np.uint8))
    if not out:
        sys.exit(f"{folder}: no case_*.npz files; pass --real PATH to the real-spine folder")
    return out


def _components(mask):
    """Connected components (4-neighbours) of a boolean (H, W) mask: an int label map,
    -1 outside, by propagating the smallest pixel index until nothing changes."""
    big = mask.size
    lab = np.where(mask, np.arange(big).reshape(mask.shape), big)
    while True:
        p = np.pad(lab, 1, constant_values=big)
        new = np.minimum.reduce([lab, p[:-2, 1:-1], p[2:, 1:-1], p[1:-1, :-2], p[1:-1, 2:]])
        new = np.where(mask, new, big)
        if np.array_equal(new, lab):
            break
        lab = new
    return np.where(mask, lab, -1)


def _discs(mask, min_px=10):
    """Height (area / principal length) of each disc component of >= min_px pixels."""
    comp = _components(mask > 0)
    heights = []
    for c in np.unique(comp[comp >= 0]):
        yy, xx = np.nonzero(comp == c)
        if len(yy) < min_px:
            continue
        pts = np.stack([yy, xx], 1).astype(float)
        pts -= pts.mean(0)
        axis = np.linalg.eigh(pts.T @ pts)[1][:, -1]             # the principal (long) axis
        proj = pts @ axis
        heights.append(len(yy) / (proj.max() - proj.min() + 1))
    return np.array(heights)


def slice_stats(z, labels):
    """The statistics of one normalized slice z (H, W) with labels 0 bg, 1 disc, 2 body;
    NaN where the slice has no body label."""
    disc, body, bg = labels == 1, labels == 2, labels == 0
    heights = _discs(disc)
    gy, gx = np.gradient(z)
    has_body = body.any()
    rows = body.sum(1)
    return {
        "disc z": z[disc].mean(),
        "body z": z[body].mean() if has_body else np.nan,
        "bg z": z[bg].mean(),
        "body sd": z[body].std() if has_body else np.nan,
        "disc %": 100 * disc.mean(),
        "disc h": np.median(heights) if len(heights) else np.nan,
        "discs": len(heights),
        "column w": np.median(rows[rows > 0]) if has_body else np.nan,
        "sharpness": np.mean(gy**2 + gx**2),
    }


def table(groups):
    """{group name: list of stats dicts} -> a Markdown table of mean +- sd per statistic."""
    lines = ["| statistic | " + " | ".join(groups) + " |", "|---" * (len(groups) + 1) + "|"]
    for k in STATS:
        cells = []
        for rows in groups.values():
            v = np.array([r[k] for r in rows], float)
            v = v[np.isfinite(v)]
            span = f" ({v.min():.0f} to {v.max():.0f})" if k == "discs" and len(v) else ""
            cells.append(f"{v.mean():.2f} +- {v.std():.2f}{span}" if len(v) else "-")
        lines.append(f"| {k} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def phantom_slices(n, size=256, seed=2024):
    """n phantom slices at ``size``: normalized images (n, size, size), multiclass labels
    with the canal folded into background (the real labels have no canal)."""
    images, labels = data.phantom.generate(n, size=size, seed=seed, labels="multiclass")
    labels = np.where(labels == 3, 0, labels)
    return images[..., 0], labels


# ------------------------------------------------------------------ zero shot
def zero_shot_dice(model, slices):
    """{case id: Dice} of ``model`` on raw slices {id: (image, labels)} at their native size,
    as ``minunet evaluate`` scores them: run at the size the model file records
    (``cli.segment_at``: resampled there, probabilities back at the native size), scored
    against the native disc mask by ``metrics.per_image``."""
    names = list(slices)
    images = normalize(np.stack([slices[k][0] for k in names]))[..., None]   # (N, H, W, 1)
    truth = np.stack([slices[k][1] == 1 for k in names]).astype(np.uint8)     # (N, H, W)
    preds = segment_at(model, images, (model.metadata or {}).get("size"))
    return dict(zip(names, metrics.per_image(preds, truth)["dice"][:, 0]))


# --------------------------------------------------------------------- figure
def figure(real, phantom_z, phantom_lab, path, groups=None, n_show=4):
    """Real slices above, phantom slices below; a row of disc / body / background histograms
    and, given the statistics ``groups`` of ``table``, their means."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ids = [k for k in real if k not in FLAGGED][:n_show]
    fig, axes = plt.subplots(3, n_show, figsize=(2.6 * n_show, 8.2), dpi=72,
                             gridspec_kw={"height_ratios": [1, 1, 0.75]})
    for ax, k in zip(axes[0], ids):
        ax.imshow(normalize(real[k][0][None])[0], cmap="gray", vmin=-1.5, vmax=3.5)
        ax.set_title(f"real case_{k}", fontsize=8)
        ax.set_axis_off()
    for i, ax in enumerate(axes[1]):
        ax.imshow(phantom_z[i], cmap="gray", vmin=-1.5, vmax=3.5)
        ax.set_title(f"phantom {i}", fontsize=8)
        ax.set_axis_off()
    real_z = {k: normalize(im[None])[0] for k, (im, lab) in real.items() if k not in ("01", "13")}
    bins = np.linspace(-1.5, 4, 56)
    for ax, (cls, name) in zip(axes[2], [(1, "disc"), (2, "vertebral body"), (0, "background")]):
        r = np.concatenate([z[real[k][1] == cls] for k, z in real_z.items()])
        p = phantom_z[phantom_lab == cls]
        ax.hist(r, bins, density=True, alpha=0.55, label="real", color="tab:blue")
        ax.hist(p, bins, density=True, alpha=0.55, label="phantom", color="tab:orange")
        ax.set_title(f"{name} z-score", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.legend(fontsize=7)
    for ax in axes[2][3:]:
        ax.set_axis_off()
    if groups:
        names = [g for g in groups if g.startswith(("real (9", "phantom"))]
        lines = ["mean        " + "  ".join(f"{g.split(' ')[0]:>8}" for g in names)]
        for k in STATS:
            lines.append(f"{k:<11} " + "  ".join(f"{np.nanmean([r[k] for r in groups[g]]):8.2f}" for g in names))
        axes[2][3].text(0, 0.5, "\n".join(lines), family="monospace", fontsize=7, va="center")
    fig.tight_layout()
    fig.savefig(path, bbox_inches="tight")
    plt.close(fig)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--real", default=data.real_spine_folder() or "../shared/data/real-spine")
    p.add_argument("--n", type=int, default=96, help="phantom slices to measure (default %(default)s)")
    p.add_argument("--model", help="also score this model zero-shot on the real slices")
    p.add_argument("--figure", help="write the phantom-vs-real figure here")
    args = p.parse_args(argv)

    real = real_slices(args.real)
    t = time.time()
    pz, plab = phantom_slices(args.n)
    print(f"phantom: {args.n} slices of 256x256 in {time.time() - t:.1f} s")
    stats = {k: slice_stats(normalize(im[None])[0], lab) for k, (im, lab) in real.items()}
    groups = {"real (9 mid-sagittal)": [s for k, s in stats.items() if k not in FLAGGED],
              "real (01, 04, 13)": [stats[k] for k in FLAGGED if k in stats],
              f"phantom ({args.n})": [slice_stats(z, lab) for z, lab in zip(pz, plab)]}
    print(table(groups))
    if args.model:
        model = minunet.load(args.model)
        size = (model.metadata or {}).get("size")
        dice = zero_shot_dice(model, real)
        main9 = [d for k, d in dice.items() if k not in FLAGGED]
        at = f"{size[0]}x{size[1]}" if size else "each slice's own size"
        print(f"zero-shot Dice at the native size (run at {at}): mean of the 9 = {np.mean(main9):.3f} +- {np.std(main9):.3f}; "
              + ", ".join(f"{k} {dice[k]:.2f}" for k in FLAGGED if k in dice) + " (flagged)")
        print("  " + " ".join(f"{k}:{d:.2f}" for k, d in dice.items()))
    if args.figure:
        figure(real, pz, plab, args.figure, groups)
        print(f"wrote {args.figure}")


if __name__ == "__main__":
    main()
