"""Data: the embedded spine phantom, loaders for real scans, augmentation and batching."""
from . import phantom
from .preprocess import normalize, resize

__all__ = ["phantom", "normalize", "resize"]
