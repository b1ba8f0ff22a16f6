"""sageattention: 8-bit attention kernels for NVIDIA GPUs, a drop-in for torch SDPA.

    from sageattention import sageattn
    out = sageattn(q, k, v, tensor_layout="HND", is_causal=False)

Importing the package needs neither a GPU nor the compiled library (both are needed at the first
call). Without PyTorch, ``reference`` (numpy) still works and ``sageattn`` raises ImportError.
"""

from . import reference
from ._library import LibraryNotFoundError
from ._version import __version__

try:
    import torch as _torch  # noqa: F401
except ImportError as _exc:  # torch is deliberately not a hard dependency (see pyproject.toml)
    _torch_import_error = _exc

    def sageattn(*args, **kwargs):
        """Unavailable: PyTorch is not installed."""
        raise ImportError(
            "sageattention.sageattn needs PyTorch >= 2.3 with CUDA: install torch "
            f"(import failed: {_torch_import_error})"
        ) from _torch_import_error
else:
    from .core import sageattn

__all__ = ["sageattn", "reference", "__version__", "LibraryNotFoundError"]
