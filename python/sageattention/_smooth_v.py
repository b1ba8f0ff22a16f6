"""V smoothing (``smooth_v=True`` of upstream's per-kernel functions) around the 16-bit P.V kernel.

Rows of the normalized attention matrix sum to 1, so with v_mean the per-channel mean of V over
tokens, attention(q, k, v) = attention(q, k, v - v_mean) + v_mean exactly in real arithmetic. It is
not a no-op in floating point: the kernel rounds P to 16 bits while the normalizer sums the unrounded
P, so a channel bias of V passes through P's rounding error unless it is taken out first (see
docs/design/quantization.md). The 16-bit kernel does not subtract the mean itself, so this runs it
as three torch passes (mean, subtraction, add-back); the LSE does not depend on V and is passed
through. (A kernel that smooths V itself simply finds a zero-mean V here.)
"""

import torch

from . import core
from ._validate import LAYOUT_HND

__all__ = ["attention"]


def _rows_with_keys(seqlen_q, seqlen_kv, layout, device):
    """Broadcastable mask of the query rows that see at least one key under bottom-right causal
    alignment (rows i < Nq - Nkv see none: the kernel outputs 0 there, which must stay 0)."""
    seen = torch.arange(seqlen_q, device=device) >= seqlen_q - seqlen_kv
    return seen.view(1, 1, seqlen_q, 1) if layout == LAYOUT_HND else seen.view(1, seqlen_q, 1, 1)


def attention(q, k, v, tensor_layout, is_causal, sm_scale, return_lse, *, smooth_k, qk_quant_gran,
              attn_mask, dropout_p, kernel="auto"):
    """``sageattn`` with V smoothing; same arguments, same return values."""
    layout = core.validate_call(
        q, k, v, tensor_layout, is_causal, sm_scale, return_lse, smooth_k=smooth_k,
        qk_quant_gran=qk_quant_gran, attn_mask=attn_mask, dropout_p=dropout_p, kernel=kernel)[1]
    token_dim, head_dim = (2, 1) if layout == LAYOUT_HND else (1, 2)
    v_mean = v.mean(dim=token_dim, keepdim=True, dtype=torch.float32)
    v_smooth = (v - v_mean).to(v.dtype)
    # With a mask any row may see no key; the LSE (-inf exactly there) tells which.
    want_lse = bool(return_lse) or attn_mask is not None
    result = core.sageattn(q, k, v_smooth, tensor_layout, is_causal, sm_scale, want_lse, smooth_k=smooth_k,
                           qk_quant_gran=qk_quant_gran, attn_mask=attn_mask, dropout_p=dropout_p,
                           kernel=kernel)
    out, lse = result if want_lse else (result, None)
    group = q.shape[head_dim] // v.shape[head_dim]
    if group > 1:  # GQA: query head h reads key/value head h // group
        v_mean = v_mean.repeat_interleave(group, dim=head_dim)
    restored = out.float() + v_mean
    seqlen_q, seqlen_kv = q.shape[token_dim], k.shape[token_dim]
    if attn_mask is not None:
        seen = lse > float("-inf")  # [B, Hq, Nq]
        seen = seen.unsqueeze(-1) if layout == LAYOUT_HND else seen.transpose(1, 2).unsqueeze(-1)
        restored = torch.where(seen, restored, 0.0)
    elif is_causal and seqlen_q > seqlen_kv:
        restored = torch.where(_rows_with_keys(seqlen_q, seqlen_kv, layout, out.device), restored, 0.0)
    out = restored.to(out.dtype)
    return (out, lse) if return_lse else out
