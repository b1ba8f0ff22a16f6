"""`sageattn_varlen` on the CPU: argument checks (fake CUDA q/k/v with real CPU cu_seqlens) and
the exactness of the interim dense loop (with `core.sageattn` replaced by a float64 attention,
compared with one block-diagonal-masked float64 attention over the whole packed batch)."""

import random

import pytest
import torch

from sageattention import core, sageattn_varlen, varlen

import exact_reference


def _cu(lengths, dtype=torch.int32):
    bounds = [0]
    for n in lengths:
        bounds.append(bounds[-1] + n)
    return torch.tensor(bounds, dtype=dtype)


@pytest.fixture
def packed(fake_cuda_mode, monkeypatch):
    """Fake CUDA q [10, 4, 64] and k, v [12, 2, 64] for sequences of (3, 7) queries, (5, 7) keys.
    CPU cu_seqlens are checked on the host and then copied to q's device; a real CPU tensor cannot
    be copied to a fake device, so the copy makes an (uninitialized) fake one instead."""
    def fake_copy(name, cu, device):
        with fake_cuda_mode:
            return torch.empty(cu.shape, dtype=cu.dtype, device=device)

    monkeypatch.setattr(varlen, "_on_device", fake_copy)
    with fake_cuda_mode:
        q = torch.empty(10, 4, 64, dtype=torch.float16, device="cuda")
        kv = torch.empty(12, 2, 64, dtype=torch.float16, device="cuda")
    return q, kv, _cu([3, 7]), _cu([5, 7])


def test_valid_call_returns_the_packed_shape(packed):
    q, kv, cu_q, cu_k = packed
    out = sageattn_varlen(q, kv, kv, cu_q, cu_k, 7, 7, is_causal=True, tensor_layout="NHD")
    assert out.shape == q.shape and out.dtype == q.dtype


def test_keyword_call_as_diffusers_makes_it(packed):
    q, kv, cu_q, cu_k = packed
    out = sageattn_varlen(q=q, k=kv, v=kv, cu_seqlens_q=cu_q, cu_seqlens_k=cu_k, max_seqlen_q=7,
                          max_seqlen_k=7, is_causal=False, sm_scale=0.1, smooth_k=False)
    assert out.shape == q.shape


def test_zero_length_sequences(packed, fake_cuda_mode):
    q, kv, _, _ = packed
    out = sageattn_varlen(q, kv, kv, _cu([0, 3, 0, 7]), _cu([2, 5, 5, 0]), 7, 5)
    assert out.shape == q.shape


@pytest.mark.parametrize("change, exc_type, words", [
    (dict(cu_seqlens_q=_cu([3, 7], torch.int64)), ValueError, "torch.int32"),
    (dict(cu_seqlens_q=_cu([3, 7]).view(1, 3)), ValueError, "1-D"),
    (dict(cu_seqlens_q=torch.tensor([0], dtype=torch.int32)), ValueError, "batch >= 1"),
    (dict(cu_seqlens_q=[0, 3, 10]), TypeError, "cu_seqlens_q must be a torch.Tensor"),
    (dict(cu_seqlens_q=torch.tensor([1, 3, 10], dtype=torch.int32)), ValueError, r"cu_seqlens_q\[0\] must be 0"),
    (dict(cu_seqlens_k=torch.tensor([0, 8, 5, 12], dtype=torch.int32),
          cu_seqlens_q=torch.tensor([0, 3, 5, 10], dtype=torch.int32)), ValueError, "non-decreasing"),
    (dict(cu_seqlens_q=_cu([3, 6])), ValueError, r"\(9\) must equal the number of packed tokens \(10\)"),
    (dict(cu_seqlens_k=_cu([5, 7, 0])), ValueError, "same length"),
    (dict(max_seqlen_q=6), ValueError, r"max_seqlen_q \(6\) is below the longest sequence \(7\)"),
    (dict(max_seqlen_k=torch.tensor(7)), TypeError, "max_seqlen_k must be a Python int"),
    (dict(max_seqlen_k=7.0), TypeError, "max_seqlen_k must be a Python int"),
    (dict(max_seqlen_q=True), TypeError, "max_seqlen_q must be a Python int"),
    (dict(tensor_layout="HND"), ValueError, "NHD"),
    (dict(scale=0.1), TypeError, "scale"),
    (dict(attn_mask=torch.ones(1)), NotImplementedError, "attn_mask"),
    (dict(sm_scale=-1.0), ValueError, "sm_scale"),
])
def test_bad_arguments(packed, change, exc_type, words):
    q, kv, cu_q, cu_k = packed
    args = dict(q=q, k=kv, v=kv, cu_seqlens_q=cu_q, cu_seqlens_k=cu_k, max_seqlen_q=7, max_seqlen_k=7)
    args.update(change)
    with pytest.raises(exc_type, match=words):
        sageattn_varlen(**args)


def test_packed_tensors_must_be_3d_and_valid(packed, fake_cuda_mode):
    q, kv, cu_q, cu_k = packed
    with pytest.raises(ValueError, match=r"q must be 3-D"):
        sageattn_varlen(q.unsqueeze(0), kv, kv, cu_q, cu_k, 7, 7)
    with fake_cuda_mode:
        odd_heads = torch.empty(12, 3, 64, dtype=torch.float16, device="cuda")
    with pytest.raises(ValueError, match="multiple of heads"):
        sageattn_varlen(q, odd_heads, odd_heads, cu_q, cu_k, 7, 7)
    with pytest.raises(ValueError, match="cuda:1"):
        with fake_cuda_mode:
            other = torch.empty(3, dtype=torch.int32, device="cuda:1")
        sageattn_varlen(q, kv, kv, other, cu_k, 7, 7)


def test_cpu_inputs_get_the_device_error():
    q = torch.zeros(10, 4, 64, dtype=torch.float16)
    with pytest.raises(ValueError, match="CUDA"):
        sageattn_varlen(q, q, q, _cu([3, 7]), _cu([3, 7]), 7, 7)


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("is_causal", [False, True])
def test_dense_loop_is_exact(monkeypatch, seed, is_causal):
    monkeypatch.setattr(core, "sageattn", exact_reference.dense_nhd)
    rng = random.Random(seed)
    batch = rng.randint(1, 5)
    lengths_q = [rng.choice([0, 1, rng.randint(1, 40)]) for _ in range(batch)]
    lengths_k = [rng.choice([0, 1, rng.randint(1, 40)]) for _ in range(batch)]
    lengths_q[rng.randrange(batch)] = rng.randint(2, 40)  # at least one query
    heads_kv = rng.choice([1, 2])
    heads_q = heads_kv * rng.choice([1, 3])
    gen = torch.Generator().manual_seed(seed)
    q = torch.randn(sum(lengths_q), heads_q, 24, generator=gen, dtype=torch.float64)
    k = torch.randn(sum(lengths_k), heads_kv, 24, generator=gen, dtype=torch.float64)
    v = torch.randn(sum(lengths_k), heads_kv, 24, generator=gen, dtype=torch.float64)
    bounds_q, bounds_k = _cu(lengths_q).tolist(), _cu(lengths_k).tolist()
    out = varlen.attend_packed(q, k, v, bounds_q, bounds_k, is_causal, 0.3)
    ref = exact_reference.varlen_attention(q, k, v, bounds_q, bounds_k, is_causal, 0.3)
    assert out.shape == ref.shape
    torch.testing.assert_close(out, ref, rtol=1e-9, atol=1e-9)


def test_attend_packed_compiles_without_graph_breaks(packed):
    q, kv, _, _ = packed
    graphs = []

    def backend(gm, example_inputs):
        graphs.append(gm)
        return gm.forward

    torch._dynamo.reset()
    compiled = torch.compile(varlen.attend_packed, backend=backend, fullgraph=True)
    try:
        out = compiled(q, kv, kv, [0, 3, 3, 10], [0, 5, 0, 12], True)
    except torch._dynamo.exc.Unsupported:
        raise
    except Exception as exc:  # pragma: no cover - older Dynamo may not accept fake inputs
        pytest.skip(f"this torch cannot trace with fake CUDA inputs: {type(exc).__name__}: {exc}")
    assert out.shape == q.shape and len(graphs) == 1


def test_return_lse_is_flash_attn_layout(packed):
    q, kv, cu_q, cu_k = packed
    out, lse = sageattn_varlen(q, kv, kv, cu_q, cu_k, 7, 7, return_lse=True)
    assert out.shape == q.shape and lse.shape == (q.shape[1], q.shape[0]) and lse.dtype == torch.float32


def test_odd_head_dim_is_padded_and_sliced_back(fake_cuda_mode, packed):
    _, _, cu_q, cu_k = packed
    with fake_cuda_mode:
        q = torch.empty(10, 4, 36, dtype=torch.bfloat16, device="cuda")
        kv = torch.empty(12, 2, 36, dtype=torch.bfloat16, device="cuda")
    out = sageattn_varlen(q, kv, kv, cu_q, cu_k, 7, 7)
    assert out.shape == q.shape and out.dtype == q.dtype


def test_device_boundaries_trace_into_one_operator_call(fake_cuda_mode):
    """CUDA cu_seqlens are never read on the host: torch.compile(fullgraph) traces the whole call
    into one sageattention::varlen_forward node."""
    with fake_cuda_mode:
        q = torch.empty(10, 4, 64, dtype=torch.float16, device="cuda")
        kv = torch.empty(12, 2, 64, dtype=torch.float16, device="cuda")
        cu_q = torch.empty(3, dtype=torch.int32, device="cuda")
        cu_k = torch.empty(3, dtype=torch.int32, device="cuda")
    graphs = []

    def backend(gm, example_inputs):
        graphs.append(gm)
        return gm.forward

    torch._dynamo.reset()
    compiled = torch.compile(lambda *a: sageattn_varlen(*a, 7, 7, is_causal=True, return_lse=True),
                             backend=backend, fullgraph=True)
    try:
        out, lse = compiled(q, kv, kv, cu_q, cu_k)
    except torch._dynamo.exc.Unsupported:
        raise
    except Exception as exc:  # pragma: no cover - older Dynamo may not accept fake inputs
        pytest.skip(f"this torch cannot trace with fake CUDA inputs: {type(exc).__name__}: {exc}")
    assert out.shape == q.shape and lse.shape == (4, 10) and len(graphs) == 1
    calls = [n for n in graphs[0].graph.nodes if n.op == "call_function" and "varlen_forward" in str(n.target)]
    assert len(calls) == 1
