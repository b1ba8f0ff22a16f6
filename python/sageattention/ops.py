"""The torch operator ``sageattention::attention_forward``.

Registering the kernel call as an operator with a fake (shape-only) implementation makes it an
opaque, well-typed node for torch.compile (no graph break, no tracing into ctypes), for FakeTensor /
meta shape propagation, and for CUDA graphs (its memory comes from torch's allocator).

Schema::

    sageattention::attention_forward(Tensor q, Tensor k, Tensor v, int layout, bool is_causal,
        float sm_scale, bool return_lse, bool smooth_k, int qk_granularity, int kernel,
        bool smooth_v=True, Tensor? attn_mask=None, Tensor? block_mask=None, bool rotate_qk=True)
        -> (Tensor, Tensor)                                  # (out, lse)

- q, k, v: fp16/bf16 CUDA tensors in the layout named by ``layout`` (0 = HND [B, H, N, D],
  1 = NHD [B, N, H, D]), already validated by ``sageattn``: equal head_dim (a multiple of 8),
  last dim contiguous. Misaligned strides or pointers are tolerated (copied).
- out: a new contiguous tensor with q's shape and dtype (so q's layout).
- lse: float32 [B, Hq, Nq] contiguous when return_lse, else an empty float32 tensor of shape [0]
  (an operator must always return the same number of tensors).
- ``qk_granularity`` and ``kernel`` are the integer codes of the C enums.
- attn_mask: None or a mask broadcastable to [B, Hq, Nq, Nkv] (bool, float32 or q's dtype);
  block_mask: None or a bool mask broadcastable to [B, Hq, ceil(Nq / 128), ceil(Nkv / 128)]
  (see ``sageattn``). Checked again here (``check_masks``).

``attention_forward`` (module attribute) is the OpOverload to call.

``sageattention::varlen_forward`` (``varlen_forward``) is the same call on packed sequences
(``sageattn_varlen``): q [total_q, Hq, D], k/v [total_k, Hkv, D], int32 cu_seqlens on q's device,
host-int maxima; lse [Hq, total_q] (flash-attn's varlen layout).
"""

import torch

from . import _launch
from ._validate import LAYOUT_HND, LAYOUT_NHD, check_masks, check_tensors, strides_ready

NAMESPACE = "sageattention"
OP_NAME = "attention_forward"
_SCHEMA_ARGS = (
    "(Tensor q, Tensor k, Tensor v, int layout, bool is_causal, float sm_scale, bool return_lse, "
    "bool smooth_k, int qk_granularity, int kernel, bool smooth_v=True, Tensor? attn_mask=None, "
    "Tensor? block_mask=None, bool rotate_qk=True) -> (Tensor, Tensor)"
)


def _lse_shape(q, layout, packed=False):
    if packed:  # [total_q, Hq, D] -> flash-attn's varlen [Hq, total_q]
        return (q.shape[1], q.shape[0])
    if layout == LAYOUT_HND:
        return (q.shape[0], q.shape[1], q.shape[2])
    return (q.shape[0], q.shape[2], q.shape[1])


def _aligned(t):
    if strides_ready(t) and _launch.pointer_aligned(t):
        return t
    # clone, not contiguous(): a contiguous tensor may still start at a misaligned address.
    return t.clone(memory_format=torch.contiguous_format)


def _run(q, k, v, layout, is_causal, sm_scale, return_lse, smooth_k, qk_granularity, kernel, smooth_v=True,
         attn_mask=None, block_mask=None, empty_lse=True, packed=None, rotate_qk=True, checked=None):
    """The op's real implementation on already-checked tensors: outputs, workspace and the launch.
    Without return_lse the second result is an empty tensor (the operator's schema), or None when
    `empty_lse` is False (eager callers that drop it save an allocation). `packed`: packed
    sequences, as _launch.forward takes them. `checked`: sageattn's record of these inputs
    (core._CheckedCall): their strides are ready, and it keeps the workspace size and the params
    bytes (dropped when a pointer needs the alignment copy)."""
    # The pointer half of the alignment rule (see _validate.strides_ready), plus a safety net for
    # callers that reach the op directly or through a compiler that changed the strides.
    if checked is not None and not (_launch.pointer_aligned(q) and _launch.pointer_aligned(k)
                                    and _launch.pointer_aligned(v)):
        checked = None  # the copies below may have other strides than the recorded call's
    if checked is None:
        q = _aligned(q)
        k = _aligned(k)
        v = _aligned(v)
    out = torch.empty_like(q, memory_format=torch.contiguous_format)
    lse = None
    if return_lse:
        lse = torch.empty(_lse_shape(q, layout, packed is not None), dtype=torch.float32, device=q.device)
    _launch.forward(q, k, v, out, lse, layout, is_causal, sm_scale, smooth_k, qk_granularity, kernel,
                    smooth_v, attn_mask, block_mask, packed, rotate_qk, checked)
    if lse is None and empty_lse:
        lse = torch.empty((0,), dtype=torch.float32, device=q.device)
    return out, lse


def _attention_forward_cuda(q, k, v, layout, is_causal, sm_scale, return_lse, smooth_k,
                            qk_granularity, kernel, smooth_v=True, attn_mask=None, block_mask=None, rotate_qk=True):
    # The op is public (torch.ops.sageattention.attention_forward, opcheck calls it directly), and
    # the C params describe only q's shape: a v with fewer tokens or a k on another device would be
    # read out of bounds. The same tensor checks as sageattn's run here too (a few microseconds).
    if layout not in (LAYOUT_HND, LAYOUT_NHD):
        raise ValueError(f"layout must be {LAYOUT_HND} (HND) or {LAYOUT_NHD} (NHD), got {layout}")
    check_tensors(q, k, v, layout)
    attn_mask, block_mask = check_masks(q, k, layout, attn_mask, block_mask)
    return _run(q, k, v, layout, is_causal, sm_scale, return_lse, smooth_k, qk_granularity, kernel,
                smooth_v, attn_mask, block_mask, rotate_qk=rotate_qk)


# Eager calls skip the operator dispatch (custom_op's Python autograd wrapper and the dispatcher
# cost ~25-50 us of host time per call, more than the launch itself) when nothing could observe the
# difference: plain tensors (no FakeTensor or other subclass), no torch.compile / jit tracing, no
# __torch_dispatch__ mode (FakeTensorMode, FlopCounterMode, ...), no __torch_function__ mode other
# than torch.set_default_device's (it only fills in devices, and every tensor here is given one),
# no functorch transform (vmap), no torch profiler (its trace shows the operator as one event).
# Autograd cannot see a difference either: sageattn refuses inputs that require grad while grad
# mode is on. Anything else goes through the operator. (A kernel a user registers for this operator
# with torch.library would be bypassed on this path too; nothing in this package does that.)
_is_compiling = getattr(getattr(torch, "compiler", None), "is_compiling", None)
_mode_probes = tuple(
    probe for probe in (
        getattr(torch._C, "_len_torch_dispatch_stack", None),
        getattr(torch._C, "_are_functorch_transforms_active", None),
        getattr(torch._C, "_get_tracing_state", None),
        getattr(getattr(torch._C, "_autograd", None), "_profiler_enabled", None),
    )
)
_function_modes = getattr(torch._C, "_len_torch_function_stack", None)
_function_mode_stack = getattr(torch.overrides, "_get_current_function_mode_stack", None)
try:
    from torch.utils._device import DeviceContext as _DeviceContext
except ImportError:  # older torch: any function mode takes the operator
    _DeviceContext = None
EAGER_FAST_PATH = (_is_compiling is not None and None not in _mode_probes and _function_modes is not None
                   and _function_mode_stack is not None)


def _only_default_device_modes():
    return _DeviceContext is not None and all(isinstance(m, _DeviceContext) for m in _function_mode_stack())


def eager_fast_path_ok(q, k, v, attn_mask=None, block_mask=None):
    """True when `call_eager` may replace the operator call for these inputs (the masks None where
    absent; checked by sageattn). Explicit type tests, no generator: this runs on every call."""
    if not EAGER_FAST_PATH or _is_compiling():
        return False
    if type(q) is not torch.Tensor or type(k) is not torch.Tensor or type(v) is not torch.Tensor:
        return False
    if (attn_mask is not None and type(attn_mask) is not torch.Tensor) or (
            block_mask is not None and type(block_mask) is not torch.Tensor):
        return False
    if any(probe() for probe in _mode_probes):
        return False
    return _function_modes() == 0 or _only_default_device_modes()


def call_eager(q, k, v, layout, is_causal, sm_scale, return_lse, smooth_k, qk_granularity, kernel,
               smooth_v=True, attn_mask=None, block_mask=None, rotate_qk=True):
    """The operator's result without the dispatch, for tensors and masks sageattn has checked and
    expanded (see above); the LSE is None unless return_lse."""
    return _run(q, k, v, layout, is_causal, sm_scale, return_lse, smooth_k, qk_granularity, kernel,
                smooth_v, attn_mask, block_mask, empty_lse=False, rotate_qk=rotate_qk)


def call_checked(q, k, v, checked, is_causal, return_lse, smooth_k, rotate_qk, attn_mask=None, block_mask=None):
    """call_eager for inputs that match a call sageattn checked before (`checked`, a
    core._CheckedCall): the same launch, minus what that record already answers. The masks come as
    the caller gave them: once the record holds the params bytes only their data pointers are read
    (an expanded view has its tensor's), otherwise they are expanded here as validate_call did."""
    if (attn_mask is not None or block_mask is not None) and (
            checked.params is None or not (_launch.pointer_aligned(q) and _launch.pointer_aligned(k)
                                           and _launch.pointer_aligned(v))):
        attn_mask, block_mask = check_masks(q, k, checked.layout, attn_mask, block_mask)
    return _run(q, k, v, checked.layout, is_causal, checked.sm_scale, return_lse, smooth_k, checked.granularity,
                checked.kernel, attn_mask=attn_mask, block_mask=block_mask, empty_lse=False, rotate_qk=rotate_qk,
                checked=checked)


def _attention_forward_fake(q, k, v, layout, is_causal, sm_scale, return_lse, smooth_k,
                            qk_granularity, kernel, smooth_v=True, attn_mask=None, block_mask=None, rotate_qk=True):
    out = q.new_empty(q.shape)
    lse_shape = _lse_shape(q, layout) if return_lse else (0,)
    return out, q.new_empty(lse_shape, dtype=torch.float32)


# --- packed sequences (varlen) -------------------------------------------------------------------

VARLEN_OP_NAME = "varlen_forward"
_VARLEN_SCHEMA_ARGS = (
    "(Tensor q, Tensor k, Tensor v, Tensor cu_seqlens_q, Tensor cu_seqlens_k, int max_seqlen_q, "
    "int max_seqlen_k, bool is_causal, float sm_scale, bool return_lse, bool smooth_k, int qk_granularity, "
    "int kernel, bool smooth_v=True, bool rotate_qk=True) -> (Tensor, Tensor)"
)


def check_packed_tensors(q, k, v, cu_seqlens_q, cu_seqlens_k, max_seqlen_q, max_seqlen_k):
    """The tensor rules of packed calls (the op is public, so it checks them itself): q [Tq, Hq, D],
    k and v [Tk, Hkv, D] as one NHD batch of one (dtype, device, heads, head dim, strides), the
    cu_seqlens int32 [batch + 1] with equal lengths on q's device, the maxima >= 1."""
    for label, t in (("q", q), ("k", k), ("v", v)):
        if t.dim() != 3:
            raise ValueError(f"{label} must be 3-D [total_tokens, heads, head_dim], got shape {tuple(t.shape)}")
    check_tensors(q.unsqueeze(0), k.unsqueeze(0), v.unsqueeze(0), LAYOUT_NHD)
    for label, cu in (("cu_seqlens_q", cu_seqlens_q), ("cu_seqlens_k", cu_seqlens_k)):
        if cu.dtype != torch.int32 or cu.dim() != 1 or cu.shape[0] < 2:
            raise ValueError(f"{label} must be int32 [batch + 1] with batch >= 1, got {cu.dtype} "
                             f"{tuple(cu.shape)}")
        if cu.device != q.device:
            raise ValueError(f"{label} is on {cu.device}, q on {q.device}: they must be on one device")
    if cu_seqlens_q.shape != cu_seqlens_k.shape:
        raise ValueError(f"cu_seqlens_q and cu_seqlens_k must have the same length, got "
                         f"{cu_seqlens_q.shape[0]} and {cu_seqlens_k.shape[0]}")
    if max_seqlen_q < 1 or max_seqlen_k < 1:
        raise ValueError(f"max_seqlen_q and max_seqlen_k must be >= 1 here, got {max_seqlen_q}, {max_seqlen_k}")


def _run_varlen(q, k, v, cu_seqlens_q, cu_seqlens_k, max_seqlen_q, max_seqlen_k, is_causal, sm_scale, return_lse,
                smooth_k, qk_granularity, kernel, smooth_v=True, rotate_qk=True, empty_lse=True):
    packed = (cu_seqlens_q.contiguous(), cu_seqlens_k.contiguous(), max_seqlen_q, max_seqlen_k)
    return _run(q, k, v, LAYOUT_NHD, is_causal, sm_scale, return_lse, smooth_k, qk_granularity, kernel, smooth_v,
                empty_lse=empty_lse, packed=packed, rotate_qk=rotate_qk)


def _varlen_forward_cuda(q, k, v, cu_seqlens_q, cu_seqlens_k, max_seqlen_q, max_seqlen_k, is_causal, sm_scale,
                         return_lse, smooth_k, qk_granularity, kernel, smooth_v=True, rotate_qk=True):
    check_packed_tensors(q, k, v, cu_seqlens_q, cu_seqlens_k, max_seqlen_q, max_seqlen_k)
    return _run_varlen(q, k, v, cu_seqlens_q, cu_seqlens_k, max_seqlen_q, max_seqlen_k, is_causal, sm_scale,
                       return_lse, smooth_k, qk_granularity, kernel, smooth_v, rotate_qk)


def call_varlen_eager(q, k, v, cu_seqlens_q, cu_seqlens_k, max_seqlen_q, max_seqlen_k, is_causal, sm_scale,
                      return_lse, smooth_k, qk_granularity, kernel, smooth_v=True, rotate_qk=True):
    """varlen_forward without the dispatch, for checked plain tensors (see eager_fast_path_ok)."""
    return _run_varlen(q, k, v, cu_seqlens_q, cu_seqlens_k, max_seqlen_q, max_seqlen_k, is_causal, sm_scale,
                       return_lse, smooth_k, qk_granularity, kernel, smooth_v, rotate_qk, empty_lse=False)


def _varlen_forward_fake(q, k, v, cu_seqlens_q, cu_seqlens_k, max_seqlen_q, max_seqlen_k, is_causal, sm_scale,
                         return_lse, smooth_k, qk_granularity, kernel, smooth_v=True, rotate_qk=True):
    lse_shape = _lse_shape(q, LAYOUT_NHD, packed=True) if return_lse else (0,)
    return q.new_empty(q.shape), q.new_empty(lse_shape, dtype=torch.float32)


_keepalive = []  # torch.library.Library objects unregister their ops when garbage-collected

# Which registration `attention_forward` uses on torch >= 2.4. Both give the same operator to
# torch.compile, FakeTensor and CUDA graphs; they differ in host cost per call, because custom_op
# adds a Python autograd wrapper to every call. Measured on the H100 machine (torch 2.11, tiny
# problem, host-bound): op call via custom_op 87 us, via Library.define/impl 60 us, the ctypes
# launch alone 33 us (no_grad; 77 / 67 / 35 us under inference_mode).
PREFER_CUSTOM_OP = True


def _define(namespace, name, schema, impl, fake, use_custom_op):
    qualname = f"{namespace}::{name}"
    if use_custom_op and hasattr(torch.library, "custom_op"):
        op = torch.library.custom_op(qualname, impl, mutates_args=(), device_types="cuda", schema=schema)
        op.register_fake(fake)
        _keepalive.append(op)
    else:
        lib = torch.library.Library(namespace, "FRAGMENT")
        lib.define(name + schema)
        lib.impl(name, impl, "CUDA")
        register_fake = getattr(torch.library, "register_fake", None)
        if register_fake is not None:
            register_fake(qualname, fake, lib=lib)
        else:
            torch.library.impl_abstract(qualname, fake, lib=lib)
        _keepalive.append(lib)
    return getattr(getattr(torch.ops, namespace), name).default


def register(namespace=NAMESPACE, use_custom_op=PREFER_CUSTOM_OP):
    """Defines ``<namespace>::attention_forward`` and returns its OpOverload.

    torch >= 2.4 has torch.library.custom_op (+ register_fake). On torch 2.3 (no custom_op), the
    same operator is built from the lower-level Library.define / impl plus impl_abstract, which
    torch.compile and FakeTensor treat the same way. `use_custom_op=False` forces that path (tests
    exercise it under another namespace).
    """
    return _define(namespace, OP_NAME, _SCHEMA_ARGS, _attention_forward_cuda, _attention_forward_fake,
                   use_custom_op)


def register_varlen(namespace=NAMESPACE, use_custom_op=PREFER_CUSTOM_OP):
    """Defines ``<namespace>::varlen_forward`` (packed sequences) the same way."""
    return _define(namespace, VARLEN_OP_NAME, _VARLEN_SCHEMA_ARGS, _varlen_forward_cuda, _varlen_forward_fake,
                   use_custom_op)


attention_forward = register()
varlen_forward = register_varlen()
