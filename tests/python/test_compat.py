"""Upstream sageattention 2.x compatibility of the per-kernel entry points (CPU).

Signatures are compared with upstream's (names, order, defaults, **kwargs, as in thu-ml/SageAttention
sageattention/core.py); the argument mapping is observed by replacing `core.sageattn` with a
recorder; the real Python path (validation, V smoothing, the fake operator) runs on fake CUDA
tensors, also under torch.compile(fullgraph=True).
"""

import functools
import inspect

import pytest
import torch

import sageattention
from sageattention import _smooth_v, compat, core, ops

_P = inspect.Parameter
_POS = _P.POSITIONAL_OR_KEYWORD

# Upstream's parameters (name, default) in order; every one of these functions ends in **kwargs.
UPSTREAM = {
    "sageattn": [("tensor_layout", "HND"), ("is_causal", False), ("sm_scale", None), ("return_lse", False)],
    "sageattn_qk_int8_pv_fp16_triton": [
        ("tensor_layout", "HND"), ("quantization_backend", "triton"), ("is_causal", False),
        ("sm_scale", None), ("smooth_k", True), ("return_lse", False)],
    "sageattn_qk_int8_pv_fp16_cuda": [
        ("tensor_layout", "HND"), ("is_causal", False), ("qk_quant_gran", "per_thread"), ("sm_scale", None),
        ("pv_accum_dtype", "fp32"), ("smooth_k", True), ("smooth_v", False), ("return_lse", False)],
    "sageattn_qk_int8_pv_fp8_cuda": [
        ("tensor_layout", "HND"), ("is_causal", False), ("qk_quant_gran", "per_thread"), ("sm_scale", None),
        ("pv_accum_dtype", "fp32+fp16"), ("smooth_k", True), ("smooth_v", False), ("return_lse", False)],
    "sageattn_qk_int8_pv_fp8_cuda_sm90": [
        ("tensor_layout", "HND"), ("is_causal", False), ("qk_quant_gran", "per_thread"), ("sm_scale", None),
        ("pv_accum_dtype", "fp32+fp32"), ("smooth_k", True), ("return_lse", False)],
    "sageattn_varlen": [
        ("cu_seqlens_q", _P.empty), ("cu_seqlens_k", _P.empty), ("max_seqlen_q", _P.empty),
        ("max_seqlen_k", _P.empty), ("is_causal", False), ("sm_scale", None), ("smooth_k", True)],
}


@pytest.mark.parametrize("name", sorted(UPSTREAM))
def test_signature_matches_upstream(name):
    params = list(inspect.signature(getattr(sageattention, name)).parameters.values())
    assert [p.name for p in params[:3]] == ["q", "k", "v"]
    positional = [(p.name, p.default) for p in params[3:] if p.kind == _POS]
    assert positional == UPSTREAM[name]
    if name == "sageattn":
        # Upstream's **kwargs is swallowed silently; ours are explicit keyword-only parameters.
        assert all(p.kind == _P.KEYWORD_ONLY for p in params[3 + len(positional):])
    else:
        assert params[-1].kind == _P.VAR_KEYWORD


class Recorder:
    """Stands in for core.sageattn: records each call, returns q (or (q, lse))."""

    def __init__(self):
        self.calls = []

    def __call__(self, q, k, v, tensor_layout="HND", is_causal=False, sm_scale=None, return_lse=False, **kw):
        self.calls.append(dict(q=q, k=k, v=v, tensor_layout=tensor_layout, is_causal=is_causal,
                               sm_scale=sm_scale, return_lse=return_lse, **kw))
        return (q, torch.zeros(1)) if return_lse else q


@pytest.fixture
def recorder(monkeypatch):
    rec = Recorder()
    monkeypatch.setattr(core, "sageattn", rec)
    return rec


@pytest.fixture
def qkv():
    return torch.zeros(1, 2, 8, 64), torch.zeros(1, 2, 8, 64), torch.zeros(1, 2, 8, 64)


def test_fp16_cuda_positional_arguments_map_in_upstream_order(recorder, qkv):
    compat.sageattn_qk_int8_pv_fp16_cuda(*qkv, "NHD", True, "per_warp", 0.3, "fp16+fp32", False, False, True)
    call = recorder.calls[-1]
    assert (call["tensor_layout"], call["is_causal"], call["sm_scale"], call["return_lse"]) == ("NHD", True, 0.3, True)
    assert (call["qk_quant_gran"], call["smooth_k"], call["attn_mask"], call["dropout_p"]) == ("per_warp", False, None, 0.0)


def test_triton_positional_arguments_map_in_upstream_order(recorder, qkv):
    compat.sageattn_qk_int8_pv_fp16_triton(*qkv, "NHD", "cuda", True, 0.2, False, True)
    call = recorder.calls[-1]
    assert (call["tensor_layout"], call["is_causal"], call["sm_scale"], call["smooth_k"]) == ("NHD", True, 0.2, False)
    assert call["return_lse"] is True and call["qk_quant_gran"] == "per_thread"


@pytest.mark.parametrize("name, kernel", [
    ("sageattn_qk_int8_pv_fp16_cuda", "auto_pv16"), ("sageattn_qk_int8_pv_fp16_triton", "auto_pv16"),
    ("sageattn_qk_int8_pv_fp8_cuda", "auto"), ("sageattn_qk_int8_pv_fp8_cuda_sm90", "auto"),
])
def test_pv_fp16_functions_pin_the_16_bit_kernel(recorder, qkv, name, kernel):
    getattr(compat, name)(*qkv)
    assert recorder.calls[-1]["kernel"] == kernel


@pytest.mark.parametrize("name", sorted(compat.PV_ACCUM_DTYPES))
def test_every_upstream_pv_accum_dtype_is_accepted(recorder, qkv, name):
    for value in compat.PV_ACCUM_DTYPES[name]:
        getattr(compat, name)(*qkv, pv_accum_dtype=value)
    assert len(recorder.calls) == len(compat.PV_ACCUM_DTYPES[name])


@pytest.mark.parametrize("name, value", [
    ("sageattn_qk_int8_pv_fp16_cuda", "fp32+fp32"),
    ("sageattn_qk_int8_pv_fp8_cuda", "fp16"),
    ("sageattn_qk_int8_pv_fp8_cuda_sm90", "fp32+fp16"),
    ("sageattn_qk_int8_pv_fp16_cuda", None),
])
def test_other_pv_accum_dtypes_are_refused(recorder, qkv, name, value):
    with pytest.raises(ValueError, match="pv_accum_dtype must be one of"):
        getattr(compat, name)(*qkv, pv_accum_dtype=value)
    assert not recorder.calls


def test_quantization_backend_is_checked(recorder, qkv):
    compat.sageattn_qk_int8_pv_fp16_triton(*qkv, quantization_backend="triton")
    compat.sageattn_qk_int8_pv_fp16_triton(*qkv, quantization_backend="cuda")
    with pytest.raises(ValueError, match="quantization_backend"):
        compat.sageattn_qk_int8_pv_fp16_triton(*qkv, quantization_backend="cutlass")


def test_the_yunchang_xdit_ring_call_is_honoured(recorder, qkv):
    # yunchang's select_flash_attn_impl(AttnType.SAGE_FP16, "fwd-only") returns this partial, and
    # xDiT's ring attention calls it with flash-attn's keywords (xfuser ring_flash_attn.py).
    fn = functools.partial(compat.sageattn_qk_int8_pv_fp16_cuda, pv_accum_dtype="fp32",
                           tensor_layout="NHD", return_lse=True)
    out, lse = fn(*qkv, dropout_p=0.0, softmax_scale=0.07, causal=True, window_size=(-1, -1),
                  softcap=0.0, alibi_slopes=None, return_softmax=False)
    call = recorder.calls[-1]
    assert (call["sm_scale"], call["is_causal"], call["tensor_layout"], call["return_lse"]) == (0.07, True, "NHD", True)


def test_comfyui_style_attn_mask_none_is_accepted(recorder, qkv):
    compat.sageattn_qk_int8_pv_fp8_cuda(*qkv, is_causal=False, attn_mask=None, pv_accum_dtype="fp32+fp16",
                                        tensor_layout="NHD")
    assert recorder.calls[-1]["attn_mask"] is None


@pytest.mark.parametrize("kwargs, exc_type, words", [
    ({"window_size": (128, 0)}, NotImplementedError, "sliding-window"),
    ({"softcap": 30.0}, NotImplementedError, "soft-capping"),
    ({"alibi_slopes": torch.ones(2)}, NotImplementedError, "ALiBi"),
    ({"return_softmax": True}, NotImplementedError, "probabilities"),
    ({"sm_scale": 0.1, "softmax_scale": 0.2}, ValueError, "disagree"),
    ({"is_causal": True, "causal": False}, ValueError, "disagree"),
    ({"enable_gqa": True}, TypeError, "enable_gqa"),
    ({"smooth_q": True, "foo": 1}, TypeError, "foo, smooth_q"),
])
def test_kwargs_that_cannot_be_honoured_are_refused(recorder, qkv, kwargs, exc_type, words):
    with pytest.raises(exc_type, match=words):
        compat.sageattn_qk_int8_pv_fp16_cuda(*qkv, **kwargs)
    assert not recorder.calls


def test_unknown_kwarg_error_names_the_function(recorder, qkv):
    with pytest.raises(TypeError, match=r"sageattn_qk_int8_pv_fp8_cuda_sm90\(\) got unexpected keyword argument\(s\) smooth_v"):
        compat.sageattn_qk_int8_pv_fp8_cuda_sm90(*qkv, smooth_v=True)


@pytest.mark.parametrize("name", ["sageattn_qk_int8_pv_fp16_cuda", "sageattn_qk_int8_pv_fp8_cuda"])
def test_smooth_v_runs_the_smoothing_wrapper(monkeypatch, qkv, name):
    seen = []
    monkeypatch.setattr(_smooth_v, "attention", lambda *a, **kw: seen.append((a, kw)) or "smoothed")
    assert getattr(compat, name)(*qkv, smooth_v=True) == "smoothed"
    with pytest.raises(TypeError, match="smooth_v must be a bool"):
        getattr(compat, name)(*qkv, smooth_v="yes")
    assert len(seen) == 1


def test_attn_mask_reaches_the_real_path(fake_cuda_mode):
    with fake_cuda_mode:
        q = torch.empty(1, 2, 8, 64, dtype=torch.float16, device="cuda")
        mask = torch.ones(8, 8, dtype=torch.bool, device="cuda")
        assert compat.sageattn_qk_int8_pv_fp16_triton(q, q, q, attn_mask=mask).shape == q.shape
        with pytest.raises(ValueError, match="attn_mask of shape"):
            compat.sageattn_qk_int8_pv_fp16_triton(q, q, q, attn_mask=torch.ones(8, 7, dtype=torch.bool, device="cuda"))
        with pytest.raises(NotImplementedError, match="dropout"):
            compat.sageattn_qk_int8_pv_fp8_cuda(q, q, q, dropout_p=0.1)


COMPAT_NAMES = ["sageattn_qk_int8_pv_fp16_cuda", "sageattn_qk_int8_pv_fp16_triton",
                "sageattn_qk_int8_pv_fp8_cuda", "sageattn_qk_int8_pv_fp8_cuda_sm90"]


@pytest.mark.parametrize("name", COMPAT_NAMES)
@pytest.mark.parametrize("layout", ["HND", "NHD"])
def test_real_path_shapes_on_fake_tensors(fake_cuda_mode, name, layout):
    fn = getattr(sageattention, name)
    with fake_cuda_mode:
        q = torch.empty((2, 4, 33, 72) if layout == "HND" else (2, 33, 4, 72), dtype=torch.bfloat16, device="cuda")
        kv = torch.empty((2, 2, 40, 72) if layout == "HND" else (2, 40, 2, 72), dtype=torch.bfloat16, device="cuda")
        out, lse = fn(q, kv, kv, tensor_layout=layout, is_causal=True, return_lse=True)
        assert out.shape == q.shape and out.dtype == q.dtype
        assert lse.shape == (2, 4, 33) and lse.dtype == torch.float32
        assert fn(q, kv, kv, tensor_layout=layout).shape == q.shape


def _graph_ops(graphs):
    return [n.target for g in graphs for n in g.graph.nodes if n.op == "call_function"]


@pytest.mark.parametrize("name, extra", [(n, {}) for n in COMPAT_NAMES] + [
    ("sageattn_qk_int8_pv_fp16_cuda", {"smooth_v": True}),
    ("sageattn_qk_int8_pv_fp8_cuda", {"smooth_v": True, "causal": True, "softmax_scale": 0.1}),
])
def test_compat_functions_compile_without_graph_breaks(fake_cuda_mode, name, extra):
    fn = getattr(sageattention, name)
    graphs = []

    def backend(gm, example_inputs):
        graphs.append(gm)
        return gm.forward

    def block(q, k, v):
        out, lse = fn(q, k, v, tensor_layout="NHD", return_lse=True, **extra)
        return out * 2, lse

    torch._dynamo.reset()
    compiled = torch.compile(block, backend=backend, fullgraph=True)
    with fake_cuda_mode:
        q = torch.empty(1, 40, 4, 64, dtype=torch.float16, device="cuda")
        kv = torch.empty(1, 30, 2, 64, dtype=torch.float16, device="cuda")
        try:
            compiled(q, kv, kv)
        except torch._dynamo.exc.Unsupported:
            raise  # a graph break
        except Exception as exc:  # pragma: no cover - older Dynamo may not accept fake inputs
            pytest.skip(f"this torch cannot trace with fake CUDA inputs: {type(exc).__name__}: {exc}")
    assert len(graphs) == 1
    assert _graph_ops(graphs).count(ops.attention_forward) == 1
