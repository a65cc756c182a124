"""Look inside a U-Net: its architecture, what each level sees, and the gradient
norm of every layer for one training step.

Run: python examples/inspect_model.py [model.h5]      (writes PNGs into inspect/)
"""
import sys
from pathlib import Path

import minunet
from minunet import data, losses, plots

model = minunet.load(sys.argv[1]) if len(sys.argv) > 1 else minunet.UNet(depth=4, base_filters=8, seed=0)
out = Path("inspect")
out.mkdir(exist_ok=True)
images, masks = data.phantom.generate(8, size=128, seed=1)

plots.architecture(model, 128, out / "architecture.png")
plots.feature_maps(model, images[0], out / "feature_maps.png")

loss, dlogits = losses.ce_dice_loss(model.forward(images), masks)      # one step's gradients
model.backward(dlogits)
plots.gradient_norms(model, out / "gradient_norms.png")
plots.overlays(images, masks, model.segment(images), out / "overlays.png")
print(f"loss {float(loss):.4f}; wrote {', '.join(str(p) for p in sorted(out.iterdir()))}")
