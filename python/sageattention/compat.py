"""Upstream sageattention 2.x's per-kernel entry points, with its names, parameter order and
defaults, running on this package's kernels.

``sageattn`` itself (core.py) already has upstream's signature; ``sageattn_varlen`` is in varlen.py.
Upstream picks one of these by GPU; here every one runs on every supported GPU (sm80 and newer).

How each upstream parameter is honoured:

- ``tensor_layout, is_causal, sm_scale, return_lse, smooth_k, qk_quant_gran``: exactly as in
  ``sageattn`` (causal masks are aligned bottom-right when Nq != Nkv; upstream documents causal
  only for Nq == Nkv, where both alignments agree). The LSE is upstream's: natural log, float32,
  [B, Hq, Nq], of the unsmoothed scaled scores.
- P.V precision: the ``pv_fp16`` functions always run a 16-bit P.V kernel (``kernel="auto_pv16"``:
  P and V in the input dtype, float32 accumulation), as their name promises: on Hopper the wgmma
  kernel's 16-bit P.V variant at head dims 65..128, elsewhere the mma.sync one. The ``pv_fp8``
  functions run ``kernel="auto"``: the FP8 P.V kernel where the library has one for the GPU, else
  the 16-bit one (more accurate than asked; FP8 P.V is a speed choice).
- ``pv_accum_dtype``: upstream's values for each function are accepted (others raise ValueError).
  They choose how upstream accumulates P.V: "fp32" is what our kernels do; "fp16+fp32", "fp16",
  "fp32+fp16" and "fp32+fp32" (Hopper's 22-bit FP8 accumulator promoted to float32) ask for
  cheaper accumulation, for speed. Our kernels always accumulate in float32 with a float32
  promotion per tile, so no request gets less precision than it asked for; none is refused for
  being more precise than needed.
- ``smooth_v``: honoured whenever True (upstream ignores it, with a warning, for some
  ``pv_accum_dtype`` values): the V mean is subtracted before the kernel and added back after
  (exact in real arithmetic, see _smooth_v.py). ``sageattn_qk_int8_pv_fp8_cuda_sm90`` has no such
  parameter upstream, so passing it there is a TypeError.
- ``quantization_backend`` (triton function): "triton" or "cuda" (others raise ValueError); both
  mean our fused CUDA pre-pass. Upstream's Triton path quantizes per block; we quantize per thread
  (finer, same speed here).
- ``**kwargs``: never swallowed; see _compat_kwargs.py (attn_mask / dropout_p checked, flash-attn
  names ``softmax_scale`` / ``causal`` honoured, other flash-attn features refused unless off,
  anything else TypeError).
"""

from . import _compat_kwargs, _smooth_v, core

__all__ = [
    "sageattn_qk_int8_pv_fp16_cuda",
    "sageattn_qk_int8_pv_fp16_triton",
    "sageattn_qk_int8_pv_fp8_cuda",
    "sageattn_qk_int8_pv_fp8_cuda_sm90",
    "PV_ACCUM_DTYPES",
]

_PV_FP16_KERNEL = "auto_pv16"
_PV_FP8_KERNEL = "auto"

# Upstream's accepted pv_accum_dtype values per function (its defaults first).
PV_ACCUM_DTYPES = {
    "sageattn_qk_int8_pv_fp16_cuda": ("fp32", "fp16+fp32", "fp16"),
    "sageattn_qk_int8_pv_fp8_cuda": ("fp32+fp16", "fp32", "fp32+fp32"),
    "sageattn_qk_int8_pv_fp8_cuda_sm90": ("fp32+fp32", "fp32"),
}
_QUANTIZATION_BACKENDS = ("triton", "cuda")


def _check_choice(function_name, name, value, allowed):
    if not isinstance(value, str) or value not in allowed:
        raise ValueError(f"{function_name}: {name} must be one of {list(allowed)}, got {value!r}")


def _run(function_name, kernel, q, k, v, tensor_layout, is_causal, qk_quant_gran, sm_scale, smooth_k,
         smooth_v, return_lse, kwargs):
    sm_scale, is_causal, attn_mask, dropout_p = _compat_kwargs.resolve(
        function_name, kwargs, sm_scale, is_causal)
    if not isinstance(smooth_v, (bool, int)):
        raise TypeError(f"{function_name}: smooth_v must be a bool, got {type(smooth_v).__name__}")
    attention = _smooth_v.attention if smooth_v else core.sageattn
    return attention(q, k, v, tensor_layout, is_causal, sm_scale, return_lse, smooth_k=smooth_k,
                     qk_quant_gran=qk_quant_gran, attn_mask=attn_mask, dropout_p=dropout_p,
                     kernel=kernel)


def sageattn_qk_int8_pv_fp16_cuda(q, k, v, tensor_layout="HND", is_causal=False,
                                  qk_quant_gran="per_thread", sm_scale=None, pv_accum_dtype="fp32",
                                  smooth_k=True, smooth_v=False, return_lse=False, **kwargs):
    """Upstream's INT8 Q.K^T + FP16 P.V entry point; see the module docstring for the mapping."""
    name = "sageattn_qk_int8_pv_fp16_cuda"
    _check_choice(name, "pv_accum_dtype", pv_accum_dtype, PV_ACCUM_DTYPES[name])
    return _run(name, _PV_FP16_KERNEL, q, k, v, tensor_layout, is_causal, qk_quant_gran, sm_scale,
                smooth_k, smooth_v, return_lse, kwargs)


def sageattn_qk_int8_pv_fp16_triton(q, k, v, tensor_layout="HND", quantization_backend="triton",
                                    is_causal=False, sm_scale=None, smooth_k=True, return_lse=False,
                                    **kwargs):
    """Upstream's Triton entry point (per-block INT8 Q.K^T, FP16 P.V); runs our 16-bit P.V kernel."""
    name = "sageattn_qk_int8_pv_fp16_triton"
    _check_choice(name, "quantization_backend", quantization_backend, _QUANTIZATION_BACKENDS)
    return _run(name, _PV_FP16_KERNEL, q, k, v, tensor_layout, is_causal, "per_thread", sm_scale,
                smooth_k, False, return_lse, kwargs)


def sageattn_qk_int8_pv_fp8_cuda(q, k, v, tensor_layout="HND", is_causal=False,
                                 qk_quant_gran="per_thread", sm_scale=None,
                                 pv_accum_dtype="fp32+fp16", smooth_k=True, smooth_v=False,
                                 return_lse=False, **kwargs):
    """Upstream's INT8 Q.K^T + FP8 P.V entry point (sm89); see the module docstring for the mapping."""
    name = "sageattn_qk_int8_pv_fp8_cuda"
    _check_choice(name, "pv_accum_dtype", pv_accum_dtype, PV_ACCUM_DTYPES[name])
    return _run(name, _PV_FP8_KERNEL, q, k, v, tensor_layout, is_causal, qk_quant_gran, sm_scale,
                smooth_k, smooth_v, return_lse, kwargs)


def sageattn_qk_int8_pv_fp8_cuda_sm90(q, k, v, tensor_layout="HND", is_causal=False,
                                      qk_quant_gran="per_thread", sm_scale=None,
                                      pv_accum_dtype="fp32+fp32", smooth_k=True, return_lse=False,
                                      **kwargs):
    """Upstream's Hopper entry point (INT8 Q.K^T + FP8 P.V). Upstream refuses
    pv_accum_dtype="fp32" here; float32 accumulation is what we run, so it is accepted."""
    name = "sageattn_qk_int8_pv_fp8_cuda_sm90"
    _check_choice(name, "pv_accum_dtype", pv_accum_dtype, PV_ACCUM_DTYPES[name])
    return _run(name, _PV_FP8_KERNEL, q, k, v, tensor_layout, is_causal, qk_quant_gran, sm_scale,
                smooth_k, False, return_lse, kwargs)
