"""Segmentation metrics, per image and aggregated, on label maps (N, H, W).

For one class c of one image, with P = predicted pixels and T = true pixels:

    Dice = 2 |P & T| / (|P| + |T|)     IoU = |P & T| / |P | T|
    precision = |P & T| / |P|          recall = |P & T| / |T|
    pixel accuracy = share of pixels whose label is right (all classes)
    HD95 = 95th percentile of the distances from each boundary pixel of P to the
           nearest boundary pixel of T and back, pooled (as MedPy's hd95), in pixels

Empty masks: when P and T are both empty, Dice, IoU, precision and recall are 1
(nothing to find, nothing found) and HD95 is 0. When exactly one is empty, the
overlap scores are 0 and HD95 is undefined: NaN, left out of the mean (the
number of such images is reported as ``hd95_undefined``).
"""
import numpy as np


def _boundary(mask):
    """Pixels of mask with a 4-neighbour outside it (the image border counts as outside)."""
    padded = np.pad(mask, 1)
    interior = padded[:-2, 1:-1] & padded[2:, 1:-1] & padded[1:-1, :-2] & padded[1:-1, 2:]
    return mask & ~interior


def hd95(pred, target, spacing=1.0):
    """95th-percentile symmetric Hausdorff distance between two boolean 2D masks."""
    a, b = np.argwhere(_boundary(pred)), np.argwhere(_boundary(target))
    if len(a) == 0 and len(b) == 0:
        return 0.0
    if len(a) == 0 or len(b) == 0:
        return float("nan")
    d_ab = _nearest_distances(a, b)
    d_ba = _nearest_distances(b, a)
    return float(np.percentile(np.concatenate([d_ab, d_ba]), 95) * spacing)


def _nearest_distances(a, b, chunk=2048):
    """For each point of a, the distance to the nearest point of b (chunked pairwise)."""
    out = np.empty(len(a))
    bf = b.astype(np.float64)
    for s in range(0, len(a), chunk):
        diff = a[s : s + chunk, None, :].astype(np.float64) - bf[None]   # (chunk, |b|, 2)
        out[s : s + chunk] = np.sqrt((diff**2).sum(-1).min(axis=1))
    return out


def _ratio(num, den, both_empty):
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, num / np.maximum(den, 1), both_empty)


def per_image(pred, target, n_classes=2, hausdorff=True):
    """Scores per image (N,) and per foreground class, as {metric: (N, n_classes - 1)}."""
    pred, target = np.asarray(pred), np.asarray(target)
    if pred.shape != target.shape or pred.ndim != 3:
        raise ValueError(f"metrics: pred {pred.shape} and target {target.shape} must both be (N, H, W) label maps")
    out = {k: [] for k in ("dice", "iou", "precision", "recall")}
    out["hd95"] = []
    for c in range(1, n_classes):
        p, t = pred == c, target == c
        inter = (p & t).sum(axis=(1, 2)).astype(float)
        ps, ts = p.sum(axis=(1, 2)).astype(float), t.sum(axis=(1, 2)).astype(float)
        both_empty = (ps == 0) & (ts == 0)
        out["dice"].append(_ratio(2 * inter, ps + ts, both_empty))
        out["iou"].append(_ratio(inter, ps + ts - inter, both_empty))
        out["precision"].append(_ratio(inter, ps, ts == 0))
        out["recall"].append(_ratio(inter, ts, ps == 0))
        if hausdorff:
            out["hd95"].append(np.array([hd95(pi, ti) for pi, ti in zip(p, t)]))
    result = {k: np.stack(v, axis=1).astype(float) for k, v in out.items() if v}
    result["pixel_accuracy"] = (pred == target).mean(axis=(1, 2))
    return result


def summarize(pred, target, n_classes=2, hausdorff=True):
    """Means over images: one number per metric for the foreground (averaged over
    foreground classes), plus ``per_class`` means when there are several classes."""
    scores = per_image(pred, target, n_classes, hausdorff)
    summary = {}
    for k, v in scores.items():
        if k == "pixel_accuracy":
            summary[k] = float(v.mean())
            continue
        summary[k] = float(np.nanmean(v)) if np.isfinite(v).any() else float("nan")
        if n_classes > 2:
            summary[f"{k}_per_class"] = [float(np.nanmean(v[:, i])) if np.isfinite(v[:, i]).any() else float("nan")
                                         for i in range(v.shape[1])]
    if "hd95" in scores:
        summary["hd95_undefined"] = int(np.isnan(scores["hd95"]).sum())
    return summary


def dice(pred, target, n_classes=2):
    """Mean foreground Dice over images (and classes): the number the demo reports."""
    return float(per_image(pred, target, n_classes, hausdorff=False)["dice"].mean())
