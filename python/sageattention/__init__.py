"""sageattention: 8-bit attention kernels for NVIDIA GPUs, a drop-in for torch SDPA.

    from sageattention import sageattn
    out = sageattn(q, k, v, tensor_layout="HND", is_causal=False)

Also here: upstream sageattention 2.x's other entry points (``sageattn_varlen`` and the
per-kernel ``sageattn_qk_int8_pv_*`` functions), ``supports()`` (would ``sageattn`` accept a call?),
and SDPA routing (``scaled_dot_product_attention``, ``patch_sdpa`` / ``unpatch_sdpa`` /
``sdpa_patched``, ``sdpa_stats``).

Importing the package needs neither a GPU nor the compiled library (both are needed at the first
call). Without PyTorch, ``reference`` (numpy) still works and the torch entry points raise
ImportError.
"""

from . import reference
from ._library import LibraryNotFoundError
from ._version import __version__

_TORCH_API = (
    "sageattn",
    "sageattn_varlen",
    "sageattn_qk_int8_pv_fp16_cuda",
    "sageattn_qk_int8_pv_fp16_triton",
    "sageattn_qk_int8_pv_fp8_cuda",
    "sageattn_qk_int8_pv_fp8_cuda_sm90",
    "supports",
    "scaled_dot_product_attention",
    "patch_sdpa",
    "unpatch_sdpa",
    "sdpa_patched",
    "is_sdpa_patched",
    "sdpa_stats",
)

try:
    import torch as _torch  # noqa: F401
except ImportError as _exc:  # torch is deliberately not a hard dependency (see pyproject.toml)
    _torch_import_error = _exc

    def _unavailable(name):
        def entry_point(*args, **kwargs):
            raise ImportError(
                f"sageattention.{name} needs PyTorch >= 2.3 with CUDA: install torch "
                f"(import failed: {_torch_import_error})"
            ) from _torch_import_error

        entry_point.__name__ = name
        entry_point.__doc__ = "Unavailable: PyTorch is not installed."
        return entry_point

    globals().update({_name: _unavailable(_name) for _name in _TORCH_API})
else:
    from .compat import (
        sageattn_qk_int8_pv_fp8_cuda,
        sageattn_qk_int8_pv_fp8_cuda_sm90,
        sageattn_qk_int8_pv_fp16_cuda,
        sageattn_qk_int8_pv_fp16_triton,
    )
    from .core import sageattn
    from .sdpa_patch import is_sdpa_patched, patch_sdpa, sdpa_patched, unpatch_sdpa
    from .sdpa_route import scaled_dot_product_attention, sdpa_stats
    from ._supports import supports
    from .varlen import sageattn_varlen

__all__ = [*_TORCH_API, "reference", "__version__", "LibraryNotFoundError"]
