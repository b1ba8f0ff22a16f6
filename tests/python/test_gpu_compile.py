"""The drop-in entry points under torch.compile(mode="reduce-overhead") and CUDA graph capture (GPU).

For each entry point: compiled calls on fresh inputs of one shape must not recompile (Dynamo's
error_on_recompile after the first call) and must equal eager calls; a CUDA graph captured once and
replayed on new input values must equal eager calls. (The operator itself: test_gpu_runtime.py has
opcheck, graph capture and fullgraph compile of sageattn.)
"""

import contextlib

import pytest
import torch
import torch.nn.functional as F

import sageattention
from sageattention import compat, sageattn

from gpu_common import no_grad_with_library, same_result  # noqa: F401 (autouse fixture)
from gpu_helpers import make_inputs

pytestmark = pytest.mark.gpu

# NHD, GQA, odd lengths. Head dim 64 runs the sm80 kernel everywhere; 128 runs, on Hopper, the wgmma
# kernel wherever "auto" is the kernel (sageattn, the fp8_cuda_sm90 function, patched SDPA): at these
# lengths its 16-bit P.V variant (src/api/plan.cpp).
HEAD_DIMS = [64, 128]


def _shapes(head_dim):
    return (2, 300, 8, head_dim), (2, 333, 2, head_dim)


def _hnd(t):
    return t.transpose(1, 2)


# name -> (attention(q, k, v) on NHD tensors, whether SDPA must be patched around it)
ENTRY_POINTS = {
    "sageattn": (lambda q, k, v: sageattn(q, k, v, tensor_layout="NHD", is_causal=True), False),
    "fp16_cuda smooth_v": (lambda q, k, v: compat.sageattn_qk_int8_pv_fp16_cuda(
        q, k, v, tensor_layout="NHD", smooth_v=True, return_lse=True)[0], False),
    "fp8_cuda_sm90 flash-attn kwargs": (lambda q, k, v: compat.sageattn_qk_int8_pv_fp8_cuda_sm90(
        q, k, v, tensor_layout="NHD", softmax_scale=0.1, causal=True), False),
    "triton": (lambda q, k, v: compat.sageattn_qk_int8_pv_fp16_triton(q, k, v, "NHD", "cuda"), False),
    "patched SDPA": (lambda q, k, v: F.scaled_dot_product_attention(
        _hnd(q), _hnd(k), _hnd(v), is_causal=True, enable_gqa=True), True),
}


def _inputs(seed, head_dim):
    return make_inputs("k_bias", *_shapes(head_dim), dtype=torch.float16, seed=seed, layout="NHD")


@pytest.mark.parametrize("head_dim", HEAD_DIMS)
@pytest.mark.parametrize("name", sorted(ENTRY_POINTS))
def test_reduce_overhead_compiles_once_and_matches_eager(name, head_dim):
    attention, patch = ENTRY_POINTS[name]

    def block(q, k, v):
        return attention(q * 1.0, k, v) + 1.0

    torch._dynamo.reset()
    with sageattention.sdpa_patched() if patch else contextlib.nullcontext() as stats:
        compiled = torch.compile(block, mode="reduce-overhead", fullgraph=True)
        for seed in range(4):
            q, k, v = _inputs(seed, head_dim)
            recompiles_forbidden = torch._dynamo.config.patch(error_on_recompile=seed > 0)
            with recompiles_forbidden:
                got = compiled(q, k, v).clone()  # cudagraph outputs are overwritten by the next replay
            same_result(got, block(q, k, v))
    if patch:
        assert stats.routed >= 1 and not stats.fallbacks


@pytest.mark.parametrize("head_dim", HEAD_DIMS)
@pytest.mark.parametrize("name", sorted(ENTRY_POINTS))
def test_cuda_graph_replay_with_new_inputs(name, head_dim):
    attention, patch = ENTRY_POINTS[name]
    q, k, v = _inputs(10, head_dim)
    with sageattention.sdpa_patched() if patch else contextlib.nullcontext():
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):  # warm-up off the capture stream, as torch recommends
            attention(q, k, v)
        torch.cuda.current_stream().wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            graph_out = attention(q, k, v)
        for seed in (11, 12):
            for dst, src in zip((q, k, v), _inputs(seed, head_dim)):
                dst.copy_(src)
            graph.replay()
            eager = attention(q, k, v)
            torch.cuda.synchronize()
            same_result(graph_out, eager)
