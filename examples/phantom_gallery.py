"""Draw a grid of phantom slices with their disc masks (the README's picture).

Run: python examples/phantom_gallery.py [out.png]
"""
import sys
import time

from minunet import data, plots

start = time.time()
images, masks = data.phantom.generate(1000, size=128, seed=0)
print(f"1000 phantom slices of 128x128 in {time.time() - start:.1f} s")
path = sys.argv[1] if len(sys.argv) > 1 else "phantom_samples.png"
plots.phantom_grid(images[:8], masks[:8], path, cols=8)
print(f"wrote {path}")
