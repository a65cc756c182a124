"""Small HDF5 helpers: atomic writes and one clear error for unreadable files.

A model file is written to a temporary file beside the target and renamed over
it only when complete, so a crash (or Ctrl-C) never leaves half a model behind.
"""
import os
import tempfile

import h5py
import numpy as np


def write_atomic(path, write):
    """Call ``write(h5py.File)`` on a temporary file, then rename it to ``path``."""
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".h5", dir=folder)
    os.close(fd)
    try:
        with h5py.File(tmp, "w") as f:
            write(f)
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


def open_read(path):
    """h5py.File(path, 'r'), or a ValueError that says the file is missing or not HDF5."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path}: no such file")
    try:
        return h5py.File(path, "r")
    except OSError as e:
        raise ValueError(f"{path}: not a readable HDF5 file (truncated or corrupt?): {e}") from None


def write_arrays(group, arrays):
    """One dataset per key; '/' in a key makes nested groups, as in 'enc1/conv1/kernel'."""
    for k, a in arrays.items():
        group.create_dataset(k, data=np.asarray(a))


def read_arrays(group, path):
    """All datasets below ``group`` as {relative/name: ndarray}; a damaged dataset raises ValueError."""
    out = {}

    def visit(name, obj):
        if isinstance(obj, h5py.Dataset):
            try:
                out[name] = obj[()]
            except OSError as e:
                raise ValueError(f"{path}: dataset {obj.name} is unreadable (file corrupt?): {e}") from None

    group.visititems(visit)
    return out
