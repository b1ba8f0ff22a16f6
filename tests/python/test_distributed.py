"""Sequence parallelism (sageattention.distributed) on the CPU: 2 processes on the gloo backend, a
float64 attention function, results compared with one float64 attention over the whole sequence.

All cases run in one spawn of 2 processes (starting them costs seconds, the cases milliseconds);
each rank saves its output shards, and every case is then its own test. The inputs are random, the
shard lengths odd and, where the algorithm allows, different between the ranks; float64 throughout,
so anything beyond rounding (a wrong merge weight, a shard attended twice or not at all, a wrong
head mapping after the all-to-all) fails the 1e-10 bound by orders of magnitude.
"""

import os
import traceback
from datetime import timedelta

import pytest
import torch

from sageattention.distributed import merge_partial

import torch_reference

WORLD = 2
TOL = 1e-10

# name -> (algorithm, layout, is_causal, heads_q, heads_kv, head_dim, q lengths, k/v lengths, sm_scale)
CASES = {
    "ring_hnd_uneven_cross": ("ring", "HND", False, 4, 4, 16, (13, 22), (9, 30), None),
    "ring_nhd_gqa_scale": ("ring", "NHD", False, 4, 2, 8, (7, 5), (11, 3), 0.3),
    "ring_causal_gqa_uneven": ("ring", "HND", True, 4, 2, 16, (13, 22), (13, 22), None),
    "ring_causal_mqa_nhd": ("ring", "NHD", True, 3, 1, 24, (17, 17), (17, 17), None),
    "ulysses_nhd_gqa_uneven_cross": ("ulysses", "NHD", False, 4, 2, 16, (13, 22), (9, 30), None),
    "ulysses_causal_mqa_hnd": ("ulysses", "HND", True, 4, 1, 16, (17, 17), (17, 17), None),
    "ulysses_causal_uneven_nhd": ("ulysses", "NHD", True, 6, 3, 8, (5, 28), (5, 28), 0.2),
}
BATCH = 2

# name -> (algorithm, what rank 0 / rank 1 pass, the text the ValueError must contain)
ERROR_CASES = {
    "ring_causal_needs_same_tokens": ("ring", dict(causal=True, q_lens=(13, 22), kv_lens=(9, 30)), "same tokens"),
    "ulysses_causal_needs_same_tokens": ("ulysses", dict(causal=True, q_lens=(13, 22), kv_lens=(9, 30)), "same tokens"),
    "ulysses_heads_indivisible": ("ulysses", dict(hq=3, hkv=1), "divisible"),
    "ring_ranks_disagree": ("ring", dict(hq_rank1=8), "disagree"),
}


def reference_attn(q, k, v, tensor_layout="HND", is_causal=False, sm_scale=None, return_lse=False):
    """float64 attention with sageattn's signature and conventions (bottom-right causal)."""
    out, lse = torch_reference.attention(q, k, v, sm_scale=sm_scale, is_causal=is_causal, layout=tensor_layout)
    if tensor_layout == "NHD":
        out = out.transpose(1, 2)
    return (out, lse) if return_lse else out


def full_inputs(name, heads_q, heads_kv, head_dim, q_lens, kv_lens):
    """Whole-sequence q, k, v in HND, float64, the same in every process."""
    gen = torch.Generator().manual_seed(sum(map(ord, name)))
    q = torch.randn(BATCH, heads_q, sum(q_lens), head_dim, generator=gen, dtype=torch.float64)
    k = torch.randn(BATCH, heads_kv, sum(kv_lens), head_dim, generator=gen, dtype=torch.float64)
    v = torch.randn(BATCH, heads_kv, sum(kv_lens), head_dim, generator=gen, dtype=torch.float64)
    return q, k, v


def shard(t, lengths, rank, layout):
    start = sum(lengths[:rank])
    t = t[:, :, start:start + lengths[rank]]
    return t.transpose(1, 2) if layout == "NHD" else t


def _run_case(algorithms, rank, name):
    algo, layout, causal, hq, hkv, d, q_lens, kv_lens, scale = CASES[name]
    q, k, v = full_inputs(name, hq, hkv, d, q_lens, kv_lens)
    q, k, v = shard(q, q_lens, rank, layout), shard(k, kv_lens, rank, layout), shard(v, kv_lens, rank, layout)
    fn = algorithms[algo]
    out, lse = fn(q, k, v, is_causal=causal, sm_scale=scale, tensor_layout=layout, return_lse=True,
                  attn_fn=reference_attn)
    plain = fn(q, k, v, is_causal=causal, sm_scale=scale, tensor_layout=layout, attn_fn=reference_attn)
    return {"out": out, "lse": lse, "plain_equal": bool(torch.equal(plain, out))}


def _run_error_case(algorithms, rank, name):
    algo, spec, _ = ERROR_CASES[name]
    hq = spec.get("hq", 4)
    if rank == 1:
        hq = spec.get("hq_rank1", hq)
    hkv = spec.get("hkv", 2)
    q_lens, kv_lens = spec.get("q_lens", (9, 9)), spec.get("kv_lens", (9, 9))
    q = torch.randn(1, hq, q_lens[rank], 8, dtype=torch.float64)
    k = torch.randn(1, hkv, kv_lens[rank], 8, dtype=torch.float64)
    try:
        algorithms[algo](q, k, k, is_causal=spec.get("causal", False), attn_fn=reference_attn)
    except ValueError as exc:
        return {"error": str(exc)}
    return {"error": None}


def _worker(rank, init_file, out_dir):
    import torch.distributed as dist

    from sageattention import distributed

    torch.set_num_threads(1)  # two processes share the CI machine's cores
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=WORLD,
                            timeout=timedelta(seconds=60))
    algorithms = {"ring": distributed.ring_attention, "ulysses": distributed.ulysses_attention}
    results = {}
    try:
        for name in CASES:
            try:
                results[name] = _run_case(algorithms, rank, name)
            except Exception:  # reported by the case's own test, not lost in the spawn
                results[name] = {"crash": traceback.format_exc()}
        for name in ERROR_CASES:
            results[name] = _run_error_case(algorithms, rank, name)
    finally:
        torch.save(results, os.path.join(out_dir, f"rank{rank}.pt"))
        dist.destroy_process_group()


@pytest.fixture(scope="module")
def shard_results(tmp_path_factory):
    import torch.multiprocessing as mp

    folder = tmp_path_factory.mktemp("distributed")
    mp.spawn(_worker, args=(str(folder / "init"), str(folder)), nprocs=WORLD, join=True)
    return [torch.load(folder / f"rank{r}.pt") for r in range(WORLD)]


@pytest.mark.parametrize("name", sorted(CASES))
def test_matches_full_attention(shard_results, name):
    algo, layout, causal, hq, hkv, d, q_lens, kv_lens, scale = CASES[name]
    per_rank = [results[name] for results in shard_results]
    for rank, res in enumerate(per_rank):
        assert "crash" not in res, f"rank {rank}:\n{res['crash']}"
    q, k, v = full_inputs(name, hq, hkv, d, q_lens, kv_lens)
    ref_out, ref_lse = torch_reference.attention(q, k, v, sm_scale=scale, is_causal=causal)
    for rank, res in enumerate(per_rank):
        out = res["out"].transpose(1, 2) if layout == "NHD" else res["out"]
        start = sum(q_lens[:rank])
        want_out = ref_out[:, :, start:start + q_lens[rank]]
        want_lse = ref_lse[:, :, start:start + q_lens[rank]]
        assert out.shape == want_out.shape and res["lse"].shape == want_lse.shape, f"rank {rank}: shapes"
        assert out.dtype == torch.float64
        out_err = (out - want_out).abs().max().item()
        lse_err = (res["lse"] - want_lse).abs().max().item()
        assert out_err <= TOL and lse_err <= TOL, f"rank {rank}: max |out err| {out_err:.3e}, max |lse err| {lse_err:.3e}"
        assert res["plain_equal"], f"rank {rank}: return_lse=False gave another output"


@pytest.mark.parametrize("name", sorted(ERROR_CASES))
def test_rejects_on_every_rank(shard_results, name):
    expected_text = ERROR_CASES[name][2]
    for rank, results in enumerate(shard_results):
        error = results[name]["error"]
        assert error is not None, f"rank {rank} did not raise ValueError"
        assert expected_text in error, f"rank {rank}: {error}"


# --- merge_partial on its own (one process) -------------------------------------------------------


def masked_attention(q, k, v, allowed):
    """float64 (out, lse) over the keys `allowed` [Nq, Nkv] permits; rows with none: 0 and -inf."""
    scores = torch.einsum("bhid,bhjd->bhij", q, k) / q.shape[-1] ** 0.5
    scores = scores.masked_fill(~allowed, float("-inf"))
    lse = torch.logsumexp(scores, dim=-1)
    weights = torch.exp(scores - torch.where(torch.isinf(lse), 0.0, lse).unsqueeze(-1))
    return torch.einsum("bhij,bhjd->bhid", weights, v), lse


@pytest.mark.parametrize("layout", ["HND", "NHD"])
def test_merge_partial_equals_attention_over_the_union(layout):
    gen = torch.Generator().manual_seed(7)
    q = torch.randn(2, 3, 11, 8, generator=gen, dtype=torch.float64)
    k = torch.randn(2, 3, 9, 8, generator=gen, dtype=torch.float64)
    v = torch.randn(2, 3, 9, 8, generator=gen, dtype=torch.float64)
    # Bottom-right causal with more queries than keys: rows 0-1 see no key at all, rows 2-5 see
    # keys of the first block only, so the second block's LSE is -inf there.
    allowed = torch.arange(9).view(1, -1) <= torch.arange(11).view(-1, 1) - 2
    want_out, want_lse = masked_attention(q, k, v, allowed)
    blocks = [slice(0, 4), slice(4, 6), slice(6, 9)]
    out = lse = None
    for blk in blocks:
        part_out, part_lse = masked_attention(q, k[:, :, blk], v[:, :, blk], allowed[:, blk])
        if layout == "NHD":
            part_out = part_out.transpose(1, 2)
        out, lse = (part_out, part_lse) if out is None else merge_partial(out, lse, part_out, part_lse, layout)
    if layout == "NHD":
        out = out.transpose(1, 2)
    assert torch.isfinite(out).all(), "merge produced NaN/inf"
    assert torch.equal(torch.isneginf(lse), torch.isneginf(want_lse))
    assert (out - want_out).abs().max().item() <= TOL
    seen = torch.isfinite(want_lse)
    assert (lse[seen] - want_lse[seen]).abs().max().item() <= TOL
    assert torch.all(out[~seen] == 0)


def test_merge_partial_keeps_float32_for_half_partials():
    out_a = torch.randn(1, 2, 5, 8).half()
    out_b = torch.randn(1, 2, 5, 8).half()
    lse_a, lse_b = torch.randn(1, 2, 5), torch.randn(1, 2, 5)
    out, lse = merge_partial(out_a, lse_a, out_b, lse_b)
    assert out.dtype == torch.float32 and lse.dtype == torch.float32
    w_a = torch.sigmoid(lse_a - lse_b).unsqueeze(-1)   # exp(a) / (exp(a) + exp(b))
    torch.testing.assert_close(out, w_a * out_a.float() + (1 - w_a) * out_b.float(), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(lse, torch.logaddexp(lse_a, lse_b))
