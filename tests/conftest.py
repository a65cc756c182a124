"""Test settings: a derandomized hypothesis profile so CI never flakes, and helpers."""
import os

import numpy as np
import pytest
from hypothesis import HealthCheck, settings

settings.register_profile("ci", derandomize=True, max_examples=50, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("dev", max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


def _backends():
    from minunet import backend

    out = [pytest.param("numpy", id="numpy")]
    out.append(pytest.param("cupy", id="cupy", marks=pytest.mark.skipif(not backend.cupy_available(),
                                                                        reason="CuPy or a GPU is not available")))
    return out


@pytest.fixture(params=_backends())
def xp(request):
    """The array module of each available backend, selected for new arrays while the test runs."""
    from minunet import backend

    module = backend.use(request.param)
    yield module
    backend.use("numpy")


@pytest.fixture
def rng():
    return np.random.default_rng(1234)
