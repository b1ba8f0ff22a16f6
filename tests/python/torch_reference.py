"""The tests' own float64 attention in torch, written independently of the package's helpers.

Bottom-right causal alignment; rows with no allowed key give out = 0 and lse = -inf. GQA by
repeating each KV head over its group of query heads. Chunked over query rows so that a
B=2, H=8, N=4096 problem fits in a few hundred MiB.
"""

import math

import torch


def expand_block_mask(block_mask, seqlen_q, seqlen_kv, tile=128):
    """A [.., ceil(Nq / tile), ceil(Nkv / tile)] block mask as the element mask it means."""
    dense = block_mask.repeat_interleave(tile, dim=-2).repeat_interleave(tile, dim=-1)
    return dense[..., :seqlen_q, :seqlen_kv]


def attention(q, k, v, sm_scale=None, is_causal=False, layout="HND", max_chunk_elements=1 << 26,
              attn_mask=None):
    """Returns (out, lse) in float64, out in HND [B, Hq, Nq, D], lse [B, Hq, Nq].

    attn_mask (SDPA's, broadcastable to [B, Hq, Nq, Nkv]): bool (True = attend) or float added to
    the scaled scores, NaN and values <= -1e30 as -inf, values above 1e30 as 1e30 (sageattn's
    documented rule);
    it combines with is_causal."""
    if layout == "NHD":
        q, k, v = q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)
    q, k, v = q.double(), k.double(), v.double()
    b, hq, nq, d = q.shape
    hkv, nkv = k.shape[1], k.shape[2]
    k = k.repeat_interleave(hq // hkv, dim=1)
    v = v.repeat_interleave(hq // hkv, dim=1)
    scale = 1.0 / math.sqrt(d) if sm_scale is None else sm_scale
    rows = max(1, max_chunk_elements // (b * hq * nkv))
    if attn_mask is not None:
        attn_mask = attn_mask.expand(b, hq, nq, nkv)
    outs, lses = [], []
    for start in range(0, nq, rows):
        stop = min(nq, start + rows)
        s = torch.einsum("bhid,bhjd->bhij", q[:, :, start:stop], k) * scale
        if is_causal:
            i = torch.arange(start, stop, device=q.device).view(-1, 1)
            j = torch.arange(nkv, device=q.device).view(1, -1)
            s = s.masked_fill(j > i + (nkv - nq), float("-inf"))
        if attn_mask is not None:
            m = attn_mask[:, :, start:stop]
            if m.dtype == torch.bool:
                s = s.masked_fill(~m, float("-inf"))
            else:
                m = m.double()
                m = torch.nan_to_num(m, nan=float("-inf"), posinf=1e30, neginf=float("-inf")).clamp(max=1e30)
                s = s + m.masked_fill(m <= -1e30, float("-inf"))
        lse = torch.logsumexp(s, dim=-1)
        safe = torch.where(torch.isinf(lse), torch.zeros_like(lse), lse)
        p = torch.exp(s - safe.unsqueeze(-1))
        outs.append(torch.einsum("bhij,bhjd->bhid", p, v))
        lses.append(lse)
    return torch.cat(outs, dim=2), torch.cat(lses, dim=2)


def to_hnd(t, layout):
    return t.transpose(1, 2) if layout == "NHD" else t


def rel_l1(out, ref):
    out, ref = out.double(), ref.double()
    return ((out - ref).abs().sum() / ref.abs().sum()).item()
