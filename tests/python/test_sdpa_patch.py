"""SDPA routing and patching on the CPU.

Real CPU calls must all fall back to torch SDPA with the same result and be counted by reason.
The routing decisions themselves are checked on fake CUDA tensors, with `core.sageattn` and the
fallback SDPA replaced by recorders, so each case shows exactly which function got which arguments.
"""

import inspect

import pytest
import torch
import torch.nn.functional as F

import sageattention
from sageattention import core, ops, sdpa_route

TORCH_SDPA = F.scaled_dot_product_attention


@pytest.fixture(autouse=True)
def _never_leave_sdpa_patched():
    yield
    sageattention.unpatch_sdpa()
    assert F.scaled_dot_product_attention is TORCH_SDPA


def test_signature_is_sdpas():
    params = inspect.signature(sageattention.scaled_dot_product_attention).parameters.values()
    P = inspect.Parameter
    assert [(p.name, p.default, p.kind) for p in params] == [
        ("query", P.empty, P.POSITIONAL_OR_KEYWORD), ("key", P.empty, P.POSITIONAL_OR_KEYWORD),
        ("value", P.empty, P.POSITIONAL_OR_KEYWORD), ("attn_mask", None, P.POSITIONAL_OR_KEYWORD),
        ("dropout_p", 0.0, P.POSITIONAL_OR_KEYWORD), ("is_causal", False, P.POSITIONAL_OR_KEYWORD),
        ("scale", None, P.KEYWORD_ONLY), ("enable_gqa", False, P.KEYWORD_ONLY)]


def test_patch_unpatch_and_nesting():
    assert not sageattention.is_sdpa_patched() and sageattention.unpatch_sdpa() is False
    outer = sageattention.patch_sdpa()
    assert sageattention.is_sdpa_patched() and F.scaled_dot_product_attention is not TORCH_SDPA
    with sageattention.sdpa_patched(min_seq_len=64) as inner:
        assert inner is not outer and sageattention.sdpa_stats() is inner
        assert sdpa_route.current_state().min_seq_len == 64
        assert sdpa_route.current_state().fallback is TORCH_SDPA  # never chains onto itself
    assert sageattention.is_sdpa_patched() and sageattention.sdpa_stats() is outer
    again = sageattention.patch_sdpa()
    assert sdpa_route.current_state().fallback is TORCH_SDPA and again is not outer
    assert sageattention.unpatch_sdpa() is True
    assert F.scaled_dot_product_attention is TORCH_SDPA


def test_context_manager_restores_after_an_exception():
    with pytest.raises(KeyError):
        with sageattention.sdpa_patched():
            raise KeyError("boom")
    assert F.scaled_dot_product_attention is TORCH_SDPA


@pytest.mark.parametrize("kwargs, exc_type", [
    ({"min_seq_len": -1}, ValueError), ({"min_seq_len": "3"}, TypeError), ({"min_seq_len": True}, TypeError),
    ({"predicate": 3}, TypeError),
])
def test_bad_filters_are_refused(kwargs, exc_type):
    with pytest.raises(exc_type):
        sageattention.patch_sdpa(**kwargs)
    assert not sageattention.is_sdpa_patched()


def test_cpu_calls_fall_back_with_identical_results():
    gen = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(2, 4, 33, 64, generator=gen) for _ in range(3))
    mask = torch.rand(33, 33, generator=gen) > 0.3
    expected = [TORCH_SDPA(q, k, v), TORCH_SDPA(q, k, v, is_causal=True), TORCH_SDPA(q, k, v, mask, scale=0.3),
                TORCH_SDPA(q.half(), k.half(), v.half())]
    with sageattention.sdpa_patched() as stats:
        got = [F.scaled_dot_product_attention(q, k, v), F.scaled_dot_product_attention(q, k, v, is_causal=True),
               F.scaled_dot_product_attention(q, k, v, mask, scale=0.3),
               F.scaled_dot_product_attention(q.half(), k.half(), v.half())]
    for g, e in zip(got, expected):
        assert torch.equal(g, e)
    assert stats.as_dict() == {"routed": 0, "fallbacks": {"device": 3, "attn_mask": 1}, "total": 4}
    assert stats.last_fallback[0] == "device" and "cpu" in stats.last_fallback[1]
    stats.reset()
    assert stats.total == 0 and stats.last_fallback is None


def test_torch_modules_reach_the_patch():
    mha = torch.nn.MultiheadAttention(64, 4, batch_first=True).train()  # train(): no fused fast path
    x = torch.randn(2, 10, 64)
    expected, _ = mha(x, x, x, need_weights=False)
    with sageattention.sdpa_patched() as stats:
        got, _ = mha(x, x, x, need_weights=False)
    assert torch.equal(got, expected) and stats.fallbacks == {"device": 1}


class Recorder:
    def __init__(self, result_of):
        self.calls, self.result_of = [], result_of

    def __call__(self, *args, **kwargs):
        self.calls.append((args, kwargs))
        return self.result_of(*args)


@pytest.fixture
def recorders(monkeypatch):
    """(kernel, fallback): recorders in place of core.sageattn and of the SDPA the patch falls back to."""
    kernel = Recorder(lambda q, *rest: q)
    fallback = Recorder(lambda q, *rest: q)
    monkeypatch.setattr(core, "sageattn", kernel)
    monkeypatch.setattr(F, "scaled_dot_product_attention", fallback)
    sageattention.patch_sdpa()
    yield kernel, fallback
    sageattention.unpatch_sdpa()
    monkeypatch.undo()


def fake(mode, *shape, dtype=torch.float16, device="cuda"):
    with mode:
        return torch.empty(shape, dtype=dtype, device=device)


def test_plain_call_is_routed_with_sdpa_meaning(fake_cuda_mode, recorders):
    kernel, fallback = recorders
    q = fake(fake_cuda_mode, 2, 4, 33, 64)
    F.scaled_dot_product_attention(q, q, q, scale=0.5)
    (args, kwargs), = kernel.calls
    assert args[3:] == ("HND", False, 0.5) and args[0] is q and not kwargs and not fallback.calls
    assert sageattention.sdpa_stats().routed == 1


def test_top_left_causal_with_fewer_queries_is_routed_on_the_first_keys(fake_cuda_mode, recorders):
    kernel, fallback = recorders
    q, kv = fake(fake_cuda_mode, 1, 2, 5, 64), fake(fake_cuda_mode, 1, 2, 12, 64)
    F.scaled_dot_product_attention(q, kv, kv, is_causal=True)
    (args, _), = kernel.calls
    assert args[1].shape == (1, 2, 5, 64) and args[2].shape == (1, 2, 5, 64) and args[4] is True
    # Same storage, first 5 tokens: a view, not a copy.
    assert args[1].stride() == kv.stride() and args[1].storage_offset() == kv.storage_offset()


# Each case builds (args, kwargs) from make(*shape) (fake CUDA fp16) and an 8x8 boolean mask.
@pytest.mark.parametrize("case, reason", [
    (lambda make, m: ((make(1, 2, 8, 64), make(1, 2, 8, 64), make(1, 2, 8, 64)), {"attn_mask": m}), "attn_mask"),
    (lambda make, m: ((make(1, 2, 8, 64), make(1, 2, 8, 64), make(1, 2, 8, 64), None, 0.1), {}), "dropout"),
    (lambda make, m: ((make(2, 8, 64), make(2, 8, 64), make(2, 8, 64)), {}), "not_4d"),
    (lambda make, m: ((make(1, 2, 8, 64), make(1, 1, 8, 64), make(1, 1, 8, 64)), {}), "heads"),
    (lambda make, m: ((make(1, 6, 8, 64), make(1, 4, 8, 64), make(1, 4, 8, 64)), {"enable_gqa": True}), "heads"),
    (lambda make, m: ((make(1, 2, 8, 64), make(1, 2, 4, 64), make(1, 2, 4, 64)), {"is_causal": True}), "causal_top_left"),
    (lambda make, m: ((make(1, 2, 8, 64).float(), make(1, 2, 8, 64).float(), make(1, 2, 8, 64).float()), {}), "dtype"),
    (lambda make, m: ((make(1, 2, 8, 64), make(1, 2, 8, 64), make(1, 2, 8, 64)), {"scale": -1.0}), "unsupported"),
])
def test_calls_sdpa_defines_differently_fall_back(fake_cuda_mode, recorders, case, reason):
    kernel, fallback = recorders
    with fake_cuda_mode:
        args, kwargs = case(lambda *shape: torch.empty(shape, dtype=torch.float16, device="cuda"),
                            torch.empty(8, 8, dtype=torch.bool, device="cuda"))
    F.scaled_dot_product_attention(*args, **kwargs)
    assert not kernel.calls and len(fallback.calls) == 1
    sent_args, sent_kwargs = fallback.calls[0]
    assert all(a is b for a, b in zip(sent_args, args))  # the caller's own tensors, untouched
    assert sent_kwargs.get("enable_gqa", False) == kwargs.get("enable_gqa", False)
    assert sageattention.sdpa_stats().fallbacks == {reason: 1}


def test_masks_are_routed_only_when_asked(fake_cuda_mode, recorders):
    kernel, fallback = recorders
    q = fake(fake_cuda_mode, 2, 4, 8, 64)
    with fake_cuda_mode:
        masks = [torch.empty(8, 8, dtype=torch.bool, device="cuda"),
                 torch.empty(2, 1, 1, 8, dtype=torch.float16, device="cuda"),
                 torch.empty(2, 4, 8, 8, dtype=torch.float32, device="cuda")]
        bad = torch.empty(8, 8, dtype=torch.uint8, device="cuda")
    F.scaled_dot_product_attention(q, q, q, attn_mask=masks[0])  # default: SDPA
    assert not kernel.calls and sageattention.sdpa_stats().fallbacks == {"attn_mask": 1}
    stats = sageattention.patch_sdpa(route_masks=True)
    for mask in masks:
        F.scaled_dot_product_attention(q, q, q, attn_mask=mask)
    F.scaled_dot_product_attention(q, q, q, attn_mask=masks[0], is_causal=True)  # SDPA refuses the pair
    F.scaled_dot_product_attention(q, q, q, attn_mask=bad)  # a dtype sageattn does not take
    assert len(kernel.calls) == 3 and all(kw["attn_mask"] is m for (_, kw), m in zip(kernel.calls, masks))
    assert stats.routed == 3 and stats.fallbacks == {"attn_mask": 1, "unsupported": 1}
    with pytest.raises(TypeError, match="route_masks must be a bool"):
        sageattention.patch_sdpa(route_masks="yes")


def test_gqa_is_routed_only_with_enable_gqa(fake_cuda_mode, recorders):
    kernel, fallback = recorders
    q, kv = fake(fake_cuda_mode, 1, 6, 8, 64), fake(fake_cuda_mode, 1, 2, 8, 64)
    F.scaled_dot_product_attention(q, kv, kv, enable_gqa=True)
    F.scaled_dot_product_attention(q, kv, kv)
    assert len(kernel.calls) == 1 and len(fallback.calls) == 1
    assert sageattention.sdpa_stats().fallbacks == {"heads": 1}


def test_head_dim_beyond_the_kernels_falls_back(fake_cuda_mode, recorders):
    kernel, fallback = recorders
    q = fake(fake_cuda_mode, 1, 2, 8, 264)
    F.scaled_dot_product_attention(q, q, q)
    assert not kernel.calls
    reason, detail = sageattention.sdpa_stats().last_fallback
    assert reason == "unsupported" and "head_dim 264" in detail


def test_grad_mode_decides_for_inputs_that_require_grad(fake_cuda_mode, recorders):
    kernel, fallback = recorders
    q = fake(fake_cuda_mode, 1, 2, 8, 64).requires_grad_(True)
    F.scaled_dot_product_attention(q, q, q)
    with torch.no_grad():
        F.scaled_dot_product_attention(q, q, q)
    assert len(kernel.calls) == 1 and sageattention.sdpa_stats().fallbacks == {"requires_grad": 1}


def test_tensor_subclasses_keep_their_own_sdpa(recorders):
    class Tagged(torch.Tensor):
        pass

    kernel, fallback = recorders
    q = torch.zeros(1, 2, 8, 64).as_subclass(Tagged)
    F.scaled_dot_product_attention(q, q, q)
    assert sageattention.sdpa_stats().fallbacks == {"tensor_subclass": 1}


def test_user_filters(fake_cuda_mode, monkeypatch):
    kernel, fallback = Recorder(lambda q, *r: q), Recorder(lambda q, *r: q)
    monkeypatch.setattr(core, "sageattn", kernel)
    monkeypatch.setattr(F, "scaled_dot_product_attention", fallback)
    asked = []

    def only_long_keys(query, key, value, **kwargs):
        asked.append(sorted(kwargs))
        return key.shape[2] >= 32

    short, long_ = fake(fake_cuda_mode, 1, 2, 16, 64), fake(fake_cuda_mode, 1, 2, 40, 64)
    with sageattention.sdpa_patched(min_seq_len=16, predicate=only_long_keys) as stats:
        F.scaled_dot_product_attention(short.narrow(2, 0, 8), short, short)  # below min_seq_len: predicate not asked
        F.scaled_dot_product_attention(short, short, short)  # predicate says no
        F.scaled_dot_product_attention(short, long_, long_)  # routed
    assert stats.as_dict() == {"routed": 1, "fallbacks": {"min_seq_len": 1, "predicate": 1}, "total": 3}
    assert asked == [["attn_mask", "dropout_p", "enable_gqa", "is_causal", "scale"]] * 2


def test_patched_sdpa_compiles_without_graph_breaks_or_recompiles(fake_cuda_mode):
    graphs = []

    def backend(gm, example_inputs):
        graphs.append(gm)
        return gm.forward

    def block(q, k, v):
        return F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=True) + 1

    q, kv = fake(fake_cuda_mode, 1, 4, 64, 64), fake(fake_cuda_mode, 1, 2, 80, 64)
    torch._dynamo.reset()
    with sageattention.sdpa_patched() as stats:
        compiled = torch.compile(block, backend=backend, fullgraph=True)
        try:
            with fake_cuda_mode:
                for _ in range(3):
                    out = compiled(q, kv, kv)
        except torch._dynamo.exc.Unsupported:
            raise
        except Exception as exc:  # pragma: no cover - older Dynamo may not accept fake inputs
            pytest.skip(f"this torch cannot trace with fake CUDA inputs: {type(exc).__name__}: {exc}")
    assert out.shape == q.shape
    assert len(graphs) == 1, "the counters must not make Dynamo recompile on every call"
    assert [n.target for n in graphs[0].graph.nodes if n.op == "call_function"].count(ops.attention_forward) == 1
    assert stats.routed == 1  # counted once per compilation under torch.compile
