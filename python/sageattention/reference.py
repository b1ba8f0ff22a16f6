"""numpy wrappers of the library's CPU reference (no GPU and no torch needed).

- ``attention_exact``: attention in float64, the ground truth for accuracy measurements.
- ``attention_emulated``: the kernel's quantized pipeline reproduced on the CPU (same K smoothing,
  INT8 groups, rounding and scales; P rounded to the 16-bit dtype, or with ``dtype="e4m3"`` the FP8
  P.V of the FP8 kernels: P and per-channel-scaled V in E4M3, optional V smoothing). Its error
  against the exact result is what the GPU kernel's error should look like, which makes it the
  oracle of the tests: ``|gpu - exact| <= rtol * |emulated - exact| + atol``.

Both take ``[batch, heads, tokens, head_dim]`` arrays (any float dtype, numpy arrays or CPU torch
tensors; fp16/bf16 -> float32 is exact) and return ``(out, lse)`` as float64 arrays of shapes
``[B, Hq, Nq, D]`` and ``[B, Hq, Nq]``. Causal masking is bottom-right aligned, as in the kernels.
They run single-threaded on the CPU: keep problems small (e.g. B*H <= 4, N <= 1024).
"""

import ctypes
import math

import numpy as np

from . import _library
from ._abi import DType, GRANULARITY_CODES, SageattnReferenceProblem, Status

__all__ = ["attention_exact", "attention_emulated"]


def _as_float32(x, name):
    # CPU torch tensors (bf16 included, which numpy cannot hold) are converted without importing
    # torch here: anything with .detach() is assumed to be a tensor.
    if hasattr(x, "detach") and hasattr(x, "float"):
        x = x.detach().cpu().float().numpy()
    arr = np.ascontiguousarray(np.asarray(x), dtype=np.float32)
    if arr.ndim != 4:
        raise ValueError(f"{name} must have 4 dimensions [batch, heads, tokens, head_dim], got {arr.shape}")
    return arr


def _problem(q, k, v, sm_scale, is_causal, rotate_qk=False):
    b, hq, nq, d = q.shape
    if k.shape != v.shape:
        raise ValueError(f"k and v must have the same shape, got {k.shape} and {v.shape}")
    bk, hkv, nkv, dk = k.shape
    if bk != b or dk != d:
        raise ValueError(f"q {q.shape} and k {k.shape} disagree on batch or head_dim")
    if min(q.shape) == 0 or min(k.shape) == 0:
        raise ValueError(f"empty problem: q {q.shape}, k {k.shape}")
    if hq % hkv != 0:
        raise ValueError(f"heads of q ({hq}) must be a multiple of heads of k/v ({hkv})")
    if sm_scale is None:
        sm_scale = 1.0 / math.sqrt(d)
    return SageattnReferenceProblem(b, hq, hkv, nq, nkv, d, float(sm_scale), int(bool(is_causal)),
                                    int(bool(rotate_qk)))


def _dtype_code(dtype):
    # Accept "float16"/"fp16"/"bfloat16"/"bf16", numpy dtypes and torch dtypes (by name), and for the
    # FP8 P.V "e4m3"/"fp8_e4m3"/"float8_e4m3fn" (torch.float8_e4m3fn by name).
    name = str(dtype).replace("torch.", "").lower()
    if name in ("float16", "fp16", "half"):
        return DType.FP16
    if name in ("bfloat16", "bf16"):
        return DType.BF16
    if name in ("e4m3", "fp8_e4m3", "float8_e4m3fn"):
        return DType.E4M3
    raise ValueError(f"dtype must be float16, bfloat16 or e4m3, got {dtype!r}")


def _run(function_name, q, k, v, sm_scale, is_causal, extra_args, mask=None, rotate_qk=False):
    """`mask`: the mask argument of sageattn_reference_emulated_masked (None for other entry points);
    `rotate_qk`: the problem's qk_rotation (the emulations only)."""
    q = _as_float32(q, "q")
    k = _as_float32(k, "k")
    v = _as_float32(v, "v")
    problem = _problem(q, k, v, sm_scale, is_causal, rotate_qk)
    b, hq, nq, d = q.shape
    out = np.empty((b, hq, nq, d), dtype=np.float64)
    lse = np.empty((b, hq, nq), dtype=np.float64)
    mask_args = ()
    if mask is not None:
        mask = np.ascontiguousarray(np.broadcast_to(np.asarray(mask, dtype=np.float32), (b, hq, nq, k.shape[2])))
        mask_args = (mask.ctypes.data,)
    status = getattr(_library.load(), function_name)(
        ctypes.byref(problem), *extra_args,
        q.ctypes.data, k.ctypes.data, v.ctypes.data, *mask_args, out.ctypes.data, lse.ctypes.data,
    )
    if status != Status.OK:
        # The reference entry points have no reason buffer; the Python checks above catch the
        # common mistakes, so what reaches here is a real limit of the reference.
        raise _library.status_error(status, function_name, None)
    return out, lse


def attention_exact(q, k, v, sm_scale=None, is_causal=False):
    """Exact attention in float64 (the library's CPU reference). Returns (out, lse)."""
    return _run("sageattn_reference_exact", q, k, v, sm_scale, is_causal, ())


def attention_emulated(q, k, v, sm_scale=None, is_causal=False, *, dtype="float16",
                       qk_quant_gran="per_thread", smooth_k=True, smooth_v=False, mask=None, rotate_qk=True):
    """The quantized kernel pipeline emulated on the CPU. Returns (out, lse).

    ``dtype`` is the 16-bit type the GPU call would get (P is rounded to it before P.V); the inputs
    themselves should already hold values representable in it (e.g. come from an fp16 tensor).
    ``dtype="e4m3"`` emulates the FP8 P.V instead (docs/design/quantization.md, "FP8 P.V"): the inputs
    are still fp16/bf16 values, P tilde = e4m3(448 * exp2(x - m)) and V is quantized per channel to
    E4M3. ``smooth_v`` (subtract the per-channel V mean before quantizing V, add it back at the end)
    exists only for ``dtype="e4m3"``.
    ``mask``: an additive float mask broadcastable to [B, Hq, Nq, Nkv] (-inf masks; booleans as
    0 / -inf), added to the scores as the kernels add SAGEATTN_MASK_ADDITIVE values.
    ``rotate_qk``: the Q/K rotation of sageattn's ``rotate_qk`` (default True, as sageattn's).
    """
    if qk_quant_gran not in GRANULARITY_CODES:
        raise ValueError(f"qk_quant_gran must be one of {sorted(GRANULARITY_CODES)}, got {qk_quant_gran!r}")
    pv_dtype = int(_dtype_code(dtype))
    if smooth_v and pv_dtype != DType.E4M3:
        raise ValueError(f"smooth_v=True needs dtype='e4m3' (V smoothing is defined only for the FP8 P.V), "
                         f"got dtype={dtype!r}")
    extra = (int(GRANULARITY_CODES[qk_quant_gran]), int(bool(smooth_k)), int(bool(smooth_v)), pv_dtype)
    if mask is None:
        return _run("sageattn_reference_emulated_v2", q, k, v, sm_scale, is_causal, extra, rotate_qk=rotate_qk)
    return _run("sageattn_reference_emulated_masked", q, k, v, sm_scale, is_causal, extra, mask, rotate_qk)
