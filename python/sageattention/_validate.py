"""Argument checks and input canonicalization for ``sageattn``.

Everything here runs on shapes, dtypes, devices and strides only (never on tensor values, never
through ctypes), so torch.compile traces it without graph breaks; the checks become guards.

The checks run structure-first (types, layout, shapes, dtypes, unsupported features) and device
last, so every mistake gets its own specific message even on CPU tensors.
"""

import math

import torch

from ._abi import BLOCK_MASK_TILE, GRANULARITY_CODES, KERNEL_CODES

LAYOUT_HND = 0
LAYOUT_NHD = 1
LAYOUT_CODES = {"HND": LAYOUT_HND, "NHD": LAYOUT_NHD}

SUPPORTED_DTYPES = (torch.float16, torch.bfloat16)
MAX_HEAD_DIM = 256
SM90_MAX_HEAD_DIM = 128  # the sm90 kernel's 16-bit P.V (src/common/tiling.h)
# The C library's size limits (src/api/check.cpp), checked here too so that a call rejected there
# is rejected before any work and `supports()` knows about it: batch and heads index CUDA grid
# dimensions y/z, tokens are int32 indices with room for tile padding, and the pre-pass runs one
# CTA per 128 rows of q, of k and of v (FP8 V of the sm90 kernel, counted whatever the kernel) on a
# 1-D grid.
MAX_GRID_YZ = 65535
MAX_SEQLEN = 1 << 30
MAX_GRID_X = 2 ** 31 - 1
PREPASS_ROWS_PER_BLOCK = 128
# The kernels load rows in 16-byte vectors: 8 fp16/bf16 elements.
ALIGN_ELEMENTS = 8


def _dims(t, layout):
    """(batch, heads, tokens, head_dim) of a 4-D tensor in the given layout."""
    b, x, y, d = t.shape
    return (b, x, y, d) if layout == LAYOUT_HND else (b, y, x, d)


def check_flag(name, flag):
    # Only Python bools/ints: a tensor here would make the call depend on its value.
    if not isinstance(flag, (bool, int)):
        raise TypeError(f"{name} must be a bool, got {type(flag).__name__}")


def check_scalars(tensor_layout, is_causal, sm_scale, return_lse, smooth_k, qk_quant_gran,
                  attn_mask, dropout_p, kernel):
    """Validates the non-tensor arguments. Returns (layout, sm_scale or None, granularity, kernel)."""
    if attn_mask is not None and not isinstance(attn_mask, torch.Tensor):
        raise TypeError(f"attn_mask must be a torch.Tensor or None, got {type(attn_mask).__name__}")
    if isinstance(dropout_p, (torch.Tensor, bool)) or not isinstance(dropout_p, (int, float)):
        raise TypeError(f"dropout_p must be a Python number, got {type(dropout_p).__name__}")
    if dropout_p != 0:
        raise NotImplementedError(
            f"sageattn is an inference kernel and does not support dropout (dropout_p={dropout_p}); "
            "pass dropout_p=0.0."
        )
    if not isinstance(tensor_layout, str) or tensor_layout.upper() not in LAYOUT_CODES:
        raise ValueError(f'tensor_layout must be "HND" or "NHD", got {tensor_layout!r}')
    layout = LAYOUT_CODES[tensor_layout.upper()]
    for name, flag in (("is_causal", is_causal), ("return_lse", return_lse), ("smooth_k", smooth_k)):
        check_flag(name, flag)
    if sm_scale is not None:
        if isinstance(sm_scale, (torch.Tensor, bool)) or not isinstance(sm_scale, (int, float)):
            raise TypeError(f"sm_scale must be a Python float or None, got {type(sm_scale).__name__}")
        sm_scale = float(sm_scale)
        # Comparisons only: under torch.compile a float argument may arrive symbolic, and
        # math.isfinite on it cannot be traced (graph break / error with fullgraph=True).
        if not (0.0 < sm_scale < math.inf):
            raise ValueError(f"sm_scale must be finite and > 0, got {sm_scale}")
    if qk_quant_gran not in GRANULARITY_CODES:
        raise ValueError(f"qk_quant_gran must be one of {sorted(GRANULARITY_CODES)}, got {qk_quant_gran!r}")
    if kernel not in KERNEL_CODES:
        raise ValueError(f"kernel must be one of {sorted(KERNEL_CODES)}, got {kernel!r}")
    return layout, sm_scale, int(GRANULARITY_CODES[qk_quant_gran]), int(KERNEL_CODES[kernel])


def check_tensor_shapes(q, k, v, layout, allow_empty_tokens=False):
    """The structural checks of q, k, v (types, shapes, dtypes, sizes). Returns the head_dim.
    `allow_empty_tokens`: packed sequences (sageattn_varlen) may have no tokens at all."""
    names = ("q", "k", "v")
    tensors = (q, k, v)
    layout_name = "[batch, heads, tokens, head_dim]" if layout == LAYOUT_HND else "[batch, tokens, heads, head_dim]"
    for name, t in zip(names, tensors):
        if not isinstance(t, torch.Tensor):
            raise TypeError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
        if t.dim() != 4:
            raise ValueError(f"{name} must be 4-D {layout_name} for this tensor_layout, got shape {tuple(t.shape)}")
    bq, hq, nq, dq = _dims(q, layout)
    bk, hk, nk, dk = _dims(k, layout)
    bv, hv, nv, dv = _dims(v, layout)
    if not (bq == bk == bv):
        raise ValueError(f"q, k, v must have the same batch size, got {bq}, {bk}, {bv}")
    if hk != hv or nk != nv:
        raise ValueError(f"k and v must have the same heads and tokens, got k {tuple(k.shape)} and v {tuple(v.shape)}")
    if dq != dk:
        raise ValueError(f"q and k must have the same head_dim, got {dq} and {dk}")
    for name, size in (("batch", bq), ("heads of q", hq), ("heads of k/v", hk),
                       ("seqlen of q", nq), ("seqlen of k/v", nk), ("head_dim", dq)):
        if size == 0 and not (allow_empty_tokens and name.startswith("seqlen")):
            raise ValueError(f"{name} is 0: sageattn needs non-empty inputs")
    if dv != dq:
        raise NotImplementedError(f"v head_dim ({dv}) different from q/k head_dim ({dq}) is not supported yet")
    if hq % hk != 0:
        raise ValueError(f"heads of q ({hq}) must be a multiple of heads of k/v ({hk}) for GQA/MQA")
    for name, t in zip(names, tensors):
        if t.dtype not in SUPPORTED_DTYPES:
            raise ValueError(
                f"{name} has dtype {t.dtype}; sageattn supports torch.float16 and torch.bfloat16 "
                "(cast the inputs first)"
            )
    if not (q.dtype == k.dtype == v.dtype):
        raise ValueError(f"q, k, v must have the same dtype, got {q.dtype}, {k.dtype}, {v.dtype}")
    if dq > MAX_HEAD_DIM:
        raise NotImplementedError(f"head_dim {dq} > {MAX_HEAD_DIM} is not supported yet")
    _check_size_limits(bq, hq, hk, nq, nk)
    return dq


def check_tensor_devices(q, k, v):
    """The device and grad-mode half of check_tensors (it runs last, so that structural mistakes
    get their own message even on CPU tensors)."""
    for name, t in zip(("q", "k", "v"), (q, k, v)):
        if t.device.type != "cuda":
            raise ValueError(
                f"{name} is on {t.device}; sageattn runs on CUDA GPUs only (use "
                "torch.nn.functional.scaled_dot_product_attention on other devices)"
            )
    if not (q.device == k.device == v.device):
        raise ValueError(f"q, k, v must be on the same device, got {q.device}, {k.device}, {v.device}")
    if torch.is_grad_enabled() and (q.requires_grad or k.requires_grad or v.requires_grad):
        raise RuntimeError(
            "sageattn is forward-only (no backward pass): call it under torch.no_grad() or "
            "torch.inference_mode(), or pass detached tensors"
        )


def check_tensors(q, k, v, layout):
    """Validates q, k, v. Returns the head_dim."""
    head_dim = check_tensor_shapes(q, k, v, layout)
    check_tensor_devices(q, k, v)
    return head_dim


def _check_broadcast(name, mask, target, target_text):
    shape = tuple(mask.shape)
    ok = mask.dim() <= 4 and all(m in (1, t) for m, t in zip(shape[::-1], target[::-1]))
    if not ok:
        raise ValueError(f"{name} of shape {shape} is not broadcastable to {target_text} = {tuple(target)}")


def _check_mask_tensor(name, mask, q):
    if mask.device != q.device:
        raise ValueError(f"{name} is on {mask.device}; it must be on the device of q ({q.device})")
    if torch.is_grad_enabled() and mask.requires_grad:
        raise RuntimeError(f"sageattn is forward-only (no backward pass): {name} requires grad; detach it")


def check_masks(q, k, layout, attn_mask, block_mask):
    """Validates the masks against q and k (already checked) and returns them as the kernels read
    them: attn_mask expanded to [B, Hq, Nq, Nkv] (a view), block_mask expanded to
    [B, Hq, ceil(Nq / 128), ceil(Nkv / 128)] (a view; a bool is the byte the C ABI reads); None
    stays None. Idempotent: the operator checks the expanded masks again.

    attn_mask follows SDPA: bool (True = attend) or additive float (float32 or q's dtype, added to
    the scaled scores; -inf masks), broadcastable to [B, Hq, Nq, Nkv] whatever tensor_layout is.
    """
    if attn_mask is None and block_mask is None:  # every unmasked call: nothing to compute
        return None, None
    b, hq, nq, _ = _dims(q, layout)
    nkv = _dims(k, layout)[2]
    if attn_mask is not None:
        if not isinstance(attn_mask, torch.Tensor):
            raise TypeError(f"attn_mask must be a torch.Tensor or None, got {type(attn_mask).__name__}")
        if attn_mask.dtype not in (torch.bool, torch.float32, q.dtype):
            raise ValueError(
                f"attn_mask has dtype {attn_mask.dtype}; it must be torch.bool (True = attend), or float "
                f"(torch.float32 or q's dtype {q.dtype}) to add to the scores, as in SDPA")
        _check_broadcast("attn_mask", attn_mask, (b, hq, nq, nkv), "[batch, heads_q, seqlen_q, seqlen_kv]")
        _check_mask_tensor("attn_mask", attn_mask, q)
        tile = BLOCK_MASK_TILE
        codes = b * hq * ((nq + tile - 1) // tile) * ((nkv + tile - 1) // tile)
        if codes > MAX_GRID_X:  # the mask pass runs one CTA per 128 x 128 tile
            raise NotImplementedError(
                f"the mask is too large: {codes} tiles of {tile} x {tile} exceed the CUDA grid limit of "
                f"{MAX_GRID_X}; split the batch")
        attn_mask = attn_mask.expand(b, hq, nq, nkv)
    if block_mask is not None:
        if not isinstance(block_mask, torch.Tensor):
            raise TypeError(f"block_mask must be a torch.Tensor or None, got {type(block_mask).__name__}")
        if block_mask.dtype != torch.bool:
            raise ValueError(f"block_mask must be torch.bool (True = compute the block), got {block_mask.dtype}")
        tile = BLOCK_MASK_TILE
        blocks = (b, hq, (nq + tile - 1) // tile, (nkv + tile - 1) // tile)
        _check_broadcast("block_mask", block_mask, blocks,
                         f"[batch, heads_q, ceil(seqlen_q / {tile}), ceil(seqlen_kv / {tile})]")
        _check_mask_tensor("block_mask", block_mask, q)
        block_mask = block_mask.expand(*blocks)
    return attn_mask, block_mask


def _check_size_limits(batch, heads_q, heads_kv, seqlen_q, seqlen_kv):
    if batch > MAX_GRID_YZ or heads_q > MAX_GRID_YZ:
        raise NotImplementedError(
            f"batch and heads of q must be at most {MAX_GRID_YZ} (got {batch}, {heads_q}): split the batch")
    if seqlen_q > MAX_SEQLEN or seqlen_kv > MAX_SEQLEN:
        raise NotImplementedError(
            f"sequence lengths must be at most {MAX_SEQLEN} (got {seqlen_q}, {seqlen_kv})")
    rows = PREPASS_ROWS_PER_BLOCK
    blocks = (batch * heads_q * ((seqlen_q + rows - 1) // rows)
              + 2 * batch * heads_kv * ((seqlen_kv + rows - 1) // rows))
    if blocks > MAX_GRID_X:
        raise NotImplementedError(
            f"the problem is too large: {blocks} blocks of {rows} rows of q, k and v exceed the CUDA grid "
            f"limit of {MAX_GRID_X}; split the batch")


def strides_ready(t):
    """True when the kernels can read `t` in place, as far as strides tell: head dim contiguous and
    every other stride a multiple of 16 bytes.

    The start pointer is checked by the op right before the launch (ops._attention_forward_cuda):
    neither data_ptr nor storage_offset can be read while torch.compile traces this code.
    """
    s = t.stride()
    if len(s) != 4:  # packed [tokens, heads, head_dim] tensors (sageattn_varlen)
        return s[-1] == 1 and all(x % ALIGN_ELEMENTS == 0 for x in s[:-1])
    return (s[3] == 1 and s[0] % ALIGN_ELEMENTS == 0 and s[1] % ALIGN_ELEMENTS == 0
            and s[2] % ALIGN_ELEMENTS == 0)


def canonicalize(t, padded_head_dim):
    """`t` itself when the kernels can read it, else a contiguous copy, zero-padded along the head
    dim to `padded_head_dim` when that is larger.

    Zero columns add 0 to every q.k dot product and produce zero output columns, so padding does
    not change the attention result as long as sm_scale comes from the original head_dim.
    """
    pad = padded_head_dim - t.shape[3]
    if pad > 0:
        # .contiguous(): pad may keep a channels-last-like memory format of a 4-D input.
        return torch.nn.functional.pad(t, (0, pad)).contiguous()
    if strides_ready(t):
        return t
    return t.clone(memory_format=torch.contiguous_format)
