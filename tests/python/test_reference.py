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
