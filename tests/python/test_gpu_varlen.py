"""sageattn_varlen's kernel path (packed sequences in one call) on the GPU, on both kernels: equal to
one dense call per sequence (the issue's criterion: relative L1 <= 1e-3 between them; in practice
they differ only by the K/V statistics' summation order), the LSE in flash-attn's [Hq, total_q]
layout, CUDA graph capture with device boundaries, and boundaries that lie (clamped: no fault).
Accuracy against float64 is test_gpu_compat's test_varlen_matches_block_diagonal_attention."""

import itertools
import random

import pytest
import torch

from sageattention import sageattn, sageattn_varlen, varlen

from gpu_common import no_grad_with_library  # noqa: F401 (autouse fixture)
from gpu_helpers import SM90_KERNELS, exact, kernel_used, poison_allocator, rel_l1, sm90_available, unsampled_key

pytestmark = pytest.mark.gpu

KERNELS = ["sm80_mma", "sm90_wgmma", "sm90_wgmma_pv16"]


def _skip_unavailable(kernel, library):
    if kernel in SM90_KERNELS and not sm90_available(library):
        pytest.skip(f"{kernel} needs compute capability 9.0 and a 90a build")


def _cu(lengths, device="cuda"):
    return torch.tensor([0, *itertools.accumulate(lengths)], dtype=torch.int32, device=device)


def _packed_inputs(lengths_q, lengths_k, heads_q, heads_kv, head_dim, dtype, seed):
    gen = torch.Generator(device="cuda").manual_seed(seed)
    q = torch.randn(sum(lengths_q), heads_q, head_dim, device="cuda", generator=gen).to(dtype)
    k = (torch.randn(sum(lengths_k), heads_kv, head_dim, device="cuda", generator=gen) + 1).to(dtype)
    v = (torch.randn(sum(lengths_k), heads_kv, head_dim, device="cuda", generator=gen) + 0.5).to(dtype)
    return q, k, v


def _dense_lse(q, k, v, bounds_q, bounds_k, is_causal, kernel):
    """LSE of one dense call per sequence, laid out [Hq, total_q]; -inf where a sequence has no keys."""
    lse = torch.full((q.shape[1], q.shape[0]), float("-inf"), device="cuda")
    for s in range(len(bounds_q) - 1):
        q0, q1, k0, k1 = bounds_q[s], bounds_q[s + 1], bounds_k[s], bounds_k[s + 1]
        if q1 == q0 or k1 == k0:
            continue
        _, part = sageattn(q[q0:q1][None], k[k0:k1][None], v[k0:k1][None], "NHD", is_causal, return_lse=True,
                           kernel=kernel)
        lse[:, q0:q1] = part[0]
    return lse


@pytest.mark.parametrize("kernel", KERNELS)
@pytest.mark.parametrize("is_causal", [False, True])
@pytest.mark.parametrize("dtype, seed", [(torch.float16, 0), (torch.bfloat16, 1), (torch.float16, 2)])
def test_kernel_path_equals_dense_calls(kernel, is_causal, dtype, seed, library):
    _skip_unavailable(kernel, library)
    rng = random.Random(seed)
    batch = 8
    # Empty, single-token, tile-edge and odd lengths, q and kv independent (q_len != kv_len causal).
    pool = [0, 1, 63, 64, 127, 128, 129, rng.randint(2, 700), rng.randint(2, 700)]
    lengths_q = [rng.choice(pool) for _ in range(batch)]
    lengths_k = [rng.choice(pool) for _ in range(batch)]
    lengths_q[rng.randrange(batch)] = rng.randint(300, 700)
    lengths_k[rng.randrange(batch)] = rng.randint(300, 700)
    heads_kv = rng.choice([1, 2])
    heads_q, head_dim = heads_kv * rng.choice([1, 3]), rng.choice([64, 128, 96])
    if kernel in ("sm80_mma", "sm90_wgmma") and seed == 2:
        head_dim = 256  # sm80's 8-warp head dim 256 variant, sm90's native 256, on packed sequences
    q, k, v = _packed_inputs(lengths_q, lengths_k, heads_q, heads_kv, head_dim, dtype, seed)
    cu_q, cu_k = _cu(lengths_q), _cu(lengths_k)
    poison_allocator((q.shape, dtype), ((heads_q, q.shape[0]), torch.float32))
    out, lse = sageattn_varlen(q, k, v, cu_q, cu_k, max(lengths_q), max(lengths_k), is_causal=is_causal,
                               return_lse=True, kernel=kernel)
    bounds_q, bounds_k = cu_q.tolist(), cu_k.tolist()
    dense = varlen.attend_packed(q, k, v, bounds_q, bounds_k, is_causal, kernel=kernel)
    what = f"[{kernel}] {dtype} causal={is_causal} q {lengths_q} k {lengths_k} H {heads_q}/{heads_kv} D {head_dim}"
    assert out.shape == q.shape and lse.shape == (heads_q, q.shape[0]), what
    assert torch.isfinite(out).all(), what
    error = rel_l1(out, dense)
    assert error <= 1e-3, f"{what}: rel L1 to per-sequence dense calls {error:.2e}"
    dense_lse = _dense_lse(q, k, v, bounds_q, bounds_k, is_causal, kernel)
    assert torch.equal(torch.isinf(lse), torch.isinf(dense_lse)), what
    finite = torch.isfinite(dense_lse)
    torch.testing.assert_close(lse[finite], dense_lse[finite], rtol=0, atol=2e-3, msg=what)
    for s in range(batch):  # queries of a sequence without keys: zeros, LSE -inf
        if lengths_k[s] == 0:
            assert torch.all(out[bounds_q[s]:bounds_q[s + 1]] == 0), what
            assert torch.all(lse[:, bounds_q[s]:bounds_q[s + 1]] == float("-inf")), what


@pytest.mark.parametrize("kernel", KERNELS)
@pytest.mark.parametrize("is_causal", [False, True])
def test_one_long_sequence_among_many_short_ones(kernel, is_causal, library):
    """The sm90 grids number packed items by position (common/sequences.cuh), not batch x the
    longest sequence's blocks: 48 sequences, one of them 1500 tokens, the others 0-200 (runs of
    empty ones, lengths on and off the 128- and 192-row boundaries): every row equals its dense call."""
    _skip_unavailable(kernel, library)
    rng = random.Random(7)
    lengths = [rng.choice([0, 0, 1, 5, 64, 127, 128, 129, 191, 192, 193, rng.randint(2, 200)]) for _ in range(47)]
    lengths.insert(rng.randrange(48), 1500)
    q, k, v = _packed_inputs(lengths, lengths, 4, 2, 128, torch.float16, 7)
    cu = _cu(lengths)
    poison_allocator((q.shape, torch.float16))
    out = sageattn_varlen(q, k, v, cu, cu, max(lengths), max(lengths), is_causal=is_causal, kernel=kernel)
    bounds = cu.tolist()
    dense = varlen.attend_packed(q, k, v, bounds, bounds, is_causal, kernel=kernel)
    assert torch.isfinite(out).all()
    error = rel_l1(out, dense)
    assert error <= 1e-3, f"[{kernel}] causal={is_causal}: rel L1 to per-sequence dense calls {error:.2e}"


@pytest.mark.parametrize("head_dim", [128, 256])
def test_v_outlier_settles_its_own_sequence(head_dim, library):
    """FP8 V's exact-maxima fallback (quant/v_fp8.cuh) is per (sequence, kv head): sequences 0 and 3
    have a V token (200) far beyond 4 x their sample's maximum at a key the sample skips (one head each),
    the others not. Every row equals its dense call (same scales per sequence) and the float64
    attention (a clipped token, or a fallback leaking into another sequence, would not)."""
    _skip_unavailable("sm90_wgmma", library)
    lengths = [3001, 700, 0, 2100, 1, 1500]
    q, k, v = _packed_inputs(lengths, lengths, 4, 2, head_dim, torch.float16, 5)
    starts = [0, *itertools.accumulate(lengths)]
    v[starts[0] + unsampled_key(lengths[0], 1000), 1] = 200.0
    v[starts[3] + unsampled_key(lengths[3], 50), 0] = -200.0
    cu = _cu(lengths)
    poison_allocator((q.shape, torch.float16))
    out = sageattn_varlen(q, k, v, cu, cu, max(lengths), max(lengths), kernel="sm90_wgmma")
    assert torch.isfinite(out).all()
    dense = varlen.attend_packed(q, k, v, starts, starts, False, kernel="sm90_wgmma")
    assert rel_l1(out, dense) <= 1e-3, f"rel L1 to per-sequence dense calls {rel_l1(out, dense):.2e}"
    # Per q head: V's +0.5 bias is most of each output (exact under smoothing), so a head's error is
    # ~2e-3 (E4M3 on the rest); a token clipped at 4 x ~3.5 would add ~186 / keys / 0.5 > 0.1.
    for s, (a, b) in enumerate(zip(starts, starts[1:])):
        if b == a:
            continue
        ref, _ = exact(q[a:b][None], k[a:b][None], v[a:b][None], layout="NHD")
        for h in range(q.shape[1]):
            error = rel_l1(out[a:b, h], ref[0, h])
            assert error <= 1e-2, f"sequence {s} ({b - a} keys), head {h}: rel L1 to float64 {error:.2e}"


@pytest.mark.parametrize("kernel", KERNELS)
@pytest.mark.parametrize("is_causal", [False, True])
@pytest.mark.parametrize("batch", [32, 33])
def test_longest_first_order_runs_every_item(kernel, is_causal, batch, library):
    """sm90 calls of at most 32 packed sequences number their items longest sequence first
    (src/sm90/longest_first.cuh), larger batches by position: at the boundary, with ties, empty
    sequences and key counts that differ from query counts, every row equals its dense call."""
    _skip_unavailable(kernel, library)
    rng = random.Random(batch)
    lengths_q = [rng.choice([0, 1, 191, 192, 193, 400]) for _ in range(batch)]
    lengths_k = [rng.choice([0, 1, 300, 300, 300, 700]) for _ in range(batch)]  # ties in key counts
    q, k, v = _packed_inputs(lengths_q, lengths_k, 2, 1, 128, torch.float16, batch)
    cu_q, cu_k = _cu(lengths_q), _cu(lengths_k)
    poison_allocator((q.shape, torch.float16))
    out = sageattn_varlen(q, k, v, cu_q, cu_k, max(lengths_q), max(lengths_k), is_causal=is_causal, kernel=kernel)
    dense = varlen.attend_packed(q, k, v, cu_q.tolist(), cu_k.tolist(), is_causal, kernel=kernel)
    assert torch.isfinite(out).all()
    error = rel_l1(out, dense)
    assert error <= 1e-3, f"[{kernel}] causal={is_causal} batch {batch}: rel L1 to per-sequence dense calls {error:.2e}"


@pytest.mark.parametrize("kernel", ["auto", "sm80_mma"])
def test_cuda_graph_replays_new_lengths(kernel, library):
    """Boundaries live on the device: a captured call replays with other lengths (same count, within
    the captured maxima) and new inputs, and equals the eager call on them."""
    lengths_a, lengths_b = [100, 0, 257, 31], [3, 200, 129, 56]
    total, heads, dim = 400, 4, 128
    q, k, v = (torch.randn(total, heads, dim, device="cuda", dtype=torch.float16) for _ in range(3))
    cu_q, cu_k = _cu(lengths_a + [total - sum(lengths_a)]), _cu(lengths_a + [total - sum(lengths_a)])
    run = lambda: sageattn_varlen(q, k, v, cu_q, cu_k, 300, 300, is_causal=True, kernel=kernel)
    run()  # warm-up (allocator, library) outside the capture
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        captured = run()
    for t in (q, k, v):
        t.copy_(torch.randn_like(t))
    new_bounds = _cu(lengths_b + [total - sum(lengths_b)])
    cu_q.copy_(new_bounds)
    cu_k.copy_(new_bounds)
    graph.replay()
    torch.cuda.synchronize()
    torch.testing.assert_close(captured, run(), rtol=0, atol=0)
    bounds = new_bounds.tolist()
    # Per-sequence dense calls of the kernel the packed call ran ("auto" on packed sequences is
    # sm90_wgmma on Hopper, while dense calls this short would get its 16-bit variant).
    longest = max(end - start for start, end in zip(bounds, bounds[1:]))
    ran = kernel_used(kernel, library, dim, longest, packed=True)
    dense = varlen.attend_packed(q, k, v, bounds, bounds, True, kernel=ran)
    assert rel_l1(captured, dense) <= 1e-3


def test_cpu_boundaries_are_refused_during_capture():
    q = torch.randn(20, 2, 64, device="cuda", dtype=torch.float16)
    cu = torch.tensor([0, 8, 20], dtype=torch.int32)
    sageattn_varlen(q, q, q, cu, cu, 12, 12)  # warm-up outside the capture
    graph = torch.cuda.CUDAGraph()
    with pytest.raises(RuntimeError, match="CUDA graph"):
        with torch.cuda.graph(graph):
            sageattn_varlen(q, q, q, cu, cu, 12, 12)


@pytest.mark.parametrize("kernel", KERNELS)
def test_lying_boundaries_never_fault(kernel, library):
    """Device boundaries are not checked on the host (that would synchronize); the kernels clamp
    them to [0, total] and cut lengths to the maxima, so wrong ones give wrong rows, not a fault."""
    _skip_unavailable(kernel, library)
    q, k, v = (torch.randn(300, 2, 128, device="cuda", dtype=torch.float16) for _ in range(3))
    for bounds in ([0, 500, 100000], [0, 250, 120, 300], [-70, 100, 300], [0, 300, 300]):
        cu = torch.tensor(bounds, dtype=torch.int32, device="cuda")
        out = sageattn_varlen(q, k, v, cu, cu, 200, 200, is_causal=True, kernel=kernel)
        torch.cuda.synchronize()  # a fault would raise here
        assert out.shape == q.shape


def test_degenerate_batches_need_no_kernel():
    q = torch.randn(5, 2, 64, device="cuda", dtype=torch.float16)
    empty = torch.randn(0, 2, 64, device="cuda", dtype=torch.float16)
    out, lse = sageattn_varlen(q, empty, empty, _cu([5]), _cu([0]), 5, 0, return_lse=True)
    assert torch.all(out == 0) and torch.all(lse == float("-inf"))
    out = sageattn_varlen(empty, q, q, _cu([0]), _cu([5]), 0, 5)
    assert out.shape == (0, 2, 64)


def test_opcheck_varlen_operator():
    opcheck = getattr(torch.library, "opcheck", None)
    if opcheck is None:
        pytest.skip("torch.library.opcheck needs torch >= 2.4")
    from sageattention import ops

    q, k, v = _packed_inputs([100, 0, 37], [120, 5, 64], 4, 2, 64, torch.float16, seed=3)
    cu_q, cu_k = _cu([100, 0, 37]), _cu([120, 5, 64])
    for return_lse in (True, False):
        opcheck(ops.varlen_forward, (q, k, v, cu_q, cu_k, 100, 120, True, 0.125, return_lse, True, 0, 0),
                test_utils=("test_schema", "test_faketensor", "test_aot_dispatch_dynamic"))
