"""The one place that knows NumPy from CuPy.

Everything else in minunet asks this module for its array module::

    xp = get_array_module(x)      # numpy for a NumPy array, cupy for a CuPy array
    y = xp.maximum(x, 0)

so the same layer code runs on the CPU and on a GPU. The module imports
without CuPy; CuPy is imported only when it is asked for.

The backend used for *new* arrays (initial weights, data moved to the
device) is NumPy unless ``use("cupy")`` is called or the environment
variable ``MINUNET_BACKEND=cupy`` is set. The variable is read when a backend is
first needed, not at import: a missing CuPy then fails there with one clear error,
and ``use("numpy")`` before that overrides the variable.
"""
import os

import numpy

#: Default floating dtype of parameters and data: float32, as in Keras.
DEFAULT_DTYPE = numpy.float32

_GPU_FIX = "install the GPU extra with `pip install 'minunet[gpu]'` on a machine with a CUDA GPU"
_cupy = None  # the cupy module once it has been imported successfully
_current = None  # the backend module; None until use() or the first use of $MINUNET_BACKEND


def _import_cupy():
    """Import CuPy and check that a GPU is visible; one clear error otherwise."""
    global _cupy
    if _cupy is None:
        try:
            import cupy
        except ImportError as e:
            raise RuntimeError(f"backend 'cupy' requested but CuPy is not installed ({e}); {_GPU_FIX}") from None
        try:
            n = cupy.cuda.runtime.getDeviceCount()
        except Exception as e:  # CUDA driver missing or broken
            raise RuntimeError(f"backend 'cupy' requested but no CUDA GPU is usable ({e}); {_GPU_FIX}") from None
        if n == 0:
            raise RuntimeError(f"backend 'cupy' requested but no CUDA GPU is visible; {_GPU_FIX}")
        _cupy = cupy
    return _cupy


def use(name):
    """Select the backend for new arrays: ``"numpy"`` or ``"cupy"``. Returns the module."""
    global _current
    if name == "numpy":
        _current = numpy
    elif name == "cupy":
        _current = _import_cupy()
    else:
        raise ValueError(f"unknown backend {name!r}; use 'numpy' or 'cupy' (--backend, or $MINUNET_BACKEND "
                         f"which is {os.environ.get('MINUNET_BACKEND', 'unset')})")
    return _current


def _active():
    """The current backend module, chosen from $MINUNET_BACKEND on first need."""
    if _current is None:
        use(requested())
    return _current


def requested():
    """The backend $MINUNET_BACKEND asks for (``"numpy"`` when unset)."""
    return os.environ.get("MINUNET_BACKEND", "numpy").strip().lower() or "numpy"


def name():
    """The name of the current backend, ``"numpy"`` or ``"cupy"``."""
    return "cupy" if _active() is not numpy else "numpy"


def xp():
    """The array module of the current backend (numpy or cupy)."""
    return _active()


def cupy_available():
    """True when CuPy imports and sees a GPU (never raises)."""
    try:
        _import_cupy()
    except RuntimeError:
        return False
    return True


def _is_cupy(a):
    return type(a).__module__.partition(".")[0] == "cupy"


def get_array_module(*arrays):
    """numpy, or cupy when any of ``arrays`` is a CuPy array (as chainer.backend does)."""
    if any(_is_cupy(a) for a in arrays):
        return _import_cupy()
    return numpy


def to_numpy(a):
    """A NumPy copy (or view) of ``a``, wherever it lives."""
    if _is_cupy(a):
        return a.get()
    return numpy.asarray(a)


def asarray(a, dtype=None):
    """``a`` as an array of the current backend (moved to the GPU under cupy)."""
    return _active().asarray(a, dtype=dtype)
