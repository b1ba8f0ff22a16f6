"""Accuracy of `sageattn` on the GPU against float64 and against the CPU emulation (the oracle).

Small shapes (B=1, H<=8, N<=3001) use the elementwise oracle of gpu_helpers; the large shape of
the design's accuracy table (B=2, H=8, N=4096) uses global relative-L1 thresholds against a
float64 reference computed on the GPU.
"""

import pytest
import torch

from sageattention import sageattn

from gpu_helpers import (FP8_ATOL_FRAC, SM90_KERNELS, assert_lse_oracle, assert_oracle, emulated, exact, hnd,
                         make_inputs, poison_allocator, rel_l1, unsampled_key)
from gpu_common import no_grad_with_library  # noqa: F401 (autouse fixture: the library, no grad)

pytestmark = pytest.mark.gpu


# `kernel` (conftest.py): every test runs on each kernel the device can run (sm80_mma everywhere,
# sm90_wgmma and sm90_wgmma_pv16 on Hopper builds with 90a), whatever "auto" would pick.


def check_call(q, k, v, kernel, layout="HND", is_causal=False, sm_scale=None, qk_quant_gran="per_thread",
               smooth_k=True, what="", rotate_qk=True):
    """Runs sageattn with return_lse on NaN-poisoned output memory; checks the output and the LSE
    with the oracle. Returns (out HND, ref out)."""
    b, hq, nq, d = hnd(q, layout).shape
    poison_allocator((q.shape, q.dtype), ((b, hq, nq), torch.float32))
    out, lse = sageattn(q, k, v, tensor_layout=layout, is_causal=is_causal, sm_scale=sm_scale,
                        return_lse=True, qk_quant_gran=qk_quant_gran, smooth_k=smooth_k, kernel=kernel,
                        rotate_qk=rotate_qk)
    assert out.shape == q.shape and out.dtype == q.dtype and out.is_contiguous()
    assert lse.shape == (b, hq, nq) and lse.dtype == torch.float32
    ref, ref_lse = exact(q, k, v, layout=layout, is_causal=is_causal, sm_scale=sm_scale)
    emul, emul_lse = emulated(q, k, v, layout=layout, is_causal=is_causal, sm_scale=sm_scale,
                              qk_quant_gran=qk_quant_gran, smooth_k=smooth_k, kernel=kernel, rotate_qk=rotate_qk)
    out_hnd = hnd(out, layout)
    what = f"[{kernel}] {what}"
    assert_oracle(out_hnd, ref, emul, q.dtype, what=what,
                  atol_frac=FP8_ATOL_FRAC if kernel == "sm90_wgmma" else None)
    assert_lse_oracle(lse, ref_lse, emul_lse, what=what)
    empty_rows = ~torch.isfinite(ref_lse)
    assert torch.all(out_hnd[empty_rows] == 0), f"{what}: rows with no key must be zeros"
    return out_hnd, ref


def refused_head_dim(q, k, v, kernel, head_dim):
    """The sm90 kernel's 16-bit P.V stops at head dim 128 (its E4M3 P.V runs 256 natively): above,
    the call must raise (and say why), and the test has nothing more to check on that kernel."""
    if kernel != "sm90_wgmma_pv16" or head_dim <= 128:
        return False
    with pytest.raises(NotImplementedError, match="up to 128"):
        sageattn(q, k, v, kernel=kernel)
    return True


@pytest.mark.parametrize("kind", ["gaussian", "k_bias", "outlier"])
@pytest.mark.parametrize("head_dim", [64, 128, 256])
@pytest.mark.parametrize("is_causal", [False, True])
def test_oracle_distributions(kind, head_dim, is_causal, kernel):
    q, k, v = make_inputs(kind, (1, 2, 512, head_dim), (1, 2, 512, head_dim), seed=1)
    if refused_head_dim(q, k, v, kernel, head_dim):
        return
    check_call(q, k, v, kernel, is_causal=is_causal, what=f"{kind} d={head_dim} causal={is_causal}")


@pytest.mark.parametrize("keys", [511, 512, 1023, 1024, 2047, 2048, 3001])
def test_sampled_k_mean_at_the_threshold(keys, kernel):
    """K smoothing's mean over one key in 2, 4 or 8 from 512, 1024 or 2048 keys on (common/tiling.h):
    the kernels against the emulation, which samples the same keys. The channel bias (8 sigma) makes
    a wrong mean show: one divided by the key count instead of the sample count would leave half or
    more of the bias in the INT8 range."""
    q, k, v = make_inputs("k_bias", (1, 2, 130, 128), (1, 2, keys, 128), seed=11)
    check_call(q, k, v, kernel, what=f"{keys} keys")
    check_call(q, k, v, kernel, is_causal=True, what=f"{keys} keys causal")


@pytest.mark.parametrize("keys, head_dim", [(1024, 128), (3001, 64), (3001, 128), (2048, 256)])
@pytest.mark.parametrize("shape", ["outlier", "sparse"])
def test_v_outlier_outside_the_sample(keys, head_dim, shape, kernel):
    """FP8 V's channel scale maps 4 x the sample's max|V - vbar| to 448 (common/tiling.h); a V value
    at a key the sample skips that this scale does not cover sends its (batch, head) to the exact
    maxima over all keys (quant/v_fp8.cuh). Head 1 has such values, head 0 not: the kernels against
    the emulation, which takes the same two paths. "outlier": one token of 50 in every channel
    (clipped at 4 x the sample's ~3.5 sigma it would move each row by ~36 / keys); "sparse": channel
    5 zero except 40 at 20 skipped keys (a channel the sample finds zero: zeroed, each row would lose
    ~800 / keys in it)."""
    q, k, v = make_inputs("gaussian", (1, 2, 130, head_dim), (1, 2, keys, head_dim), seed=12)
    if shape == "outlier":
        v[0, 1, unsampled_key(keys, keys // 3)] = 50.0
    else:
        v[0, 1, :, 5] = 0.0
        key = 0
        for _ in range(20):
            key = unsampled_key(keys, key + 37)
            v[0, 1, key, 5] = 40.0
    if refused_head_dim(q, k, v, kernel, head_dim):
        return
    check_call(q, k, v, kernel, what=f"V {shape}, {keys} keys, d={head_dim}")
    check_call(q, k, v, kernel, is_causal=True, what=f"V {shape}, {keys} keys, d={head_dim}, causal")


@pytest.mark.parametrize("kind", ["gaussian", "outlier"])
@pytest.mark.parametrize("is_causal", [False, True])
def test_without_rotation(kind, is_causal, kernel):
    """rotate_qk=False: the kernels against the emulation without the rotation."""
    q, k, v = make_inputs(kind, (1, 2, 300, 128), (1, 2, 333, 128), seed=9)
    check_call(q, k, v, kernel, is_causal=is_causal, rotate_qk=False, what=f"{kind} no rotation")


def test_rotation_halves_the_outlier_error(kernel):
    """What the rotation is for (docs/accuracy.md): on outlier channels it must cut the error well
    below the unrotated call's (H200: 0.52x on sm80, 0.61x on sm90 at this design's shape)."""
    q, k, v = make_inputs("outlier", (1, 8, 2048, 128), (1, 8, 2048, 128), seed=10)
    ref, _ = exact(q, k, v)
    rotated = rel_l1(sageattn(q, k, v, kernel=kernel), ref)
    plain = rel_l1(sageattn(q, k, v, kernel=kernel, rotate_qk=False), ref)
    print(f"ROTATION {kernel} outlier: rel L1 {rotated:.3e} rotated, {plain:.3e} without")
    assert rotated < 0.75 * plain, f"[{kernel}] rotated {rotated:.3e} vs {plain:.3e}"


# Relative-L1 bounds at B=2, H=8, N=4096. sm80 (fp16 P.V): the foundation issue's targets. sm90
# (FP8 P.V with V smoothing): K/V bias is design.md's 1.5e-3; on Gaussian data E4M3 rounding of P
# and V alone gives ~3.75e-2 (docs/accuracy.md), above design.md's 3.5e-2, so the bound is 4.2e-2.
GLOBAL_REL_L1 = {
    "sm80_mma": {"gaussian": 1.5e-2, "k_bias": 1.0e-3},
    "sm90_wgmma": {"gaussian": 4.2e-2, "k_bias": 1.5e-3},
    # The accurate mode (16-bit P.V): design.md's accurate-mode targets.
    "sm90_wgmma_pv16": {"gaussian": 1.3e-2, "k_bias": 5e-4},
}


@pytest.mark.parametrize("kind", ["gaussian", "k_bias"])
@pytest.mark.parametrize("head_dim", [64, 96, 128, 256])
def test_global_accuracy_large(kind, head_dim, kernel):
    q, k, v = make_inputs(kind, (2, 8, 4096, head_dim), (2, 8, 4096, head_dim), seed=2)
    if refused_head_dim(q, k, v, kernel, head_dim):
        return
    out = sageattn(q, k, v, kernel=kernel)
    ref, _ = exact(q, k, v)
    err = rel_l1(out, ref)
    sdpa_err = rel_l1(torch.nn.functional.scaled_dot_product_attention(q, k, v), ref)
    bound = GLOBAL_REL_L1[kernel][kind]
    print(f"ACCURACY {kernel} {kind} d={head_dim}: rel L1 {err:.3e} (SDPA fp16 {sdpa_err:.3e})")
    assert err <= bound, f"[{kernel}] rel L1 {err:.3e} > {bound:.1e}"


def test_outlier_large_is_finite_and_close(kernel):
    q, k, v = make_inputs("outlier", (2, 8, 4096, 128), (2, 8, 4096, 128), seed=3)
    out = sageattn(q, k, v, kernel=kernel)
    ref, _ = exact(q, k, v)
    assert torch.isfinite(out).all()
    err = rel_l1(out, ref)
    print(f"ACCURACY {kernel} outlier d=128: rel L1 {err:.3e}")
    assert err <= 1e-1


def test_broadcast_v_heads(kernel):
    """V expanded over its heads (stride 0): the 16-bit P.V kernel cannot describe it with a tensor
    map and takes the pre-pass copy instead (src/api/tensor_map.h); every kernel must give the
    result of the same values materialized. 300 keys: a partial last tile."""
    q, k, v = make_inputs("k_bias", (2, 4, 200, 128), (2, 2, 300, 128), seed=12)
    v_broadcast = v[:, :1].expand(2, 2, 300, 128)
    assert v_broadcast.stride(1) == 0
    out = sageattn(q, k, v_broadcast, kernel=kernel)
    same = sageattn(q, k, v_broadcast.contiguous(), kernel=kernel)
    torch.testing.assert_close(out, same, rtol=0, atol=0)
    check_call(q, k, v_broadcast.contiguous(), kernel, what="broadcast V heads (materialized)")


ODD_LENGTHS = [1, 7, 63, 65, 127, 129, 1000, 1023, 3001]


@pytest.mark.parametrize("length", ODD_LENGTHS)
@pytest.mark.parametrize("which", ["q", "kv"])
@pytest.mark.parametrize("is_causal", [False, True])
def test_odd_lengths(length, which, is_causal, kernel):
    nq, nkv = (length, 200) if which == "q" else (200, length)
    q, k, v = make_inputs("gaussian", (1, 2, nq, 64), (1, 2, nkv, 64), seed=length)
    check_call(q, k, v, kernel, is_causal=is_causal, what=f"nq={nq} nkv={nkv} causal={is_causal}")


@pytest.mark.parametrize("nq, nkv", [(100, 300), (300, 100), (1, 513), (513, 1), (129, 64), (64, 129)])
def test_causal_unequal_lengths(nq, nkv, kernel):
    q, k, v = make_inputs("k_bias", (1, 2, nq, 64), (1, 2, nkv, 64), seed=nq + nkv)
    out, _ = check_call(q, k, v, kernel, is_causal=True, what=f"causal nq={nq} nkv={nkv}")
    if nq > nkv:  # bottom-right: the first nq - nkv query rows see no key
        assert torch.all(out[:, :, : nq - nkv] == 0)


@pytest.mark.parametrize("heads_kv", [2, 1])
@pytest.mark.parametrize("is_causal", [False, True])
def test_gqa_and_mqa(heads_kv, is_causal, kernel):
    q, k, v = make_inputs("k_bias", (1, 8, 256, 128), (1, heads_kv, 320, 128), seed=heads_kv)
    check_call(q, k, v, kernel, is_causal=is_causal, what=f"heads_kv={heads_kv}")


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_nhd_from_packed_qkv(dtype, kernel):
    b, n, h, d = 2, 300, 4, 64
    qkv = torch.randn(b, n, 3, h, d, device="cuda", dtype=dtype)
    q, k, v = qkv[:, :, 0], qkv[:, :, 1], qkv[:, :, 2]
    out, _ = check_call(q, k, v, kernel, layout="NHD", what=f"packed qkv {dtype}")
    hnd_out = sageattn(*(t.transpose(1, 2).contiguous() for t in (q, k, v)), kernel=kernel)
    torch.testing.assert_close(out, hnd_out, rtol=1e-3, atol=1e-3)


@pytest.mark.parametrize("kind", ["gaussian", "k_bias"])
@pytest.mark.parametrize("is_causal", [False, True])
def test_bf16(kind, is_causal, kernel):
    q, k, v = make_inputs(kind, (1, 2, 384, 128), (1, 2, 448, 128), dtype=torch.bfloat16, seed=4)
    check_call(q, k, v, kernel, is_causal=is_causal, what=f"bf16 {kind}")


@pytest.mark.parametrize("head_dim", [8, 16, 40, 64, 80, 96, 128, 1, 36, 100, 127, 129, 136, 192, 250, 256])
def test_head_dims(head_dim, kernel):
    # Multiples of 8 run in place; the others are zero-padded to the next multiple of 8.
    q, k, v = make_inputs("k_bias", (1, 2, 200, head_dim), (1, 2, 333, head_dim), seed=head_dim)
    if refused_head_dim(q, k, v, kernel, head_dim):
        return
    check_call(q, k, v, kernel, what=f"head_dim={head_dim}")
    check_call(q, k, v, kernel, is_causal=True, sm_scale=0.3, what=f"head_dim={head_dim} causal scale 0.3")


@pytest.mark.parametrize("kernel_choice", ["auto", "fixture"])
def test_every_head_dim_runs(kernel_choice, kernel):
    """Every head dim the library accepts (1..256, zero-padded to 64 / 128 / 256 inside), on fresh
    inputs with odd lengths, with kernel="auto" (what users call) and with each kernel: finite and
    close to float64 (a wrong padding or an unwritten column gives errors of order 1; test_head_dims
    checks sampled head dims element by element). The sm90 kernel's 16-bit P.V refuses above 128."""
    if kernel_choice == "auto" and kernel != "sm80_mma":
        pytest.skip("the auto sweep runs once")
    chosen = "auto" if kernel_choice == "auto" else kernel
    top = 128 if chosen == "sm90_wgmma_pv16" else 256
    worst = (0.0, 0)
    for head_dim in range(1, 257):
        q, k, v = make_inputs("k_bias", (1, 2, 77, head_dim), (1, 2, 93, head_dim), seed=head_dim)
        if head_dim > top:
            assert refused_head_dim(q, k, v, chosen, head_dim)
            continue
        out = sageattn(q, k, v, kernel=chosen, is_causal=head_dim % 2 == 1)
        assert out.shape == q.shape and torch.isfinite(out).all(), head_dim
        error = rel_l1(out, exact(q, k, v, is_causal=head_dim % 2 == 1)[0])
        worst = max(worst, (error, head_dim))
    assert worst[0] < 5e-2, f"[{chosen}] head_dim {worst[1]}: rel L1 {worst[0]:.3e}"
    print(f"[{chosen}] every head dim 1..{top}: worst rel L1 {worst[0]:.3e} at {worst[1]}")


@pytest.mark.parametrize("smooth_k", [True, False])
@pytest.mark.parametrize("gran", ["per_thread", "per_warp"])
@pytest.mark.parametrize("kind", ["gaussian", "k_bias"])
def test_lse_and_granularity(smooth_k, gran, kind, kernel):
    q, k, v = make_inputs(kind, (1, 2, 300, 128), (1, 2, 700, 128), seed=5)
    check_call(q, k, v, kernel, qk_quant_gran=gran, smooth_k=smooth_k,
               what=f"{kind} {gran} smooth_k={smooth_k}")


def test_kv_len_one_returns_v(kernel):
    q, k, v = make_inputs("gaussian", (1, 4, 77, 64), (1, 4, 1, 64), seed=6)
    out = sageattn(q, k, v, kernel=kernel)
    torch.testing.assert_close(out, v.expand_as(out), rtol=2e-3, atol=2e-3)


EXTREME_SHAPE = (1, 2, 150, 64)
BOTH_DTYPES = pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
BOTH_MASKS = pytest.mark.parametrize("is_causal", [False, True])


@BOTH_DTYPES
@BOTH_MASKS
def test_zero_inputs(dtype, is_causal, kernel):
    zeros = torch.zeros(EXTREME_SHAPE, device="cuda", dtype=dtype)
    out, lse = sageattn(zeros, zeros, zeros, is_causal=is_causal, return_lse=True, kernel=kernel)
    assert torch.all(out == 0) and torch.isfinite(lse).all()


@BOTH_DTYPES
@BOTH_MASKS
def test_constant_rows(dtype, is_causal, kernel):
    # Every score equal: the output is the mean of V over the allowed keys.
    const = torch.full(EXTREME_SHAPE, 3.0, device="cuda", dtype=dtype)
    v = torch.randn(EXTREME_SHAPE, device="cuda", dtype=dtype)
    out, lse = sageattn(const, const, v, is_causal=is_causal, return_lse=True, kernel=kernel)
    ref, ref_lse = exact(const, const, v, is_causal=is_causal)
    # FP8 V: each element carries up to half an E4M3 step at the channel's max |V - vbar| (16 / 448
    # of it); causal rows near the top average only a few keys, so that error is not averaged out.
    atol = 0.04 * v.abs().max().item() if kernel == "sm90_wgmma" else 2e-2
    torch.testing.assert_close(out.double(), ref, rtol=2e-2, atol=atol)
    torch.testing.assert_close(lse.double(), ref_lse, rtol=1e-3, atol=1e-3)


@BOTH_DTYPES
@BOTH_MASKS
def test_huge_magnitudes(dtype, is_causal, kernel):
    # |x| up to 6e4 (fp16's range; 1e6 for bf16): softmax saturates to nearly one-hot, so the
    # output must stay finite and inside the convex hull of V's rows.
    big = 6e4 if dtype == torch.float16 else 1e6
    gen = torch.Generator(device="cuda").manual_seed(9)
    q, k, v = ((torch.rand(EXTREME_SHAPE, device="cuda", generator=gen) * 2 - 1) * big for _ in range(3))
    q, k, v = q.to(dtype), k.to(dtype), v.to(dtype)
    out, lse = sageattn(q, k, v, is_causal=is_causal, return_lse=True, kernel=kernel)
    bad_rows = (~torch.isfinite(out)).any(dim=-1)
    assert not bad_rows.any(), f"{int(bad_rows.sum())} of {bad_rows.numel()} rows have NaN/Inf"
    assert torch.isfinite(lse).all()
    v_max = v.float().amax(dim=2, keepdim=True)
    v_min = v.float().amin(dim=2, keepdim=True)
    # 16-bit P.V: output rounding; FP8 V: half an E4M3 step at the channel max (16/448 of 2 * big).
    slack = (8e-2 if kernel == "sm90_wgmma" else 1e-2) * big
    above = (out.float() - v_max).max().item()
    below = (v_min - out.float()).max().item()
    assert above <= slack and below <= slack, f"outside V's hull by {max(above, below):.4g} > {slack:.4g}"


def test_inputs_are_not_modified(kernel):
    q, k, v = make_inputs("k_bias", (1, 2, 200, 64), (1, 2, 200, 64), seed=7)
    copies = [t.clone() for t in (q, k, v)]
    sageattn(q, k, v, is_causal=True, kernel=kernel)
    torch.cuda.synchronize()
    assert all(torch.equal(a, b) for a, b in zip((q, k, v), copies))
