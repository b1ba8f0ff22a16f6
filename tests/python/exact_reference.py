"""float64 attention for CPU tests, written independently of the package.

`varlen_attention` runs one dense attention over the whole packed batch with a block-diagonal mask
(token i of sequence s may see token j of sequence s only, and under causal only j <= i + len_k -
len_q, bottom-right); rows that see no key give 0. `dense_nhd` and `exact_sageattn` are float64
stand-ins for `core.sageattn`, for CPU tests of code that calls `sageattn`.
"""

import math

import torch

from sageattention import _validate

import torch_reference


def _sequence_ids(cu, total):
    ids = torch.full((total,), -1, dtype=torch.long)
    positions = torch.zeros(total, dtype=torch.long)
    for s in range(len(cu) - 1):
        ids[cu[s]:cu[s + 1]] = s
        positions[cu[s]:cu[s + 1]] = torch.arange(cu[s + 1] - cu[s])
    return ids, positions


def varlen_attention(q, k, v, cu_q, cu_k, is_causal=False, sm_scale=None):
    """q [Tq, Hq, D], k/v [Tk, Hkv, D]; cu_q/cu_k Python lists. Returns float64 [Tq, Hq, D] on q's device."""
    cu_q, cu_k = list(cu_q), list(cu_k)
    seq_q, pos_q = _sequence_ids(cu_q, q.shape[0])
    seq_k, pos_k = _sequence_ids(cu_k, k.shape[0])
    allowed = seq_q[:, None] == seq_k[None, :]
    if is_causal:
        len_q = torch.tensor([cu_q[s + 1] - cu_q[s] for s in range(len(cu_q) - 1)])[seq_q.clamp(min=0)]
        len_k = torch.tensor([cu_k[s + 1] - cu_k[s] for s in range(len(cu_k) - 1)])[seq_q.clamp(min=0)]
        allowed &= pos_k[None, :] <= (pos_q + len_k - len_q)[:, None]
    allowed = allowed.to(q.device)
    group = q.shape[1] // k.shape[1]
    qd, kd, vd = (t.double().transpose(0, 1) for t in (q, k, v))  # [H, T, D]
    kd, vd = kd.repeat_interleave(group, 0), vd.repeat_interleave(group, 0)
    scale = 1.0 / math.sqrt(q.shape[-1]) if sm_scale is None else sm_scale
    scores = torch.einsum("hid,hjd->hij", qd, kd) * scale
    scores = scores.masked_fill(~allowed, float("-inf"))
    lse = torch.logsumexp(scores, dim=-1, keepdim=True)
    p = torch.exp(scores - torch.where(torch.isinf(lse), torch.zeros_like(lse), lse))
    return torch.einsum("hij,hjd->hid", p, vd).transpose(0, 1)


def dense_nhd(q, k, v, tensor_layout="HND", is_causal=False, sm_scale=None, return_lse=False, *,
              attn_mask=None, **_):
    """Stands in for core.sageattn (float64, any device): same layouts, causal convention, LSE,
    attn_mask (an already combined element mask)."""
    out, lse = torch_reference.attention(q, k, v, sm_scale=sm_scale, is_causal=bool(is_causal),
                                         layout=tensor_layout.upper(), attn_mask=attn_mask)
    out = out.transpose(1, 2) if tensor_layout.upper() == "NHD" else out
    return (out, lse) if return_lse else out


def exact_sageattn(q, k, v, tensor_layout="HND", is_causal=False, sm_scale=None, return_lse=False, *,
                   smooth_k=True, qk_quant_gran="per_thread", attn_mask=None, block_mask=None,
                   dropout_p=0.0, kernel="auto", rotate_qk=True):
    """A CPU stand-in for `sageattn` with its signature and scalar checks (dropout is refused as
    sageattn refuses it) but exact attention, rounded to q's dtype; masks as sageattn defines them."""
    layout = _validate.check_scalars(tensor_layout, is_causal, sm_scale, return_lse, smooth_k,
                                     qk_quant_gran, attn_mask, dropout_p, kernel)[0]
    if block_mask is not None:
        nq, nkv = _validate._dims(q, layout)[2], _validate._dims(k, layout)[2]
        dense = torch_reference.expand_block_mask(block_mask, nq, nkv)
        if attn_mask is None:
            attn_mask = dense
        elif attn_mask.dtype == torch.bool:
            attn_mask = attn_mask & dense
        else:
            attn_mask = attn_mask.masked_fill(~dense, float("-inf"))
    result = dense_nhd(q, k, v, tensor_layout, is_causal, sm_scale, return_lse, attn_mask=attn_mask)
    out, lse = result if return_lse else (result, None)
    out = out.to(q.dtype)
    return (out, lse.float()) if return_lse else out


def exact_sageattn_varlen(q, k, v, cu_seqlens_q, cu_seqlens_k, max_seqlen_q, max_seqlen_k, is_causal=False,
                          sm_scale=None, smooth_k=True, **kwargs):
    """A CPU stand-in for `sageattn_varlen`: exact attention per sequence (varlen_attention), rounded
    to q's dtype; max_seqlen_* are checked as bounds."""
    bounds_q, bounds_k = cu_seqlens_q.tolist(), cu_seqlens_k.tolist()
    assert max(b - a for a, b in zip(bounds_q, bounds_q[1:])) <= max_seqlen_q
    assert max(b - a for a, b in zip(bounds_k, bounds_k[1:])) <= max_seqlen_k
    return varlen_attention(q, k, v, bounds_q, bounds_k, is_causal, sm_scale).to(q.dtype)
