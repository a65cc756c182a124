"""Loaders for real scans. Each returns the same arrays as the phantom:

    images (N, H, W, 1) float32, normalized (percentile clip, z-score)
    masks  (N, H, W) uint8, 1 = intervertebral disc

Sources: a folder of image/mask pairs (PNG, NPY or NPZ), an HDF5 data set file
(``images``, ``masks``), and 3D volumes (NIfTI, MetaImage) cut into sagittal
slices, through the optional SimpleITK (``pip install 'minunet[medical]'``).
Bad data raises one ``DataError`` that names the file and the fix.
"""
import os
from pathlib import Path

import h5py
import numpy as np

from .preprocess import normalize, resize

IMAGE_EXTENSIONS = (".png", ".npy", ".npz")
VOLUME_EXTENSIONS = (".nii", ".nii.gz", ".mha", ".mhd")
#: SPIDER (lumbar spine MRI, MetaImage): intervertebral discs are labels 201..225.
SPIDER_DISCS = {v: 1 for v in range(201, 226)}


class DataError(ValueError):
    """Unusable input data; the message names the file and what to do."""


class LabelMapError(DataError):
    """Mask labels that the label map does not name. ``labels`` are all the labels seen in
    that mask, ``label_map`` the map in use: enough for a caller to suggest a full map."""

    def __init__(self, where, uncovered, labels, label_map):
        self.where, self.uncovered, self.labels, self.label_map = where, uncovered, labels, label_map
        super().__init__(f"{where}: mask labels {uncovered[:8]} are not in the label map {_short(label_map)}; "
                         f"pass label_map={suggested_label_map(labels, label_map)} (every label named), "
                         f"or add 'rest': 0")


class NoDiscError(DataError):
    """A label map under which no mask of a data set holds any disc."""

    def __init__(self, where, label_map, labels):
        self.where, self.label_map, self.labels = where, label_map, labels
        discs = sorted(k for k, v in label_map.items() if k != "rest" and v)
        self.discs = discs
        super().__init__(f"{where}: the label map marks labels {_short_list(discs or ['none'])} as disc, but the "
                         f"masks hold only {labels}: it matches no disc; pass a label map that fits these masks, "
                         f"e.g. {suggested_label_map(labels, {0: 0, 1: 1})}")


def suggested_label_map(labels, label_map):
    """``label_map`` completed with every label in ``labels``: unnamed labels -> 0, or,
    when no label present is a disc under ``label_map`` (as 255 in a 0/255 mask), -> 1."""
    named = {k: v for k, v in label_map.items() if k != "rest"}
    fill = 0 if any(named.get(int(v)) for v in labels) else 1
    out = {int(v): (0 if int(v) == 0 else fill) for v in labels}
    out.update(named)
    return dict(sorted(out.items()))


def is_mask_file(path):
    """True for a file the folder loader reads as a mask: ``NAME_mask.ext``, or any file
    in a ``masks/`` folder beside an ``images/`` folder."""
    path = Path(path)
    stem = path.name[: -len(".nii.gz")] if path.name.endswith(".nii.gz") else path.stem
    return stem.endswith("_mask") or (path.parent.name == "masks" and (path.parent.parent / "images").is_dir())


def stem(path):
    """The file name without its extension (``.nii.gz`` counted as one): 'sub.01.png' -> 'sub.01'."""
    name = Path(path).name
    for ext in (".nii.gz",) + IMAGE_EXTENSIONS + VOLUME_EXTENSIONS:
        if name.endswith(ext):
            return name[: -len(ext)]
    return Path(path).stem


def load(path, size=None, label_map=None, names=False):
    """Load images and disc masks from a folder, an HDF5 file or a volume pair folder.

    ``size`` resizes every slice to size x size (bilinear images, nearest masks).
    ``label_map`` maps mask values to {0, 1}, e.g. ``SPIDER_DISCS`` or {1: 1, 2: 0};
    values it does not name map to 0 only if it is given as ``{..., "rest": 0}``.
    ``names=True`` also returns each slice's name: the file stem (``case_01``), or
    ``STEM_0003`` for slice 3 of an HDF5 file.
    """
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: no such file or folder")
    if path.is_file() and path.suffix in (".h5", ".hdf5"):
        return load_h5(path, size, label_map, names)
    if path.is_dir():
        return load_folder(path, size, label_map, names)
    raise DataError(f"{path}: cannot load this; give a folder of image/mask pairs or an HDF5 file with 'images' and 'masks'")


# ------------------------------------------------------------------ 2D pairs
def _read_2d(file, key):
    """One 2D array from a PNG, NPY or NPZ file (``key`` selects the NPZ entry)."""
    if file.suffix not in IMAGE_EXTENSIONS:
        raise DataError(f"{file}: minunet reads {', '.join(IMAGE_EXTENSIONS)} slices and "
                        f"{', '.join(VOLUME_EXTENSIONS)} volumes, not {file.suffix or 'files without an extension'}; "
                        f"convert it (e.g. to a grayscale .png)")
    try:
        if file.suffix == ".png":
            import matplotlib.image

            a = matplotlib.image.imread(file)
            if a.ndim == 3:                              # RGB(A) -> gray
                a = a[..., :3].mean(axis=-1)
            if a.dtype.kind == "f" and key == "mask":    # PNG masks come back scaled to [0, 1]
                a = np.round(a * 255)
        elif file.suffix == ".npy":
            a = np.load(file, allow_pickle=False)
        else:
            with np.load(file, allow_pickle=False) as z:
                if key not in z:
                    raise DataError(f"{file}: no '{key}' array in this NPZ (it has {sorted(z.files)}); "
                                    f"save it with np.savez(path, image=..., mask=...)")
                a = z[key]
    except DataError:
        raise
    except Exception as e:  # unreadable, truncated, not the format it claims
        raise DataError(f"{file}: unreadable ({type(e).__name__}: {e}); re-export the file") from None
    a = np.asarray(a)
    if a.ndim == 3 and a.shape[-1] == 1:
        a = a[..., 0]
    if a.ndim != 2:
        raise DataError(f"{file}: expected a 2D {key}, received shape {a.shape}")
    return a


def _pairs(folder):
    """(image file, mask file or None) pairs: NPZ files hold both; otherwise images/ and
    masks/ subfolders, or NAME.ext beside NAME_mask.ext."""
    files = sorted(p for p in folder.iterdir() if p.suffix in IMAGE_EXTENSIONS)
    if (folder / "images").is_dir():
        images = sorted(p for p in (folder / "images").iterdir() if p.suffix in IMAGE_EXTENSIONS)
        masks = {p.stem: p for p in (folder / "masks").iterdir()} if (folder / "masks").is_dir() else {}
        for img in images:
            if img.stem not in masks:
                raise DataError(f"{img}: no mask named {img.stem}.* in {folder / 'masks'}")
        return [(img, masks[img.stem]) for img in images]
    npz = [p for p in files if p.suffix == ".npz"]
    if npz:
        return [(p, None) for p in npz]
    masks = {p.stem[: -len("_mask")]: p for p in files if p.stem.endswith("_mask")}
    images = [p for p in files if not p.stem.endswith("_mask")]
    for img in images:
        if img.stem not in masks:
            raise DataError(f"{img}: no mask {img.stem}_mask.* beside it")
    return [(img, masks[img.stem]) for img in images]


def load_folder(folder, size=None, label_map=None, names=False):
    """A folder of 2D slices: NPZ files with ``image`` and ``mask`` (as in
    ``../shared/data/real-spine``), ``images/`` + ``masks/`` subfolders (as the source
    repository's ``input/images/N.png`` + ``input/masks/N.npy``), or ``NAME.png``
    beside ``NAME_mask.png`` (PNG or NPY). ``names=True`` adds the image files' stems."""
    folder = Path(folder)
    pairs = _pairs(folder)
    if not pairs:
        raise DataError(f"{folder}: no image files ({', '.join(IMAGE_EXTENSIONS)}) found; "
                        f"put NAME.png + NAME_mask.png pairs, images/ + masks/, or NPZ files there")
    images, masks, seen = [], [], set()
    for img_file, mask_file in pairs:
        image = _read_2d(img_file, "image")
        mask = _read_2d(mask_file or img_file, "mask")
        images.append(_check_image(image, img_file))
        masks.append(_map_labels(mask, label_map, mask_file or img_file, seen))
        if image.shape != mask.shape:
            raise DataError(f"{img_file}: image shape {image.shape} and mask shape {mask.shape} differ")
    if label_map is not None and not any(m.any() for m in masks):
        raise NoDiscError(folder, label_map, sorted(seen))
    shapes = {a.shape for a in images}
    if size is None and len(shapes) > 1:
        raise DataError(f"{folder}: slices have different shapes {sorted(shapes)}; pass size= to resize them")
    images, masks = _finish(images, masks, size)
    return (images, masks, [img_file.stem for img_file, _ in pairs]) if names else (images, masks)


# --------------------------------------------------------------------- HDF5
def load_h5(path, size=None, label_map=None, names=False):
    """An HDF5 file with datasets ``images`` (N, H, W[, 1]) and ``masks`` (N, H, W);
    ``label_map`` as in ``load``; ``names=True`` adds ``STEM_0000``, ``STEM_0001``, ...
    (the file's stem and the index)."""
    path = Path(path)
    try:
        with h5py.File(path, "r") as f:
            if "images" not in f or "masks" not in f:
                raise DataError(f"{path}: needs datasets 'images' and 'masks' (it has {sorted(f.keys())}); "
                                f"write one with minunet.data.save_h5")
            images, masks = f["images"][()], f["masks"][()]
    except OSError as e:
        raise DataError(f"{path}: not a readable HDF5 file (truncated or corrupt?): {e}") from None
    if images.ndim == 4 and images.shape[-1] == 1:
        images = images[..., 0]
    if images.shape != masks.shape or images.ndim != 3:
        raise DataError(f"{path}: images {images.shape} and masks {masks.shape} must be (N, H, W[, 1]) and (N, H, W)")
    for i, image in enumerate(images):
        _check_image(image, f"{path}[images][{i}]")
    images, masks = _finish(list(images), [_map_labels(m, label_map, f"{path}[masks][{i}]")
                                            for i, m in enumerate(masks)], size)
    return (images, masks, [f"{path.stem}_{i:04d}" for i in range(len(images))]) if names else (images, masks)


def save_h5(path, images, masks, **attrs):
    """Write ``images`` and ``masks`` (and string/number attributes) to an HDF5 data set file."""
    from ..h5file import write_atomic

    def write(f):
        f.create_dataset("images", data=np.asarray(images, np.float32), compression="gzip", compression_opts=4)
        f.create_dataset("masks", data=np.asarray(masks, np.uint8), compression="gzip", compression_opts=4)
        for k, v in attrs.items():
            f.attrs[k] = v

    write_atomic(path, write, size_hint=np.asarray(images).size * 4 + np.asarray(masks).size)


# ------------------------------------------------------------------ volumes
def _read_volume(path):
    """A volume through SimpleITK as sagittal slices (left-right, superior-inferior, anterior-posterior)."""
    try:
        import SimpleITK as sitk
    except ImportError:
        raise DataError(f"{path}: reading volumes needs SimpleITK; pip install 'minunet[medical]'") from None
    try:
        volume = sitk.ReadImage(str(path))
    except RuntimeError as e:
        raise DataError(f"{path}: unreadable volume ({str(e).strip().splitlines()[-1]}); check the file") from None
    if volume.GetDimension() != 3 or volume.GetNumberOfComponentsPerPixel() != 1:
        raise DataError(f"{path}: a {volume.GetDimension()}-D image of size {volume.GetSize()} with "
                        f"{volume.GetNumberOfComponentsPerPixel()} component(s); volumes must be 3-D, one channel "
                        f"(save a single slice as .png or .npy instead)")
    return _sagittal(sitk.GetArrayFromImage(volume), volume.GetDirection())


def is_volume(path):
    return str(path).endswith(VOLUME_EXTENSIONS)


def load_volume(image_path, mask_path, label_map, size=None):
    """Sagittal slices of a 3D volume pair (NIfTI .nii/.nii.gz or MetaImage .mha/.mhd)
    through SimpleITK. ``label_map`` maps mask labels to disc (1) / background (0), e.g.
    ``{**SPIDER_DISCS, "rest": 0}``. The volume is cut across its left-right axis (read
    from the direction cosines), each slice with superior at the top and posterior on
    the right, as the phantom draws it. Slices without any disc are dropped."""
    image, mask = _read_volume(image_path), _read_volume(mask_path)
    if image.shape != mask.shape:
        raise DataError(f"{image_path}: image shape {image.shape} and mask shape {mask.shape} differ")
    _check_image(image, image_path)
    mask = _map_labels(mask, label_map, mask_path)
    keep = mask.reshape(len(mask), -1).any(axis=1)
    if not keep.any():
        raise DataError(f"{mask_path}: no disc label after mapping {_short(label_map)}; check the label map")
    return _finish(list(image[keep].astype(np.float32)), list(mask[keep]), size)


def load_volume_slices(path, size=None):
    """Every sagittal slice of an image volume, normalized: (N, H, W, 1) float32 (for predict)."""
    image = _check_image(_read_volume(path), path)
    slices = [resize(a[None], size)[0] if size else a for a in image]
    return normalize(np.stack(slices))[..., None]


def _sagittal(volume, direction):
    """Reorder a (z, y, x) volume to (left-right, superior-inferior, anterior-posterior)
    slices: superior at the top, posterior on the right. ``direction`` is SimpleITK's
    3x3 direction cosines in LPS; its column j is image axis j (x, y, z)."""
    d = np.asarray(direction, float).reshape(3, 3)
    axis_of = {}                                   # patient axis (0 L, 1 P, 2 S) -> numpy axis
    for np_axis in range(3):
        vec = d[:, 2 - np_axis]
        axis_of.setdefault(int(np.argmax(np.abs(vec))), np_axis)
    if len(axis_of) != 3:
        raise DataError(f"oblique volume (direction {direction}): resample it to an axis-aligned grid first")
    out = np.transpose(volume, (axis_of[0], axis_of[2], axis_of[1]))
    if d[2, 2 - axis_of[2]] > 0:                    # index grows towards superior: flip, superior on top
        out = out[:, ::-1]
    if d[1, 2 - axis_of[1]] < 0:                    # index grows towards anterior: flip, posterior right
        out = out[:, :, ::-1]
    return np.ascontiguousarray(out)


# ------------------------------------------------------------------- checks
def _check_image(image, where):
    if not np.issubdtype(image.dtype, np.number):
        raise DataError(f"{where}: image dtype {image.dtype} is not numeric")
    if image.size == 0:
        raise DataError(f"{where}: an empty image of shape {image.shape}; give a slice with pixels")
    if not np.all(np.isfinite(image)):
        raise DataError(f"{where}: image has NaN or infinite pixels; fix or drop this slice")
    return image.astype(np.float32)


def _map_labels(mask, label_map, where, seen=None):
    """Mask values -> {0, 1} through label_map (identity on {0, 1} when None); the raw
    labels are added to the set ``seen``."""
    mask = np.asarray(mask)
    if mask.dtype.kind == "f":
        if not np.all(np.isfinite(mask)) or np.any(mask != np.round(mask)):
            raise DataError(f"{where}: mask has non-integer values; masks hold integer labels")
        mask = mask.astype(np.int64)
    values = np.unique(mask)
    if seen is not None:
        seen.update(int(v) for v in values)
    if label_map is None:
        label_map = {0: 0, 1: 1}
    rest = label_map.get("rest")
    uncovered = [int(v) for v in values if int(v) not in label_map and rest is None]
    if uncovered:
        raise LabelMapError(where, uncovered, [int(v) for v in values], label_map)
    lut = {int(v): label_map.get(int(v), rest) for v in values}
    out = np.zeros(mask.shape, np.uint8)
    for v, target in lut.items():
        if target:
            out[mask == v] = 1
    return out


def _short_list(values):
    return "[" + ", ".join(map(str, values[:6])) + (", ...]" if len(values) > 6 else "]")


def _short(label_map):
    items = list(label_map.items())
    return "{" + ", ".join(f"{k!r}: {v}" for k, v in items[:4]) + (", ...}" if len(items) > 4 else "}")


def _finish(images, masks, size):
    """Stack, resize, normalize: (N, H, W, 1) float32 and (N, H, W) uint8."""
    if size is not None:
        images = [resize(a[None], size, order=1)[0] for a in images]
        masks = [resize(m[None], size, order=0)[0] for m in masks]
    images = normalize(np.stack(images))[..., None]
    return images, np.stack(masks).astype(np.uint8)


def real_spine_folder():
    """The shared real slices, ``../shared/data/real-spine`` beside the repository, if present."""
    candidates = [Path(__file__).resolve().parents[3] / "shared" / "data" / "real-spine"]
    if os.environ.get("MINUNET_REAL_SPINE"):
        candidates.insert(0, Path(os.environ["MINUNET_REAL_SPINE"]))
    return next((c for c in candidates if c.is_dir() and any(c.glob("case_*.npz"))), None)
