"""The backend shim: NumPy always, CuPy only when asked for, one clear error otherwise."""
import os
import subprocess
import sys

import numpy as np
import pytest

from minunet import backend


def test_numpy_is_the_default():
    x = np.ones(3)
    assert backend.get_array_module(x) is np
    assert backend.name() == "numpy"
    assert backend.DEFAULT_DTYPE == np.float32
    assert backend.to_numpy(x) is x


@pytest.mark.skipif(backend.cupy_available(), reason="CuPy and a GPU are present")
def test_cupy_without_gpu_names_the_fix():
    with pytest.raises(RuntimeError, match=r"pip install 'minunet\[gpu\]'"):
        backend.use("cupy")
    assert backend.name() == "numpy"


def test_unknown_backend():
    with pytest.raises(ValueError, match="unknown backend 'jax'"):
        backend.use("jax")


def test_environment_variable_selects_the_backend():
    env = dict(os.environ, MINUNET_BACKEND="numpy")
    out = subprocess.run([sys.executable, "-c", "import minunet; print(minunet.backend.name())"],
                         env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "numpy"
    env["MINUNET_BACKEND"] = "tpu"       # read on first need: importing still works, using fails clearly
    bad = subprocess.run([sys.executable, "-c", "import minunet; minunet.backend.name()"], env=env, capture_output=True, text=True)
    assert bad.returncode != 0 and "unknown backend 'tpu'" in bad.stderr
    fine = subprocess.run([sys.executable, "-c", "import minunet; minunet.backend.use('numpy'); print(minunet.backend.name())"],
                          env=env, capture_output=True, text=True, check=True)
    assert fine.stdout.strip() == "numpy"


def test_layers_run_on_each_backend(xp):
    """The same layer code on every available backend gives the NumPy numbers."""
    from minunet.layers import Conv2D, MaxPool2D

    x = np.random.default_rng(0).standard_normal((2, 8, 8, 3)).astype(np.float32)
    conv = Conv2D(3, 4, rng=0)
    y = MaxPool2D().forward(conv.forward(xp.asarray(x)))
    assert backend.get_array_module(y) is xp
    backend.use("numpy")
    ref = MaxPool2D().forward(Conv2D(3, 4, rng=0).forward(x))
    np.testing.assert_allclose(backend.to_numpy(y), ref, rtol=1e-5, atol=1e-6)
