"""``supports(q, k, v, **kwargs)``: would ``sageattn`` accept this call?

Answers from the very checks ``sageattn`` runs (``core.validate_call``, same signature), so the two
cannot disagree: the answer is (True, "") exactly when ``sageattn`` with the same arguments would not
raise an argument error. Only shapes, dtypes, devices, strides and the grad mode are inspected (no
tensor values, no GPU work), so it is cheap, works on fake tensors and traces under torch.compile.
"""

from ._abi import SM90_KERNELS
from .core import validate_call

__all__ = ["supports"]

# The exception types of sageattn's argument errors (see sageattn's docstring). A CUDA failure
# during the launch is not an argument error and cannot be predicted here.
_ARGUMENT_ERRORS = (TypeError, ValueError, NotImplementedError, RuntimeError)


def supports(q, k, v, *args, **kwargs):
    """(True, "") if ``sageattn(q, k, v, *args, **kwargs)`` accepts these arguments, else
    (False, reason) with the message of the exception ``sageattn`` would raise.

    Unknown keyword arguments count as unsupported (``sageattn`` raises TypeError for them).
    Example: route a call to torch SDPA when our kernels cannot run it::

        ok, why = sageattention.supports(q, k, v, is_causal=True)
        out = sageattn(q, k, v, is_causal=True) if ok else sdpa(q, k, v, is_causal=True)
    """
    try:
        head_dim = validate_call(q, k, v, *args, **kwargs)[0]
    except _ARGUMENT_ERRORS as exc:
        # Binding errors name the checking function; the caller asked about sageattn.
        return False, str(exc).replace("validate_call()", "sageattn()")
    return _kernel_available(q, kwargs.get("kernel", "auto"), head_dim)  # kernel is keyword-only


# Compute capabilities with >= 128 KB of shared memory per block (src/api/plan.cpp).
_LARGE_SHARED_MEMORY = ((8, 0), (8, 7), (9, 0), (10, 0), (10, 3))


def _kernel_available(q, kernel, head_dim):
    """What the GPU or the build lacks: sageattn raises NotImplementedError for it at launch (the
    library's check, src/api/plan.cpp), so supports() answers the same: an explicitly requested
    sm90 kernel, and head dims above 128 where a block cannot have the 128 KB of shared memory
    their kernel needs (compute capability 8.6, 8.9, 12.x). Needs the real device, so it is
    skipped on fake tensors and while torch.compile traces."""
    import torch

    sm90 = kernel in SM90_KERNELS
    if (not sm90 and head_dim <= 128) or not isinstance(q, torch.Tensor) or q.device.type != "cuda":
        return True, ""
    compiling = getattr(getattr(torch, "compiler", None), "is_compiling", lambda: False)()
    if compiling or not torch.cuda.is_available():
        return True, ""
    from . import _library

    major, minor = torch.cuda.get_device_capability(q.device)
    if head_dim > 128 and (major, minor) not in _LARGE_SHARED_MEMORY:
        return False, (f"head_dim {head_dim} needs 128 KB of shared memory per block, more than compute "
                       f"capability {major}.{minor} allows (head dims up to 128 run everywhere; above, sm80, "
                       "sm87, sm90 and sm100)")
    if not sm90:
        return True, ""
    name = kernel.upper()
    if "90a" not in _library.load().compiled_archs:
        return False, f"kernel {name} is not in this build (rebuild with 90a in SAGEATTN_CUDA_ARCHS)"
    if (major, minor) != (9, 0):
        return False, f"kernel {name} needs a compute capability 9.0 GPU (Hopper), this one is {major}.{minor}"
    return True, ""
