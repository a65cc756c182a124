"""Small file helpers: atomic writes and one clear error for unreadable HDF5 files.

Every file minunet writes (models, data sets, pictures, masks, metrics) is written to a
temporary file beside the target and renamed over it only when complete, so a crash,
a full disk or Ctrl-C never leaves half a file behind, nor destroys the file it replaces.
"""
import errno
import io
import os
import shutil
import tempfile

import h5py
import numpy as np


class WriteError(OSError):
    """A file could not be written (full disk, read-only folder, no permission); the old
    file at that path, if any, is untouched. ``path`` is the file asked for."""

    def __init__(self, path, reason, code=None):
        super().__init__(code, f"cannot write {path}: {reason}")
        self.path, self.reason = os.fspath(path), reason

    def __str__(self):
        return self.strerror


def replace_atomic(path, write):
    """Call ``write(tmp_path)`` on a temporary path beside ``path`` (same suffix, so that
    writers that choose a format by the name still do), then rename it to ``path``.
    Any failure removes the temporary file and raises ``WriteError`` (an OSError)."""
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    if os.path.isdir(path):
        raise WriteError(path, "it is a folder", errno.EISDIR)
    tmp = None
    try:
        os.makedirs(folder, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=os.path.splitext(path)[1], dir=folder)
        os.close(fd)
        write(tmp)
        os.replace(tmp, path)
        tmp = None
    except WriteError:
        raise
    except OSError as e:
        raise WriteError(path, e.strerror or str(e), e.errno) from None
    except Exception as e:  # h5py and matplotlib wrap I/O errors in their own types
        if isinstance(e.__cause__ or e.__context__, OSError):
            inner = e.__cause__ or e.__context__
            raise WriteError(path, inner.strerror or str(inner), inner.errno) from None
        raise
    finally:
        if tmp is not None and os.path.exists(tmp):
            os.unlink(tmp)


#: HDF5 files up to this size are built in memory and written by Python: HDF5 cannot
#: recover from a failed write (a full disk leaves the library in a broken state, and
#: the process may crash later). Larger files are written directly, after a check that
#: the folder has room for them.
IN_MEMORY_BYTES = 256 * 2**20


def write_atomic(path, write, size_hint=None):
    """Call ``write(h5py.File)`` on a new HDF5 file, then put it at ``path`` atomically.
    ``size_hint``: about how many bytes the file holds (None: small)."""
    if size_hint is not None and size_hint > IN_MEMORY_BYTES:
        def write_direct(tmp):
            free = shutil.disk_usage(os.path.dirname(tmp)).free
            if free < size_hint * 1.02 + 2**20:
                raise OSError(errno.ENOSPC, f"No space left on device (needs about {size_hint / 2**20:.0f} MiB, "
                                            f"{free / 2**20:.0f} MiB free)")
            with h5py.File(tmp, "w") as f:
                write(f)

        replace_atomic(path, write_direct)
        return
    buffer = io.BytesIO()
    with h5py.File(buffer, "w") as f:
        write(f)
    write_bytes_atomic(path, buffer.getbuffer())


def write_bytes_atomic(path, data):
    """Write ``data`` (bytes or str) to ``path`` through a temporary file."""
    def write(tmp):
        with open(tmp, "wb") as f:
            f.write(data.encode() if isinstance(data, str) else data)
            f.flush()
            os.fsync(f.fileno())

    replace_atomic(path, write)


def open_read(path):
    """h5py.File(path, 'r'), or a ValueError that says the file is missing or not HDF5."""
    path = os.fspath(path)
    if os.path.isdir(path):
        raise ValueError(f"{path}: is a folder, not a file")
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
