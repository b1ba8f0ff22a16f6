"""The drop-in layer on the GPU: upstream's per-kernel functions, V smoothing, the LSE contract,
sageattn_varlen and SDPA routing, each against float64 attention (and against sageattn itself
where a function must be exactly a sageattn call)."""

import functools
import itertools
import random

import pytest
import torch
import torch.nn.functional as F

import sageattention
from sageattention import compat, sageattn, sageattn_varlen

import exact_reference
from gpu_common import no_grad_with_library, same_result  # noqa: F401 (autouse fixture)
from gpu_helpers import (FP8_ATOL_FRAC, OUTPUT_EPS, assert_global_oracle, assert_lse_oracle, assert_oracle,
                         emulated, exact, hnd, kernel_used, make_inputs, rel_l1)

pytestmark = pytest.mark.gpu

# Relative L1 against float64 on inputs with K/V channel bias (make_inputs "k_bias"), by the kernel
# the call runs. The CPU emulation of each kernel on these tests' shapes (fp16, D=64 and 128, up to
# 500 tokens, causal down to 100 x 100): 16-bit P.V 3.9e-4..1.1e-3, FP8 P.V with V smoothing
# 1.4e-3..4.2e-3 (fewer keys per row, larger error); the kernels add their output rounding
# (~1.7e-4 for fp16). A wrong head, token or scale mapping gives errors of order 1.
REL_L1_BIASED = {"sm80_mma": 3e-3, "sm90_wgmma": 1e-2, "sm90_wgmma_pv16": 3e-3}


def check_against_emulation(out, lse, q, k, v, kernel, layout, is_causal, sm_scale, qk_quant_gran, what=""):
    """out (in `layout`) and lse of a plain kernel call against float64, with the CPU emulation of
    `kernel` as the oracle (gpu_helpers.assert_oracle / assert_lse_oracle). The LSE comes from the
    INT8 Q.K^T alone, so its error is that of the quantized scores: rows that see few keys (the
    first rows of a causal mask) carry the error of single scores, ~1e-2 and up to a few 1e-2 at
    max; a fixed bound would have to sit above that and could no longer tell a real LSE bug."""
    ref, ref_lse = exact(q, k, v, layout=layout, is_causal=is_causal, sm_scale=sm_scale)
    emul, emul_lse = emulated(q, k, v, layout=layout, kernel=kernel, is_causal=is_causal, sm_scale=sm_scale,
                              qk_quant_gran=qk_quant_gran)
    what = f"[{kernel}] {what}"
    assert_oracle(hnd(out, layout), ref, emul, q.dtype, what=what,
                  atol_frac=FP8_ATOL_FRAC if kernel == "sm90_wgmma" else None)
    assert_lse_oracle(lse, ref_lse, emul_lse, what=what)


COMPAT_CALLS = [  # (function, kernel it must equal, extra arguments)
    ("sageattn_qk_int8_pv_fp16_cuda", "auto_pv16", {"pv_accum_dtype": "fp32"}),
    ("sageattn_qk_int8_pv_fp16_cuda", "auto_pv16", {"pv_accum_dtype": "fp16", "qk_quant_gran": "per_warp"}),
    ("sageattn_qk_int8_pv_fp16_triton", "auto_pv16", {"quantization_backend": "cuda"}),
    ("sageattn_qk_int8_pv_fp8_cuda", "auto", {"pv_accum_dtype": "fp32+fp16"}),
    ("sageattn_qk_int8_pv_fp8_cuda_sm90", "auto", {"pv_accum_dtype": "fp32+fp32", "qk_quant_gran": "per_warp"}),
]


# Head dim 128: "auto" (the pv_fp8 functions) is the FP8 P.V kernel on Hopper and "auto_pv16" (the
# pv_fp16 ones) its 16-bit P.V variant; 64: sm80_mma for both.
@pytest.mark.parametrize("head_dim", [64, 128])
@pytest.mark.parametrize("name, kernel, extra", COMPAT_CALLS)
@pytest.mark.parametrize("layout", ["HND", "NHD"])
def test_compat_functions_are_sageattn_calls(name, kernel, extra, layout, head_dim, library):
    q_shape, kv_shape = (1, 8, 333, head_dim), (1, 2, 401, head_dim)
    if layout == "NHD":
        q_shape, kv_shape = (1, 333, 8, head_dim), (1, 401, 2, head_dim)
    q, k, v = make_inputs("k_bias", q_shape, kv_shape, dtype=torch.bfloat16, seed=1, layout=layout)
    gran = extra.get("qk_quant_gran", "per_thread")
    out, lse = getattr(compat, name)(q, k, v, tensor_layout=layout, is_causal=True, sm_scale=0.1,
                                     return_lse=True, **extra)
    expected_out, expected_lse = sageattn(
        q, k, v, tensor_layout=layout, is_causal=True, sm_scale=0.1, return_lse=True, kernel=kernel,
        qk_quant_gran=gran)
    same_result(out, expected_out)
    same_result(lse, expected_lse)
    check_against_emulation(out, lse, q, k, v, kernel_used(kernel, library, head_dim, 333, causal=True), layout,
                            is_causal=True,
                            sm_scale=0.1, qk_quant_gran=gran, what=f"{name} {layout} d={head_dim}")


def test_flash_attn_keywords_of_ring_attention_are_honoured():
    # yunchang's partial, called as xDiT's ring attention calls it (see test_compat.py on the CPU).
    fn = functools.partial(sageattention.sageattn_qk_int8_pv_fp16_cuda, pv_accum_dtype="fp32",
                           tensor_layout="NHD", return_lse=True)
    q, k, v = make_inputs("k_bias", (2, 300, 4, 128), (2, 300, 4, 128), seed=2, layout="NHD")
    out, lse = fn(q, k, v, dropout_p=0.0, softmax_scale=0.05, causal=True, window_size=(-1, -1),
                  softcap=0.0, alibi_slopes=None, return_softmax=False)
    expected = sageattn(q, k, v, tensor_layout="NHD", is_causal=True, sm_scale=0.05, return_lse=True,
                        kernel="auto_pv16")
    same_result(out, expected[0])
    same_result(lse, expected[1])


@pytest.mark.parametrize("name", ["sageattn_qk_int8_pv_fp16_cuda", "sageattn_qk_int8_pv_fp8_cuda"])
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("q_len, kv_len, heads", [(257, 257, (4, 4)), (300, 129, (6, 2)), (77, 500, (4, 1))])
def test_smooth_v(name, dtype, q_len, kv_len, heads, library):
    """Exact in real arithmetic: same attention as without smoothing, rows without keys stay 0."""
    head_dim = 72  # > 64: the pv_fp8 function runs the FP8 P.V kernel on Hopper
    q, k, v = make_inputs("k_bias", (1, heads[0], q_len, head_dim), (1, heads[1], kv_len, head_dim),
                          dtype=dtype, seed=q_len)
    v = v + (8 * torch.randn(1, heads[1], 1, head_dim, device="cuda")).to(dtype)  # a strong V bias
    out, lse = getattr(compat, name)(q, k, v, is_causal=True, smooth_v=True, return_lse=True)
    kernel = kernel_used("auto_pv16" if "pv_fp16" in name else "auto", library, head_dim, q_len, causal=True)
    ref, ref_lse = exact(q, k, v, is_causal=True)
    # The tolerance: the emulation of what the wrapper runs (the kernel on V minus its channel
    # mean, rounded to dtype; the mean added back after) plus its two roundings to dtype, of the
    # kernel's output and of the restored one (half an ulp each at most).
    v_mean = v.mean(dim=2, keepdim=True, dtype=torch.float32)
    emul, emul_lse = emulated(q, k, (v - v_mean).to(dtype), is_causal=True, kernel=kernel)
    v_mean = v_mean.double().repeat_interleave(heads[0] // heads[1], dim=1)
    emul = emul + v_mean
    emul[:, :, : max(0, q_len - kv_len)] = 0
    rounding = 0.5 * OUTPUT_EPS[dtype] * (ref.abs().mean() + (ref - v_mean).abs().mean())
    what = f"[{kernel}] {name} {dtype} {q_len}x{kv_len}"
    assert_global_oracle(out, ref, emul, dtype, what=what, rounding=rounding)
    assert_lse_oracle(lse, ref_lse, emul_lse, what=what)
    if q_len > kv_len:
        assert torch.all(out[:, :, : q_len - kv_len] == 0), "rows that see no key must stay 0"


def varlen_emulated(q, k, v, cu_q, cu_k, is_causal, kernel):
    """The emulation of sageattn_varlen (one dense call per sequence) on packed [T, H, D] tensors."""
    pieces = []
    for s in range(len(cu_q) - 1):
        q_s, k_s, v_s = q[cu_q[s]:cu_q[s + 1]], k[cu_k[s]:cu_k[s + 1]], v[cu_k[s]:cu_k[s + 1]]
        if q_s.shape[0] == 0:
            continue
        if k_s.shape[0] == 0:
            pieces.append(torch.zeros(q_s.shape, dtype=torch.float64, device=q.device))
            continue
        out, _ = emulated(q_s[None], k_s[None], v_s[None], layout="NHD", is_causal=is_causal, kernel=kernel)
        pieces.append(out[0].transpose(0, 1))
    return torch.cat(pieces)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("is_causal", [False, True])
@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("kernel", ["auto", "sm80_mma"])
def test_varlen_matches_block_diagonal_attention(dtype, is_causal, seed, kernel, library):
    rng = random.Random(seed)
    batch = rng.randint(2, 6)
    lengths_q = [rng.choice([0, 1, 17, rng.randint(1, 300)]) for _ in range(batch)]
    lengths_k = [rng.choice([0, 1, 64, rng.randint(1, 300)]) for _ in range(batch)]
    lengths_q[0] = max(lengths_q[0], 5)
    lengths_k[-1] = max(lengths_k[-1], 5)
    heads_kv = rng.choice([1, 2, 4])
    heads_q, head_dim = heads_kv * rng.choice([1, 2]), rng.choice([64, 72, 128])
    gen = torch.Generator(device="cuda").manual_seed(seed)
    q = torch.randn(sum(lengths_q), heads_q, head_dim, device="cuda", generator=gen).to(dtype)
    k = (torch.randn(sum(lengths_k), heads_kv, head_dim, device="cuda", generator=gen) + 3).to(dtype)
    v_bias = 2 * torch.randn(heads_kv, head_dim, device="cuda", generator=gen)  # as real activations
    v = (torch.randn(sum(lengths_k), heads_kv, head_dim, device="cuda", generator=gen) + v_bias).to(dtype)
    cu_q = torch.tensor([0, *itertools.accumulate(lengths_q)], dtype=torch.int32, device="cuda")
    cu_k = torch.tensor([0, *itertools.accumulate(lengths_k)], dtype=torch.int32)  # on the CPU: no sync
    out = sageattn_varlen(q, k, v, cu_q, cu_k, max(lengths_q), max(lengths_k), is_causal=is_causal, kernel=kernel)
    ref = exact_reference.varlen_attention(q, k, v, cu_q.tolist(), cu_k.tolist(), is_causal)
    assert out.shape == q.shape and out.dtype == dtype and torch.isfinite(out).all()
    kernel = kernel_used(kernel, library, head_dim, max(lengths_q), packed=True)
    emul = varlen_emulated(q, k, v, cu_q.tolist(), cu_k.tolist(), is_causal, kernel)
    assert_global_oracle(out, ref, emul, dtype, what=f"[{kernel}] varlen {lengths_q} {lengths_k}")
    for s in range(batch):
        if lengths_k[s] == 0:  # queries without keys: exactly zero
            assert torch.all(out[cu_q[s]:cu_q[s + 1]] == 0)


def top_left_reference(q, k, v, is_causal):
    """float64 SDPA semantics (top-left causal) for HND inputs."""
    mask = None
    if is_causal:
        mask = torch.ones(q.shape[2], k.shape[2], dtype=torch.bool, device=q.device).tril()
    return F.scaled_dot_product_attention(q.double(), k.double(), v.double(), attn_mask=mask)


@pytest.mark.parametrize("q_len, kv_len, is_causal, routed", [
    (500, 500, False, True), (500, 500, True, True), (100, 700, True, True),  # top-left == first keys
    (700, 100, True, False),  # top-left with more queries than keys: SDPA's own semantics
])
def test_patched_sdpa_keeps_sdpa_semantics(q_len, kv_len, is_causal, routed, library):
    q, k, v = make_inputs("k_bias", (2, 8, q_len, 64), (2, 8, kv_len, 64), seed=3)
    expected_sdpa = F.scaled_dot_product_attention(q, k, v, is_causal=is_causal)
    with sageattention.sdpa_patched() as stats:
        out = F.scaled_dot_product_attention(q, k, v, is_causal=is_causal)
    assert stats.routed == int(routed) and stats.total == 1
    if routed:
        bound = REL_L1_BIASED[kernel_used("auto", library, q.shape[-1], q.shape[2])]
        assert rel_l1(out, top_left_reference(q, k, v, is_causal)) < bound
    else:
        assert torch.equal(out, expected_sdpa) and stats.fallbacks == {"causal_top_left": 1}


def test_patched_sdpa_routes_masks_when_asked(library):
    q, k, v = make_inputs("k_bias", (2, 4, 300, 128), (2, 4, 300, 128), seed=9)
    keep = torch.rand(2, 1, 300, 300, device="cuda") < 0.6
    keep[0, 0, 7] = False  # a row that sees no key: zeros (SDPA's kernels give something else)
    bias = torch.where(keep, torch.randn(2, 1, 300, 300, device="cuda"), float("-inf")).half()
    with sageattention.sdpa_patched(route_masks=True) as stats:
        routed_bool = F.scaled_dot_product_attention(q, k, v, attn_mask=keep)
        routed_bias = F.scaled_dot_product_attention(q, k, v, attn_mask=bias)
    assert stats.as_dict() == {"routed": 2, "fallbacks": {}, "total": 2}
    bound = REL_L1_BIASED[kernel_used("auto", library, q.shape[-1], q.shape[2])]
    for out, mask in ((routed_bool, keep), (routed_bias, bias)):
        assert rel_l1(out, exact(q, k, v, attn_mask=mask)[0]) < bound
        assert torch.all(out[0, :, 7] == 0)


def test_patched_sdpa_gqa_and_fallbacks_on_the_gpu(library):
    q, k, v = make_inputs("k_bias", (1, 8, 256, 128), (1, 2, 256, 128), seed=4)
    mask = torch.rand(256, 256, device="cuda") > 0.5
    with sageattention.sdpa_patched() as stats:
        gqa = F.scaled_dot_product_attention(q, k, v, enable_gqa=True)
        masked = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, enable_gqa=True)
        fp32 = F.scaled_dot_product_attention(q.float(), k.float(), v.float(), enable_gqa=True)
    assert stats.as_dict() == {"routed": 1, "fallbacks": {"attn_mask": 1, "dtype": 1}, "total": 3}
    reference = exact(q, k, v)[0]
    assert rel_l1(gqa, reference) < REL_L1_BIASED[kernel_used("auto", library, q.shape[-1], q.shape[2])]
    assert torch.equal(masked, F.scaled_dot_product_attention(q, k, v, attn_mask=mask, enable_gqa=True))
    assert fp32.dtype == torch.float32
