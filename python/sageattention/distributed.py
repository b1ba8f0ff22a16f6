"""Sequence parallelism over torch.distributed: attention over a sequence split across ranks.

Each rank of a process group holds one contiguous shard of the sequence (rank 0 the first tokens),
and gets back the attention output of its own query tokens against the keys of every rank:

- ``ring_attention``: k/v shards travel around the ring of ranks (point-to-point, overlapped with
  compute); every rank attends its queries to each shard and merges the partial results with their
  log-sum-exp. Communication per rank: the whole k/v once; any number of heads.
- ``ulysses_attention``: an all-to-all turns sequence shards into head shards (every rank then has
  the whole sequence for heads/P of the heads), one ordinary attention call, an all-to-all back.
  Communication per rank: q, k, v and out, each 1/P of it; needs heads_q divisible by P.

Both take the attention function as a parameter, ``attn_fn(q, k, v, tensor_layout=, is_causal=,
sm_scale=, return_lse=, **attn_kwargs)`` with ``sageattn``'s contract (returns out in q's layout,
or (out, lse) with lse [B, Hq, Nq] natural log), defaulting to ``sageattn``. The CPU tests pass a
float64 reference on the gloo backend; on GPUs the backend is NCCL.

Shard lengths may differ between ranks (``ring`` gathers them once, ``ulysses`` uses uneven
all-to-all splits). Causal masking is over global positions, so with ``is_causal`` each rank's q and
k/v shards must be the same tokens (equal q and k/v lengths on every rank); see docs/distributed.md.
"""

import torch
import torch.distributed as dist

from .core import sageattn

__all__ = ["ring_attention", "ulysses_attention", "merge_partial"]

_LAYOUTS = ("HND", "NHD")


# --- shapes ---------------------------------------------------------------------------------------


def _dims(t, layout):
    """(batch, heads, tokens, head_dim) of a 4-D tensor in `layout`."""
    if t.dim() != 4:
        raise ValueError(f"expected a 4-D tensor, got shape {tuple(t.shape)}")
    b, x, y, d = t.shape
    return (b, x, y, d) if layout == "HND" else (b, y, x, d)


def _check_local(q, k, v, layout):
    if layout not in _LAYOUTS:
        raise ValueError(f"tensor_layout must be 'HND' or 'NHD', got {layout!r}")
    bq, hq, nq, dq = _dims(q, layout)
    bk, hk, nk, dk = _dims(k, layout)
    if _dims(v, layout) != (bk, hk, nk, dk):
        raise ValueError(f"k and v must have the same shape, got {tuple(k.shape)} and {tuple(v.shape)}")
    if bq != bk or dq != dk:
        raise ValueError(f"q and k disagree on batch or head_dim: {tuple(q.shape)} vs {tuple(k.shape)}")
    if hk == 0 or hq % hk:
        raise ValueError(f"heads of q ({hq}) must be a multiple of heads of k/v ({hk})")
    if not (q.device == k.device == v.device):
        raise ValueError(f"q, k, v must be on one device, got {q.device}, {k.device}, {v.device}")
    return bq, hq, hk, nq, nk, dq


def _gather_shapes(local, device, group):
    """Every rank's (batch, heads_q, heads_kv, n_q, n_kv, head_dim), so that all ranks can check the
    same facts and raise the same error instead of some of them hanging in a transfer."""
    mine = torch.tensor(local, dtype=torch.int64, device=device)
    everyone = [torch.empty_like(mine) for _ in range(dist.get_world_size(group))]
    dist.all_gather(everyone, mine, group=group)
    return [tuple(int(x) for x in t.tolist()) for t in everyone]


def _check_agree(shapes):
    b, hq, hk, _, _, d = shapes[0]
    for rank, (b_r, hq_r, hk_r, _, _, d_r) in enumerate(shapes):
        if (b_r, hq_r, hk_r, d_r) != (b, hq, hk, d):
            raise ValueError(
                f"ranks disagree on (batch, heads_q, heads_kv, head_dim): rank 0 has {(b, hq, hk, d)}, "
                f"rank {rank} has {(b_r, hq_r, hk_r, d_r)}")


def _group_info(group):
    if not dist.is_available() or not dist.is_initialized():
        raise RuntimeError("torch.distributed is not initialized: call init_process_group first")
    return dist.get_rank(group), dist.get_world_size(group)


def _global_rank(group, group_rank):
    return group_rank if group is None else dist.get_global_rank(group, group_rank)


# --- merging partial attention ----------------------------------------------------------------------


def merge_partial(out_a, lse_a, out_b, lse_b, layout="HND"):
    """Attention over keys A ∪ B from attention over A and over B (disjoint key sets).

    out_*: [B, H, N, D] ("HND") or [B, N, H, D] ("NHD"); lse_*: [B, H, N], natural log. Returns
    (out, lse) in the promoted precision of the inputs (at least float32):
    lse = logaddexp(lse_a, lse_b), out = exp(lse_a - lse) * out_a + exp(lse_b - lse) * out_b.

    Rows whose both LSEs are -inf (they saw no key) stay out = 0, lse = -inf, without NaN: the
    shift is taken as 0 there and the zero weight sum as 1.
    """
    dtype = torch.promote_types(torch.promote_types(out_a.dtype, out_b.dtype), torch.float32)
    lse_dtype = torch.promote_types(torch.promote_types(lse_a.dtype, lse_b.dtype), torch.float32)
    lse_a, lse_b = lse_a.to(lse_dtype), lse_b.to(lse_dtype)
    shift = torch.maximum(lse_a, lse_b)
    shift = torch.where(torch.isneginf(shift), torch.zeros_like(shift), shift)
    w_a, w_b = torch.exp(lse_a - shift), torch.exp(lse_b - shift)
    total = w_a + w_b
    lse = shift + torch.log(total)
    total = torch.where(total == 0, torch.ones_like(total), total)
    w_a, w_b = (w / total for w in (w_a, w_b))
    if layout == "NHD":
        w_a, w_b = w_a.transpose(1, 2), w_b.transpose(1, 2)
    out = out_a.to(dtype) * w_a.unsqueeze(-1).to(dtype) + out_b.to(dtype) * w_b.unsqueeze(-1).to(dtype)
    return out, lse


# --- ring attention ------------------------------------------------------------------------------------


def ring_attention(q, k, v, *, group=None, is_causal=False, sm_scale=None, tensor_layout="HND",
                   return_lse=False, attn_fn=sageattn, **attn_kwargs):
    """Attention of this rank's query shard against the k/v shards of all ranks of `group`.

    q: [B, Hq, Nq_r, D] ("HND") or [B, Nq_r, Hq, D] ("NHD"), this rank's tokens; k, v likewise with
    Hkv heads (Hq % Hkv == 0). Nq_r and Nkv_r may differ between ranks; batch, heads and head_dim
    must not. With is_causal, rank r's q and k/v are the same tokens (Nq_r == Nkv_r) and query i
    sees the keys at global positions <= i: shards of lower ranks are fully visible, the own shard
    is causal, higher ranks' shards are skipped (not computed; still forwarded around the ring).

    Returns out like q (q's dtype), or (out, lse) with lse [B, Hq, Nq_r] (float32 or finer).
    `attn_kwargs` go to every `attn_fn` call (e.g. qk_quant_gran for sageattn).
    """
    rank, world = _group_info(group)
    shapes = _gather_shapes(_check_local(q, k, v, tensor_layout), q.device, group)
    _check_agree(shapes)
    if is_causal:
        ragged = [(r, s[3], s[4]) for r, s in enumerate(shapes) if s[3] != s[4]]
        if ragged:
            raise ValueError(
                "causal ring attention needs each rank's q and k/v to be the same tokens (equal lengths); "
                f"(rank, n_q, n_kv) = {ragged}")

    def attend(k_blk, v_blk, causal):
        return attn_fn(q, k_blk, v_blk, tensor_layout=tensor_layout, is_causal=causal,
                       sm_scale=sm_scale, return_lse=True, **attn_kwargs)

    # Point-to-point transfers need contiguous buffers of a size the receiver knows in advance.
    k_blk, v_blk = k.contiguous(), v.contiguous()
    send_to, recv_from = _global_rank(group, (rank + 1) % world), _global_rank(group, (rank - 1) % world)
    out = lse = None
    for step in range(world):
        source = (rank - step) % world   # whose k/v shard this rank holds now
        pending = []
        if step < world - 1:
            # Receive the next shard while computing on this one.
            n_next = shapes[(source - 1) % world][4]
            k_next = k_blk.new_empty(_resized(k_blk.shape, tensor_layout, n_next))
            v_next = v_blk.new_empty(_resized(v_blk.shape, tensor_layout, n_next))
            pending = dist.batch_isend_irecv([
                dist.P2POp(dist.isend, k_blk, send_to, group),
                dist.P2POp(dist.isend, v_blk, send_to, group),
                dist.P2POp(dist.irecv, k_next, recv_from, group),
                dist.P2POp(dist.irecv, v_next, recv_from, group),
            ])
        if not (is_causal and source > rank):
            part_out, part_lse = attend(k_blk, v_blk, is_causal and source == rank)
            if out is None:
                out, lse = part_out, part_lse
            else:
                out, lse = merge_partial(out, lse, part_out, part_lse, tensor_layout)
        for work in pending:
            work.wait()
        if pending:
            k_blk, v_blk = k_next, v_next
    out = out.to(q.dtype)
    return (out, lse) if return_lse else out


def _resized(shape, layout, tokens):
    shape = list(shape)
    shape[2 if layout == "HND" else 1] = tokens
    return shape


# --- Ulysses (all-to-all over heads) -------------------------------------------------------------------


def _seq_to_heads(x, lengths, rank, group):
    """[B, n_rank, H, D] sequence shard -> [B, sum(lengths), H/P, D]: this rank's head group over
    the whole sequence. Rank p's head group is heads [p*H/P, (p+1)*H/P)."""
    world = len(lengths)
    b, n, h, d = x.shape
    hp = h // world
    # Chunk p (sent to rank p) is head group p of this rank's tokens.
    send = x.reshape(b, n, world, hp, d).permute(2, 0, 1, 3, 4).contiguous()
    recv = x.new_empty(b * sum(lengths) * hp * d)
    dist.all_to_all_single(recv, send.reshape(-1), [b * m * hp * d for m in lengths],
                           [b * n * hp * d] * world, group=group)
    chunks = recv.split([b * m * hp * d for m in lengths])
    return torch.cat([c.view(b, m, hp, d) for c, m in zip(chunks, lengths)], dim=1)


def _heads_to_seq(y, lengths, rank, group):
    """Inverse of _seq_to_heads: [B, N, H/P, D] -> [B, lengths[rank], H, D]."""
    world = len(lengths)
    b, _, hp, d = y.shape
    n = lengths[rank]
    send = torch.cat([c.reshape(-1) for c in y.split(lengths, dim=1)])
    recv = y.new_empty(world * b * n * hp * d)
    dist.all_to_all_single(recv, send, [b * n * hp * d] * world, [b * m * hp * d for m in lengths],
                           group=group)
    return recv.view(world, b, n, hp, d).permute(1, 2, 0, 3, 4).reshape(b, n, world * hp, d)


def _kv_heads_for(heads_q, heads_kv, world):
    """How many times to repeat each k/v head so that the k/v heads split evenly over the ranks
    with every query head keeping its own k/v head (GQA with fewer k/v heads than ranks, e.g.
    MQA). heads_q % world == 0 guarantees the factor divides the group size."""
    factor = 1
    while (heads_kv * factor) % world:
        factor += 1
    return factor


def ulysses_attention(q, k, v, *, group=None, is_causal=False, sm_scale=None, tensor_layout="HND",
                      return_lse=False, attn_fn=sageattn, **attn_kwargs):
    """Attention of this rank's sequence shard, computed head-parallel after an all-to-all.

    Shapes and return value as in ``ring_attention``. Needs Hq divisible by the group size. When
    Hkv is not, each k/v head is repeated (as in GQA) until it is, which costs communication but
    keeps every query head on its own k/v head. Sequence lengths may differ between ranks; with
    is_causal every rank's q and k/v must be the same tokens (one attention call then sees the
    whole sequence, so the causal mask is the plain one).
    """
    rank, world = _group_info(group)
    local = _check_local(q, k, v, tensor_layout)
    shapes = _gather_shapes(local, q.device, group)
    _check_agree(shapes)
    _, heads_q, heads_kv, _, _, _ = local
    if heads_q % world:
        raise ValueError(f"Ulysses attention needs heads_q ({heads_q}) divisible by the group size ({world})")
    if is_causal and any(s[3] != s[4] for s in shapes):
        raise ValueError("causal Ulysses attention needs each rank's q and k/v to be the same tokens "
                         f"(equal lengths); (n_q, n_kv) per rank = {[(s[3], s[4]) for s in shapes]}")
    q_lengths, kv_lengths = [s[3] for s in shapes], [s[4] for s in shapes]

    def nhd(t):
        return t if tensor_layout == "NHD" else t.transpose(1, 2)

    q_n, k_n, v_n = nhd(q), nhd(k), nhd(v)
    factor = _kv_heads_for(heads_q, heads_kv, world)
    if factor > 1:
        k_n, v_n = k_n.repeat_interleave(factor, dim=2), v_n.repeat_interleave(factor, dim=2)
    q_h = _seq_to_heads(q_n, q_lengths, rank, group)
    k_h = _seq_to_heads(k_n, kv_lengths, rank, group)
    v_h = _seq_to_heads(v_n, kv_lengths, rank, group)
    result = attn_fn(q_h, k_h, v_h, tensor_layout="NHD", is_causal=is_causal, sm_scale=sm_scale,
                     return_lse=return_lse, **attn_kwargs)
    out_h, lse_h = result if return_lse else (result, None)
    out = _heads_to_seq(out_h.to(q.dtype), q_lengths, rank, group)
    if tensor_layout == "HND":
        out = out.transpose(1, 2).contiguous()
    if not return_lse:
        return out
    # lse [B, H/P, N] travels as a [B, N, H/P, 1] tensor and comes back as [B, n, H, 1].
    lse = _heads_to_seq(lse_h.transpose(1, 2).unsqueeze(-1).contiguous(), q_lengths, rank, group)
    return out, lse.squeeze(-1).transpose(1, 2).contiguous()
