"""The numpy wrappers of the C++ CPU reference (CPU).

`attention_exact` is checked against the tests' own torch float64 attention; `attention_emulated`
(the 8-bit pipeline) is checked for plausible accuracy and for the effects it must show.
"""

import math

import numpy as np
import pytest
import torch

from sageattention import reference

import torch_reference


def inputs(b, hq, hkv, nq, nkv, d, seed=0, k_bias=0.0, dtype=np.float16):
    rng = np.random.default_rng(seed)
    q = rng.standard_normal((b, hq, nq, d)).astype(dtype)
    k = (rng.standard_normal((b, hkv, nkv, d)) + k_bias * rng.standard_normal((1, hkv, 1, d))).astype(dtype)
    v = rng.standard_normal((b, hkv, nkv, d)).astype(dtype)
    return q, k, v


def torch_exact(q, k, v, sm_scale=None, is_causal=False):
    out, lse = torch_reference.attention(*(torch.from_numpy(x.astype(np.float64)) for x in (q, k, v)),
                                         sm_scale=sm_scale, is_causal=is_causal)
    return out.numpy(), lse.numpy()


def rel_l1(a, b):
    return np.abs(a - b).sum() / np.abs(b).sum()


@pytest.mark.parametrize("b, hq, hkv, nq, nkv, d", [
    (1, 1, 1, 1, 1, 8),
    (2, 4, 2, 37, 53, 24),     # odd lengths, GQA
    (1, 6, 1, 130, 65, 64),    # MQA
    (1, 2, 2, 7, 300, 128),
])
@pytest.mark.parametrize("is_causal", [False, True])
def test_exact_matches_torch_float64(library, b, hq, hkv, nq, nkv, d, is_causal):
    q, k, v = inputs(b, hq, hkv, nq, nkv, d)
    out, lse = reference.attention_exact(q, k, v, is_causal=is_causal)
    ref_out, ref_lse = torch_exact(q, k, v, is_causal=is_causal)
    assert out.dtype == np.float64 and out.shape == (b, hq, nq, d) and lse.shape == (b, hq, nq)
    np.testing.assert_allclose(out, ref_out, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(lse, ref_lse, rtol=1e-10, atol=1e-12)


def test_exact_causal_bottom_right_with_more_queries_than_keys(library):
    nq, nkv = 50, 20
    q, k, v = inputs(1, 2, 2, nq, nkv, 32)
    out, lse = reference.attention_exact(q, k, v, is_causal=True)
    ref_out, ref_lse = torch_exact(q, k, v, is_causal=True)
    empty_rows = nq - nkv  # query i sees keys j <= i - 30: the first 30 rows see none
    assert np.all(out[:, :, :empty_rows] == 0) and np.all(np.isneginf(lse[:, :, :empty_rows]))
    np.testing.assert_allclose(out, ref_out, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(lse[:, :, empty_rows:], ref_lse[:, :, empty_rows:], rtol=1e-10)
    # Row 30 sees exactly key 0: its output is v[0].
    np.testing.assert_allclose(out[:, :, empty_rows], v[:, :, 0].astype(np.float64), rtol=1e-12)


def test_exact_explicit_scale(library):
    q, k, v = inputs(1, 2, 1, 20, 30, 16)
    out, lse = reference.attention_exact(q, k, v, sm_scale=0.03)
    ref_out, ref_lse = torch_exact(q, k, v, sm_scale=0.03)
    np.testing.assert_allclose(out, ref_out, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(lse, ref_lse, rtol=1e-10)


def test_accepts_torch_tensors_and_bf16(library):
    q, k, v = (torch.from_numpy(x).bfloat16() for x in inputs(1, 2, 2, 10, 12, 16))
    out, _ = reference.attention_exact(q, k, v)
    ref_out, _ = torch_exact(*(x.float().numpy() for x in (q, k, v)))
    np.testing.assert_allclose(out, ref_out, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("gran", ["per_thread", "per_warp"])
@pytest.mark.parametrize("is_causal", [False, True])
def test_emulated_is_close_to_exact(library, gran, is_causal):
    q, k, v = inputs(1, 2, 1, 200, 150, 64, seed=1)
    exact, exact_lse = reference.attention_exact(q, k, v, is_causal=is_causal)
    emul, emul_lse = reference.attention_emulated(q, k, v, is_causal=is_causal, qk_quant_gran=gran)
    assert np.all(np.isfinite(emul))
    err = rel_l1(emul, exact)
    assert 1e-5 < err < 2e-2, err  # quantized (not exact), but INT8 Q.K^T + fp16 P.V accurate
    seen = np.isfinite(exact_lse)  # causal with Nq > Nkv: the first 50 rows see no key
    assert np.array_equal(seen, np.isfinite(emul_lse)) and seen.sum() == 2 * (150 if is_causal else 200)
    assert np.abs(emul_lse[seen] - exact_lse[seen]).max() < 5e-2


def test_smoothing_helps_with_channel_bias(library):
    q, k, v = inputs(1, 2, 2, 256, 256, 64, seed=2, k_bias=8.0)
    exact, _ = reference.attention_exact(q, k, v)
    smooth, _ = reference.attention_emulated(q, k, v, smooth_k=True)
    raw, _ = reference.attention_emulated(q, k, v, smooth_k=False)
    assert rel_l1(smooth, exact) < 0.5 * rel_l1(raw, exact), (rel_l1(smooth, exact), rel_l1(raw, exact))
    assert rel_l1(smooth, exact) < 2e-2


def test_emulated_bf16(library):
    q, k, v = inputs(1, 2, 2, 64, 96, 32, seed=3)
    q, k, v = (torch.from_numpy(x).bfloat16() for x in (q, k, v))
    exact, _ = reference.attention_exact(q, k, v)
    emul, _ = reference.attention_emulated(q, k, v, dtype=torch.bfloat16)
    fp16_emul, _ = reference.attention_emulated(q, k, v, dtype="float16")
    assert rel_l1(emul, exact) < 3e-2
    assert not np.array_equal(emul, fp16_emul)  # P rounded to bf16, not fp16


def test_emulated_empty_causal_rows(library):
    q, k, v = inputs(1, 2, 2, 40, 10, 16, seed=4)
    out, lse = reference.attention_emulated(q, k, v, is_causal=True)
    assert np.all(out[:, :, :30] == 0) and np.all(np.isneginf(lse[:, :, :30]))
    assert np.all(np.isfinite(out)) and np.all(np.isfinite(lse[:, :, 30:]))


def test_emulated_zero_inputs(library):
    z = np.zeros((1, 1, 20, 16), dtype=np.float32)
    out, lse = reference.attention_emulated(z, z, z)
    assert np.all(out == 0)
    np.testing.assert_allclose(lse, math.log(20), rtol=1e-6)


def test_reference_argument_errors(library):
    q, k, v = inputs(1, 4, 2, 10, 12, 16)
    with pytest.raises(ValueError, match="4 dimensions"):
        reference.attention_exact(q[0], k, v)
    with pytest.raises(ValueError, match="multiple"):
        reference.attention_exact(q[:, :3], k, v)
    with pytest.raises(ValueError, match="same shape"):
        reference.attention_exact(q, k, v[:, :, :5])
    with pytest.raises(ValueError, match="qk_quant_gran"):
        reference.attention_emulated(q, k, v, qk_quant_gran="per_block")
    with pytest.raises(ValueError, match="dtype"):
        reference.attention_emulated(q, k, v, dtype="float32")


# --- FP8 (E4M3) P.V --------------------------------------------------------------------------------

LOG2E = 1.4426950408889634


def _div(a, b):
    # One IEEE float32 division per element, as in the C++ code. torch evaluates `scalar / tensor` as
    # reciprocal(tensor) * scalar (two roundings: 127 / amax is off by an ulp for ~1/4 of all amax),
    # so both operands are made full tensors.
    a, b = (torch.as_tensor(x, dtype=torch.float32) for x in (a, b))
    a, b = torch.broadcast_tensors(a, b)
    return a.contiguous() / b.contiguous()


def _float32_mean(x):
    # The reference's channel mean: float32 sum in token order, then one float32 division (torch.sum
    # would sum in another order and round differently).
    acc = torch.zeros(x.shape[-1], dtype=torch.float32)
    for row in x:
        acc = acc + row
    return _div(acc, float(x.shape[0]))


def _int8_per_thread(x, groups, group_count):
    # One float32 scale per group: amax / 127, values rint(x * (127 / amax)) of the exact product
    # (float64 holds it) rounded half to even.
    amax = torch.zeros(group_count, dtype=torch.float32).scatter_reduce(
        0, groups, x.abs().amax(dim=1), reduce="amax")
    ok = amax >= 1e-30
    scale = torch.where(ok, _div(amax, 127.0), torch.zeros_like(amax))
    inv = torch.where(ok, _div(127.0, amax), torch.zeros_like(amax))
    q = torch.round(x.double() * inv[groups].unsqueeze(1).double()).clamp(-127, 127)
    return q.double(), scale[groups]


def _e4m3(x):
    # torch's own float32 -> float8_e4m3fn rounding (nearest even); clamped first, since satfinite
    # saturates where a plain cast may not.
    return x.clamp(-448.0, 448.0).to(torch.float8_e4m3fn).double()


def _rotate(x):
    """quantization.md's rotation of [n, d] rows (d a multiple of 8): three butterfly stages per block
    of 8 channels, pairs 1, 2 and 4 apart, (a, b) -> (a + b, a - b), in float32."""
    n, d = x.shape
    y = x.reshape(n, d // 8, 8)
    for half in (1, 2, 4):
        y = y.reshape(n, d // 8, 8 // (2 * half), 2, half)
        a, b = y[..., 0, :], y[..., 1, :]
        y = torch.stack((a + b, a - b), dim=-2)
    return y.reshape(n, d)


def torch_fp8_emulation(q, k, v, is_causal, smooth_v, rotate_qk=True):
    """quantization.md written again in torch for one (batch, head) pair with per-thread groups and K
    smoothing: independent of the C++ code (torch's E4M3 cast, vectorized groups)."""
    q, k, v = (torch.from_numpy(x.astype(np.float32)) for x in (q, k, v))
    nq, d = q.shape
    nk = k.shape[0]
    tau = 1.0 / math.sqrt(d)
    rows, toks = torch.arange(nq), torch.arange(nk)
    q_groups = (rows // 128) * 32 + ((rows % 128) // 32) * 8 + rows % 8
    k_groups = (toks // 64) * 4 + (toks % 8) // 2
    k_mean = _float32_mean(k)
    # Rows are rotated before quantization; Q's scale carries the rotation's factor 1/8.
    prepared = _rotate if rotate_qk else (lambda x: x)
    qq, q_scale = _int8_per_thread(prepared(q), q_groups, int(q_groups.max()) + 1)
    kq, k_scale = _int8_per_thread(prepared(k - k_mean), k_groups, int(k_groups.max()) + 1)
    q_factor = (q_scale * 0.125 if rotate_qk else q_scale) * torch.tensor(tau * LOG2E, dtype=torch.float32)
    x = (qq @ kq.T).float() * (q_factor.unsqueeze(1) * k_scale.unsqueeze(0))  # float32 throughout
    allowed = torch.ones(nq, nk, dtype=torch.bool)
    if is_causal:
        allowed = toks.unsqueeze(0) <= rows.unsqueeze(1) + (nk - nq)
    x = x.masked_fill(~allowed, float("-inf"))
    m = x.amax(dim=1, keepdim=True)
    seen = allowed.any(dim=1)
    m = torch.where(seen.unsqueeze(1), m, torch.zeros_like(m))
    p448 = torch.exp2(x.double() - m.double()) * 448.0
    l = p448.sum(dim=1, keepdim=True)
    p_tilde = _e4m3(p448.float())
    v_mean = _float32_mean(v) if smooth_v else torch.zeros(d, dtype=torch.float32)
    centred = v - v_mean
    amax = centred.abs().amax(dim=0)
    ok = amax >= 1e-30
    delta = torch.where(ok, _div(amax, 448.0), torch.zeros_like(amax))
    inv = torch.where(ok, _div(448.0, amax), torch.zeros_like(amax))
    vq = _e4m3(centred * inv)
    out = (p_tilde @ vq) / l * delta.double() + v_mean.double()
    lse = (m.squeeze(1).double() + torch.log2(l.squeeze(1) / 448.0)) * math.log(2.0)
    lse = lse + tau * (q.double() @ k_mean.double())
    out[~seen] = 0.0
    lse[~seen] = float("-inf")
    return out.numpy(), lse.numpy()


@pytest.mark.parametrize("smooth_v", [False, True])
@pytest.mark.parametrize("is_causal", [False, True])
@pytest.mark.parametrize("rotate_qk", [True, False])
def test_emulated_e4m3_matches_torch_rewrite(library, smooth_v, is_causal, rotate_qk):
    # Nq > Nk with causal masking leaves fully masked rows; V bias makes vbar matter.
    q, k, v = inputs(1, 2, 1, 230, 150, 64, seed=5, k_bias=4.0)
    v = (v + 2.0 * np.random.default_rng(6).standard_normal((1, 1, 1, 64))).astype(np.float16)
    out, lse = reference.attention_emulated(q, k, v, is_causal=is_causal, dtype="e4m3", smooth_v=smooth_v,
                                            rotate_qk=rotate_qk)
    for h in range(2):
        ref_out, ref_lse = torch_fp8_emulation(q[0, h], k[0, 0], v[0, 0], is_causal, smooth_v, rotate_qk)
        np.testing.assert_allclose(out[0, h], ref_out, rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(lse[0, h], ref_lse, rtol=1e-12, atol=1e-12)
    if is_causal:
        assert np.all(out[:, :, :80] == 0) and np.all(np.isneginf(lse[:, :, :80]))


def test_emulated_e4m3_accuracy_and_arguments(library):
    q, k, v = inputs(1, 2, 2, 512, 512, 128, seed=7)
    exact, _ = reference.attention_exact(q, k, v)
    fp8, _ = reference.attention_emulated(q, k, v, dtype="e4m3")
    fp16, _ = reference.attention_emulated(q, k, v, dtype="float16")
    # The C++ suite's figures (ReferenceFp8.GaussianErrorIsThatOfFp8): ~3.7e-2 for FP8, ~1.1e-2 for fp16.
    assert 1.5e-2 < rel_l1(fp8, exact) < 5e-2 and rel_l1(fp8, exact) > 2 * rel_l1(fp16, exact)
    same, _ = reference.attention_emulated(q, k, v, dtype=torch.float8_e4m3fn)
    assert np.array_equal(same, fp8)
    # V with a channel bias: smoothing V is what keeps FP8 P.V accurate there.
    v_biased = (v + 2.0 * np.random.default_rng(8).standard_normal((1, 2, 1, 128))).astype(np.float16)
    exact_b, _ = reference.attention_exact(q, k, v_biased)
    smooth, _ = reference.attention_emulated(q, k, v_biased, dtype="e4m3", smooth_v=True)
    raw, _ = reference.attention_emulated(q, k, v_biased, dtype="e4m3", smooth_v=False)
    assert rel_l1(smooth, exact_b) < 5e-3 and rel_l1(smooth, exact_b) < rel_l1(raw, exact_b)
    with pytest.raises(ValueError, match="smooth_v"):
        reference.attention_emulated(q, k, v, dtype="float16", smooth_v=True)


@pytest.mark.parametrize("dtype", ["float16", "e4m3"])
def test_emulated_mask_is_what_it_means(library, dtype):
    """A tril mask of 0 / -inf is is_causal, a zero mask is no mask, and a row the mask empties is
    zeros with LSE -inf (bit for bit: the masked scores get weight 0 in the same sums)."""
    rng = np.random.default_rng(7)
    q, k, v = (rng.standard_normal((1, 2, n, 32)).astype(np.float32) for n in (150, 150, 150))
    kw = {"dtype": dtype, "smooth_v": dtype == "e4m3"}
    causal = reference.attention_emulated(q, k, v, is_causal=True, **kw)
    tril = np.where(np.tril(np.ones((150, 150), dtype=bool)), 0.0, -np.inf).astype(np.float32)
    masked = reference.attention_emulated(q, k, v, mask=tril, **kw)
    assert np.array_equal(causal[0], masked[0]) and np.array_equal(causal[1], masked[1])
    plain = reference.attention_emulated(q, k, v, **kw)
    zero = reference.attention_emulated(q, k, v, mask=np.zeros((150, 150), dtype=np.float32), **kw)
    assert np.array_equal(plain[0], zero[0]) and np.array_equal(plain[1], zero[1])
    tril[3] = -np.inf
    out, lse = reference.attention_emulated(q, k, v, mask=tril, **kw)
    assert np.all(out[:, :, 3] == 0) and np.all(np.isneginf(lse[:, :, 3]))
    bias = rng.standard_normal((1, 2, 150, 150)).astype(np.float32)
    out, lse = reference.attention_emulated(q, k, v, mask=bias, **kw)
    exact, exact_lse = torch_reference.attention(torch.from_numpy(q), torch.from_numpy(k), torch.from_numpy(v),
                                                 attn_mask=torch.from_numpy(bias))
    assert torch_reference.rel_l1(torch.from_numpy(out), exact) < (2e-2 if dtype == "float16" else 6e-2)
    assert np.abs(lse - exact_lse.numpy()).max() < 5e-2
