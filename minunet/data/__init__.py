"""Data: the embedded spine phantom, loaders for real scans, splits, batches, augmentation."""
from . import phantom
from .augment import PRESETS, Augment, augment_preset
from .batching import batches, folds, split
from .loaders import SPIDER_DISCS, DataError, load, load_folder, load_h5, load_volume, real_spine_folder, save_h5
from .preprocess import normalize, resize

__all__ = ["phantom", "Augment", "augment_preset", "PRESETS", "batches", "folds", "split", "DataError", "load",
           "load_folder", "load_h5", "load_volume", "save_h5", "real_spine_folder", "SPIDER_DISCS", "normalize", "resize"]
