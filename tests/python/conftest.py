"""Shared test setup.

Which `sageattention` is tested:
- the installed package (with its bundled library) when it is importable and SAGEATTN_LIBRARY is
  unset (scripts/gpu_check.sh: `pip install .`, then pytest from outside the repository);
- otherwise the source tree `python/`, with the library from $SAGEATTN_LIBRARY (development:
  `SAGEATTN_LIBRARY=build/libsageattn.so pytest tests/python`).

GPU tests carry the `gpu` marker (GPU modules set `pytestmark = pytest.mark.gpu`) and are skipped
when torch sees no CUDA device; collecting them touches no CUDA API (tensors are made in fixtures
and tests only).
"""

import importlib.util
import os
import sys

import pytest

REPO_ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
SOURCE_PACKAGE_PARENT = os.path.join(REPO_ROOT, "python")

if os.environ.get("SAGEATTN_LIBRARY") or importlib.util.find_spec("sageattention") is None:
    sys.path.insert(0, SOURCE_PACKAGE_PARENT)

import sageattention  # noqa: E402
from sageattention import _library  # noqa: E402

PACKAGE_PARENT = os.path.dirname(os.path.dirname(os.path.abspath(sageattention.__file__)))


def _cuda_available():
    try:
        import torch
    except ImportError:
        return False
    return torch.cuda.is_available()


def pytest_collection_modifyitems(config, items):
    if _cuda_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU (torch.cuda.is_available() is False)")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def library():
    """The loaded library. Skips when it was not built, unless SAGEATTN_LIBRARY names it (then a
    load failure is a test failure)."""
    try:
        return _library.load()
    except _library.LibraryNotFoundError as exc:
        if os.environ.get(_library.LIBRARY_ENV_VAR):
            raise
        pytest.skip(f"libsageattn.so not available: {exc}")


@pytest.fixture(scope="session")
def subprocess_env():
    """Environment for `python -m sageattention` subprocesses: the same package and library."""
    env = dict(os.environ)
    env["PYTHONPATH"] = PACKAGE_PARENT + os.pathsep + env.get("PYTHONPATH", "")
    return env


@pytest.fixture(params=["sm80_mma", "sm90_wgmma", "sm90_wgmma_pv16"])
def kernel(request, library):
    """Each kernel the device can run: sm80_mma everywhere, sm90_wgmma and its 16-bit P.V variant
    on compute capability 9.0 with a build that has 90a (skipped elsewhere). For the GPU tests."""
    from gpu_helpers import SM90_KERNELS, sm90_available

    if request.param in SM90_KERNELS and not sm90_available(library):
        pytest.skip(f"{request.param} needs a compute capability 9.0 GPU and a build with 90a")
    return request.param


@pytest.fixture
def fake_cuda_mode():
    """A FakeTensorMode in which CUDA tensors can be made without a GPU (metadata only); skips on
    torch builds that cannot fake CUDA tensors."""
    import torch
    from torch._subclasses.fake_tensor import FakeTensorMode

    mode = FakeTensorMode()
    with mode:
        try:
            torch.empty(1, device="cuda")
        except Exception as exc:  # pragma: no cover - depends on the torch build
            pytest.skip(f"this torch cannot make fake CUDA tensors: {exc}")
    return mode
