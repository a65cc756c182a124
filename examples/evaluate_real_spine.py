"""Evaluate a trained model on the 12 real sagittal slices in ../shared/data/real-spine
(read through the same loader as any folder of NPZ files).

Run: python examples/evaluate_real_spine.py minunet-demo/model.h5 [folder]
"""
import sys

import minunet
from minunet import data, metrics, plots

model = minunet.load(sys.argv[1])
folder = sys.argv[2] if len(sys.argv) > 2 else data.real_spine_folder()
if folder is None:
    sys.exit("no real-spine folder found: pass its path, or set MINUNET_REAL_SPINE")
images, masks = data.load(folder, size=128)                  # 256 -> 128, normalized like the phantom
preds = model.segment(images)
summary = metrics.summarize(preds, masks)
for k in ("dice", "iou", "precision", "recall", "hd95"):
    print(f"{k:<10} {summary[k]:.3f}")
plots.overlays(images, masks, preds, "real_spine_overlays.png", n=6)
print("wrote real_spine_overlays.png (the slices are not part of this repository; cite their source)")
