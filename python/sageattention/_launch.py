"""One attention call through the C ABI: tensors -> sageattn_params -> workspace -> forward.

This is the hot path of every call, so it avoids per-call Python work that can be cached: the
library handle, the per-device compute capability, the per-thread params struct and reason buffer,
small workspaces (per thread, device and stream), and a struct.Struct that writes the whole params
struct in one C call.
It runs only inside the op's real (CUDA) implementation, never while torch.compile traces.
"""

import ctypes
import struct
import threading

import torch

from . import _library
from ._abi import ABI_VERSION, DType, MaskType, SageattnMask, SageattnParams, SageattnTensor, Status
from ._validate import LAYOUT_HND

_DTYPE_CODES = {torch.float16: int(DType.FP16), torch.bfloat16: int(DType.BF16)}
_ALIGN_BYTES = 16

_sm_arch_by_device = {}
_tls = threading.local()
# sageattn_workspace_size depends only on sizes, options and V's strides (whether the 16-bit P.V
# kernel can read V with a tensor map), never on pointers; asking
# the library once per distinct key saves a C call (and its validation) per attention call. The
# forward call validates every field itself, so nothing is skipped. Bounded: a model has few shapes,
# a sweep that exceeds this just starts over.
_workspace_bytes_by_key = {}
_MAX_CACHED_SHAPES = 1024

# Workspaces up to this size are kept per thread, device and stream and reused by the next call
# there, instead of a torch allocation per call (~3.7 us of host time on the H100 machine, issue 4:
# the calls whose host time matters are the small ones). Safe without any synchronization: the
# calls of one thread on one stream run in order on the GPU, no other thread or stream touches the
# buffer, and it is never freed while the thread lives (then torch frees it on its own stream).
# Only on sageattn's eager path for recorded arguments (`checked`), and not while a CUDA graph is
# being captured: a graph's private pool must own what it replays, and torch.compile's CUDA graphs
# (the operator path) also route allocations made outside capture into their pool, where a kept
# buffer fails their check that every live allocation is an output.
_SMALL_WORKSPACE_BYTES = 1 << 20
_is_capturing = getattr(torch._C, "_cuda_isCurrentStreamCapturing", None) or torch.cuda.is_current_stream_capturing

# torch's raw-stream getter skips building a torch.cuda.Stream object (used by inductor's own
# generated code); fall back to the public API where it is missing.
_raw_stream = getattr(torch._C, "_cuda_getCurrentRawStream", None)
# The same for the current device: torch.cuda.current_device() re-checks lazy initialization first,
# which the CUDA tensors this module receives have already done.
_current_device = getattr(torch._C, "_cuda_getDevice", None) or torch.cuda.current_device


def _current_stream(device_index):
    if _raw_stream is not None:
        return _raw_stream(device_index)
    return torch.cuda.current_stream(device_index).cuda_stream


def sm_arch(device_index):
    """Compute capability as major*10 + minor, cached per device (the query is slow)."""
    arch = _sm_arch_by_device.get(device_index)
    if arch is None:
        major, minor = torch.cuda.get_device_capability(device_index)
        arch = _sm_arch_by_device[device_index] = major * 10 + minor
    return arch


def _workspace(nbytes, device, device_index, stream, keep_small):
    """A uint8 device buffer of at least `nbytes` for one launch on `stream` (see above)."""
    if nbytes > _SMALL_WORKSPACE_BYTES or not keep_small or _is_capturing():
        return torch.empty(nbytes, dtype=torch.uint8, device=device)
    cache = getattr(_tls, "workspaces", None)
    if cache is None:
        cache = _tls.workspaces = {}
    key = (device_index, stream)
    buffer = cache.get(key)
    if buffer is None:
        buffer = cache[key] = torch.empty(_SMALL_WORKSPACE_BYTES, dtype=torch.uint8, device=device)
    return buffer


def _thread_state():
    state = getattr(_tls, "state", None)
    if state is None:
        params = SageattnParams()
        state = _tls.state = (params, ctypes.c_size_t(), _library.reason_buffer(), ctypes.addressof(params))
    return state


# Byte offsets of the five pointers a recorded call changes (the data of q, k, v, out and the LSE):
# such a call copies the params bytes of its first call and writes only these.
_POINTER = struct.Struct("=Q")
_POINTER_OFFSETS = tuple(getattr(SageattnParams, name).offset + (SageattnTensor.data.offset if name != "lse" else 0)
                         for name in ("q", "k", "v", "out", "lse"))
_MASK_POINTER_OFFSETS = tuple(getattr(SageattnParams, name).offset + SageattnMask.data.offset
                              for name in ("mask", "block_mask"))
_PARAMS_BYTES = ctypes.sizeof(SageattnParams)


def pointer_aligned(t):
    """The kernels load rows in 16-byte vectors."""
    return t.data_ptr() % _ALIGN_BYTES == 0


def _token_head_strides(t, layout):
    s = t.stride()
    # (data, batch, head, token) as in sageattn_tensor.
    if layout == LAYOUT_HND:
        return t.data_ptr(), s[0], s[1], s[2]
    return t.data_ptr(), s[0], s[2], s[1]


_NO_MASK = (0, 0, 0, 0, 0)
_NOT_PACKED = (0, 0, 0, 0)  # cu_seqlens_q, cu_seqlens_kv, total_q, total_kv


def _mask_view(m):
    """(data, stride_batch, stride_head, stride_row, stride_column) of a 4-D mask view."""
    if m is None:
        return _NO_MASK
    s = m.stride()
    return m.data_ptr(), s[0], s[1], s[2], s[3]


def mask_type(attn_mask):
    """The sageattn_mask_type code of a (validated) attn_mask."""
    if attn_mask is None:
        return int(MaskType.NONE)
    if attn_mask.dtype == torch.bool:
        return int(MaskType.BOOL)
    return int(MaskType.ADDITIVE_FP32 if attn_mask.dtype == torch.float32 else MaskType.ADDITIVE)


def _mask_key(m, code):
    # The workspace of a masked call depends on the mask type (the sm90 kernel gets a boolean mask
    # as bits) and on which of batch / head the masks broadcast over.
    return None if m is None else (code, m.stride(0) == 0, m.stride(1) == 0)


def _packed_strides(t):
    # A packed [total, heads, head_dim] tensor as sageattn_tensor: no batch dimension (stride 0).
    s = t.stride()
    return t.data_ptr(), 0, s[1], s[0]


def forward(q, k, v, out, lse, layout, is_causal, sm_scale, smooth_k, qk_granularity, kernel,
            smooth_v=True, attn_mask=None, block_mask=None, packed=None, rotate_qk=True, checked=None):
    """Launches attention on the current stream of q's device; `lse` may be None.

    Preconditions (checked by the caller): tensors on one CUDA device, fp16/bf16, last dim
    contiguous, strides multiples of 8 elements, 16-byte aligned pointers, out shaped like q;
    attn_mask a [B, Hq, Nq, Nkv] view (bool, float32 or q's dtype) and block_mask a
    [B, Hq, ceil(Nq / 128), ceil(Nkv / 128)] bool view, or None.
    `packed`: None, or (cu_seqlens_q, cu_seqlens_k, max_seqlen_q, max_seqlen_k) for packed
    sequences: q, out [total_q, Hq, D] and k, v [total_k, Hkv, D] (`layout` unused), the cu_seqlens
    contiguous int32 [batch + 1] on q's device, lse [Hq, total_q]; no masks.
    `checked`: None, or an object whose `workspace_bytes` and `params` attributes hold (or receive,
    when None) the workspace size and the params bytes of exactly these arguments up to the data
    pointers (sageattn's core._CheckedCall).
    """
    lib = _library.load()
    device_index = q.device.index
    params, workspace_bytes, reason, params_address = _thread_state()
    if checked is not None and checked.params is not None:
        ctypes.memmove(params_address, checked.params, _PARAMS_BYTES)
        for offset, pointer in zip(_POINTER_OFFSETS, (q.data_ptr(), k.data_ptr(), v.data_ptr(), out.data_ptr(),
                                                      0 if lse is None else lse.data_ptr())):
            _POINTER.pack_into(params, offset, pointer)
        if attn_mask is not None:
            _POINTER.pack_into(params, _MASK_POINTER_OFFSETS[0], attn_mask.data_ptr())
        if block_mask is not None:
            _POINTER.pack_into(params, _MASK_POINTER_OFFSETS[1], block_mask.data_ptr())
        nbytes = checked.workspace_bytes
    else:
        nbytes = _pack_params(params, workspace_bytes, reason, lib, device_index, q, k, v, out, lse, layout,
                              is_causal, sm_scale, smooth_k, qk_granularity, kernel, smooth_v, attn_mask,
                              block_mask, packed, rotate_qk)
        if checked is not None:
            checked.workspace_bytes = nbytes
            checked.params = bytes(params)
    # Allocated through torch so the caching allocator reuses it and CUDA graph capture records it
    # in the graph's private pool; freeing it right after the launch is safe because the allocator
    # orders reuse on the same stream. Small ones are kept (_workspace).
    stream = _current_stream(device_index)
    on_current_device = _current_device() == device_index
    keep_small = checked is not None and on_current_device
    workspace = _workspace(nbytes, q.device, device_index, stream, keep_small) if nbytes else None
    workspace_ptr = workspace.data_ptr() if workspace is not None else None

    # The library launches on the CUDA runtime's current device; make it q's device.
    if not on_current_device:
        with torch.cuda.device(device_index):
            status = lib.sageattn_forward(params, workspace_ptr, nbytes, stream, reason, _library.REASON_CAPACITY)
    else:
        status = lib.sageattn_forward(params, workspace_ptr, nbytes, stream, reason, _library.REASON_CAPACITY)
    if status != Status.OK:
        raise _library.status_error(status, "sageattn_forward", reason)


def _pack_params(params, workspace_bytes, reason, lib, device_index, q, k, v, out, lse, layout, is_causal, sm_scale,
                 smooth_k, qk_granularity, kernel, smooth_v, attn_mask, block_mask, packed, rotate_qk):
    """Writes the whole params struct of one call; returns its workspace size (asked from the library
    once per distinct problem)."""
    if packed is not None:
        cu_q, cu_k, seqlen_q, seqlen_kv = packed
        batch = cu_q.shape[0] - 1
        total_q, heads_q, head_dim = q.shape
        total_kv, heads_kv, _ = k.shape
        views = (_packed_strides(q), _packed_strides(k), _packed_strides(v), _packed_strides(out))
        packing = (cu_q.data_ptr(), cu_k.data_ptr(), total_q, total_kv)
    else:
        if layout == LAYOUT_HND:
            batch, heads_q, seqlen_q, head_dim = q.shape
            _, heads_kv, seqlen_kv, _ = k.shape
        else:
            batch, seqlen_q, heads_q, head_dim = q.shape
            _, seqlen_kv, heads_kv, _ = k.shape
        views = (_token_head_strides(q, layout), _token_head_strides(k, layout), _token_head_strides(v, layout),
                 _token_head_strides(out, layout))
        packing = _NOT_PACKED
    attn_mask_type = mask_type(attn_mask)
    _library.PARAMS_PACKER.pack_into(
        params, 0,
        ABI_VERSION, batch, heads_q, heads_kv, seqlen_q, seqlen_kv, head_dim, _DTYPE_CODES[q.dtype],
        *views[0], *views[1], *views[2], *views[3],
        0 if lse is None else lse.data_ptr(),
        sm_scale, int(is_causal), int(smooth_k), qk_granularity, kernel, sm_arch(device_index),
        int(smooth_v),
        attn_mask_type, *_mask_view(attn_mask), *_mask_view(block_mask),
        *packing, int(rotate_qk),
    )
    # The workspace of packed sequences also depends on the totals (packing[2:]), that of the 16-bit
    # P.V kernel on V's strides (views[2][1:]: src/api/tensor_map.h).
    key = (batch, heads_q, heads_kv, seqlen_q, seqlen_kv, head_dim, q.dtype, lse is None, bool(smooth_k),
           qk_granularity, kernel, device_index, bool(smooth_v), _mask_key(attn_mask, attn_mask_type),
           _mask_key(block_mask, 0), packing[2:], views[2][1:])
    nbytes = _workspace_bytes_by_key.get(key)
    if nbytes is None:
        status = lib.sageattn_workspace_size(params, ctypes.byref(workspace_bytes), reason,
                                             _library.REASON_CAPACITY)
        if status != Status.OK:
            raise _library.status_error(status, "sageattn_workspace_size", reason)
        nbytes = workspace_bytes.value
        if len(_workspace_bytes_by_key) >= _MAX_CACHED_SHAPES:
            _workspace_bytes_by_key.clear()
        _workspace_bytes_by_key[key] = nbytes
    return nbytes


__all__ = ["forward", "sm_arch", "pointer_aligned"]
