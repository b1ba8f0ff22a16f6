"""The operator's fake (shape) implementation and torch.compile tracing, without a GPU.

FakeTensorMode gives shape-only CUDA tensors on any machine, so the whole Python path of
`sageattn` (validation, padding, the op's fake impl) and Dynamo's tracing of it run here.
"""

import pytest
import torch

from sageattention import ops, sageattn

pytest.importorskip("torch._subclasses.fake_tensor")  # FakeTensorMode (conftest: fake_cuda_mode)


def empty(*shape, dtype=torch.float16):
    return torch.empty(*shape, dtype=dtype, device="cuda")


def contiguous_strides(shape):
    strides, acc = [], 1
    for size in reversed(shape):
        strides.append(acc)
        acc *= size
    return tuple(reversed(strides))


@pytest.mark.parametrize("layout, q_shape, kv_shape, lse_shape", [
    ("HND", (2, 8, 100, 64), (2, 2, 77, 64), (2, 8, 100)),
    ("NHD", (2, 100, 8, 128), (2, 77, 1, 128), (2, 8, 100)),
    ("HND", (1, 3, 5, 36), (1, 3, 9, 36), (1, 3, 5)),  # padded head dim: sliced back
    ("NHD", (1, 5, 3, 1), (1, 9, 3, 1), (1, 3, 5)),
])
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_sageattn_shapes_through_fake_op(fake_cuda_mode, layout, q_shape, kv_shape, lse_shape, dtype):
    with fake_cuda_mode:
        q, k, v = empty(*q_shape, dtype=dtype), empty(*kv_shape, dtype=dtype), empty(*kv_shape, dtype=dtype)
        out = sageattn(q, k, v, tensor_layout=layout)
        out2, lse = sageattn(q, k, v, tensor_layout=layout, is_causal=True, return_lse=True)
    for o in (out, out2):
        assert o.shape == q.shape and o.dtype == dtype and o.device.type == "cuda"
        assert o.stride() == contiguous_strides(q_shape)
    assert lse.shape == lse_shape and lse.dtype == torch.float32
    assert lse.stride() == contiguous_strides(lse_shape)


def test_packed_qkv_view_is_not_copied(fake_cuda_mode):
    with fake_cuda_mode:
        qkv = empty(2, 50, 3, 4, 64)
        # select/narrow, not [] indexing: indexing fake CUDA tensors fails in CPU-only torch builds
        q, k, v = qkv.select(2, 0), qkv.select(2, 1), qkv.select(2, 2)
        assert sageattn(q, k, v, tensor_layout="NHD").shape == (2, 50, 4, 64)
    from sageattention import _validate

    assert all(_validate.canonicalize(t, 64) is t for t in (q, k, v))


def test_canonicalize_copies_only_when_needed(fake_cuda_mode):
    from sageattention import _validate

    with fake_cuda_mode:
        x = empty(1, 2, 10, 64)
        assert _validate.canonicalize(x, 64) is x
        transposed = x.transpose(1, 2)  # any strides that are multiples of 8 run in place
        assert _validate.canonicalize(transposed, 64) is transposed
        odd = empty(1, 2, 10, 65).narrow(3, 0, 64)  # token stride 65: rows not 16-byte aligned
        fixed = _validate.canonicalize(odd, 64)
        assert fixed is not odd and fixed.stride() == (1280, 640, 64, 1)
        padded = _validate.canonicalize(empty(1, 2, 10, 36), 40)
        assert padded.shape == (1, 2, 10, 40) and padded.stride() == (800, 400, 40, 1)


@pytest.mark.parametrize("layout", [0, 1])
def test_op_fake_impl_with_meta_tensors(layout):
    q = torch.empty(2, 6, 33, 64, dtype=torch.bfloat16, device="meta")
    k = torch.empty(2, 2, 40, 64, dtype=torch.bfloat16, device="meta") if layout == 0 else \
        torch.empty(2, 6, 11, 64, dtype=torch.bfloat16, device="meta")
    out, lse = ops.attention_forward(q, k, k, layout, True, 0.125, True, True, 0, 0)
    assert out.shape == q.shape and out.dtype == torch.bfloat16 and out.is_contiguous()
    assert lse.shape == ((2, 6, 33) if layout == 0 else (2, 33, 6)) and lse.dtype == torch.float32
    out, lse = ops.attention_forward(q, k, k, layout, False, 0.125, False, True, 0, 0)
    assert lse.shape == (0,) and lse.dtype == torch.float32


def test_op_schema():
    schema = str(ops.attention_forward._schema)
    assert schema.startswith("sageattention::attention_forward(Tensor q, Tensor k, Tensor v, int layout")
    assert schema.endswith("-> (Tensor, Tensor)")


def test_fallback_registration_without_custom_op():
    # The torch-2.3 path (Library.define + impl + fake registration), under its own namespace.
    op = ops.register(namespace="sageattention_fallback_test", use_custom_op=False)
    assert str(op._schema).startswith("sageattention_fallback_test::attention_forward(Tensor q")
    q = torch.empty(1, 9, 4, 64, dtype=torch.float16, device="meta")
    out, lse = op(q, q, q, 1, False, 0.1, True, True, 0, 0)
    assert out.shape == q.shape and lse.shape == (1, 4, 9) and lse.dtype == torch.float32


def _compile_capturing(fn):
    """fn compiled with fullgraph=True by a backend that records every FX graph Dynamo produces."""
    graphs = []

    def backend(gm, example_inputs):
        graphs.append(gm)
        return gm.forward

    torch._dynamo.reset()
    return torch.compile(fn, backend=backend, fullgraph=True), graphs


def _trace(fn, *args):
    """Dynamo-trace fn(*args) with fullgraph=True; returns the captured FX graphs."""
    compiled, graphs = _compile_capturing(fn)
    compiled(*args)
    return graphs


def _trace_fake(mode, fn, *args):
    """_trace under a fake CUDA mode; a graph break fails, a Dynamo that cannot take fake inputs
    at all skips."""
    try:
        with mode:
            return _trace(fn, *args)
    except torch._dynamo.exc.Unsupported:
        raise  # a real graph break
    except Exception as exc:  # pragma: no cover - older Dynamo may not accept fake inputs
        pytest.skip(f"this torch cannot trace with fake CUDA inputs: {type(exc).__name__}: {exc}")


@pytest.mark.parametrize("layout, head_dim", [("HND", 64), ("NHD", 128), ("HND", 36)])
def test_compile_fullgraph_has_no_graph_break(fake_cuda_mode, layout, head_dim):
    def attention(q, k, v):
        out, lse = sageattn(q, k, v, tensor_layout=layout, is_causal=True, return_lse=True)
        return out * 2, lse

    with fake_cuda_mode:
        q = empty(2, 4, 64, head_dim) if layout == "HND" else empty(2, 64, 4, head_dim)
        k = empty(2, 2, 80, head_dim) if layout == "HND" else empty(2, 80, 2, head_dim)
    graphs = _trace_fake(fake_cuda_mode, attention, q, k, k)
    assert len(graphs) == 1
    calls = [n for n in graphs[0].graph.nodes if n.target is ops.attention_forward]
    assert len(calls) == 1


def test_compile_accepts_changing_sm_scale(fake_cuda_mode):
    # A float argument may reach the traced code as a symbolic float; the scale check must not
    # break the graph (math.isfinite on it would) for any of several values.
    def attention(q, k, v, scale):
        return sageattn(q, k, v, sm_scale=scale)

    with fake_cuda_mode:
        q = empty(1, 2, 64, 64)
    compiled, graphs = _compile_capturing(attention)
    try:
        with fake_cuda_mode:
            for scale in (0.1, 0.2, 0.3, 0.4):
                compiled(q, q, q, scale)
    except torch._dynamo.exc.Unsupported:
        raise  # a graph break: the failure this test is for
    except Exception as exc:  # pragma: no cover - older Dynamo may not accept fake inputs
        pytest.skip(f"this torch cannot trace with fake CUDA inputs: {type(exc).__name__}: {exc}")
    assert graphs and all(
        any(n.target is ops.attention_forward for n in g.graph.nodes) for g in graphs)


def test_compile_fullgraph_with_masks(fake_cuda_mode):
    """attn_mask and block_mask trace into the one operator call, as expanded views."""
    def attention(q, k, v, mask, blocks):
        return sageattn(q, k, v, attn_mask=mask, block_mask=blocks) * 2

    with fake_cuda_mode:
        q, k = empty(2, 4, 200, 64), empty(2, 2, 300, 64)
        mask = torch.empty(200, 300, dtype=torch.bool, device="cuda")
        blocks = torch.empty(2, 1, 2, 3, dtype=torch.bool, device="cuda")
    graphs = _trace_fake(fake_cuda_mode, attention, q, k, k, mask, blocks)
    assert len(graphs) == 1
    calls = [n for n in graphs[0].graph.nodes if n.target is ops.attention_forward]
    assert len(calls) == 1 and len(calls[0].args) + len(calls[0].kwargs) >= 13
