"""V smoothing around the 16-bit kernel (`smooth_v=True`), checked on the CPU in float64: with the
kernel replaced by exact attention, smoothing then adding the mean back must give exact attention
again (GQA head mapping, both layouts, rows that see no key staying 0)."""

import pytest
import torch

from sageattention import _smooth_v, _validate, core

import exact_reference
import torch_reference


@pytest.fixture
def exact_kernel(monkeypatch):
    """core.sageattn -> float64 attention; core.validate_call -> layout lookup only (CPU float64
    inputs would be refused by the real checks, which test_compat exercises on fake CUDA tensors)."""
    seen_v = []

    def kernel(q, k, v, *args, **kwargs):
        seen_v.append(v)
        return exact_reference.dense_nhd(q, k, v, *args, **kwargs)

    def layout_only(q, k, v, tensor_layout="HND", *args, **kwargs):
        return q.shape[-1], _validate.LAYOUT_CODES[tensor_layout.upper()], None, 0, 0, None, None

    monkeypatch.setattr(core, "sageattn", kernel)
    monkeypatch.setattr(core, "validate_call", layout_only)
    return seen_v


@pytest.mark.parametrize("layout", ["HND", "NHD"])
@pytest.mark.parametrize("heads_q, heads_kv, seqlen_q, seqlen_kv, is_causal", [
    (4, 4, 17, 17, False), (6, 2, 9, 30, True), (4, 1, 25, 10, True), (2, 2, 5, 3, False),
])
def test_smoothing_is_exact(exact_kernel, layout, heads_q, heads_kv, seqlen_q, seqlen_kv, is_causal):
    gen = torch.Generator().manual_seed(heads_q * 100 + seqlen_q)
    shape = (lambda h, n: (2, h, n, 16)) if layout == "HND" else (lambda h, n: (2, n, h, 16))
    q = torch.randn(shape(heads_q, seqlen_q), generator=gen, dtype=torch.float64)
    k = torch.randn(shape(heads_kv, seqlen_kv), generator=gen, dtype=torch.float64)
    # A strong per-(head, channel) bias on V: what smoothing removes before the kernel.
    v = torch.randn(shape(heads_kv, seqlen_kv), generator=gen, dtype=torch.float64)
    v = v + 10 * torch.randn(shape(heads_kv, 1), generator=gen, dtype=torch.float64)
    out, lse = _smooth_v.attention(q, k, v, layout, is_causal, 0.25, True, smooth_k=True,
                                   qk_quant_gran="per_thread", attn_mask=None, dropout_p=0.0)
    ref_out, ref_lse = torch_reference.attention(q, k, v, sm_scale=0.25, is_causal=is_causal, layout=layout)
    ref_out = ref_out.transpose(1, 2) if layout == "NHD" else ref_out
    # The mean and the add-back run in float32 (the real inputs are 16-bit): float32 tolerances.
    torch.testing.assert_close(out, ref_out, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(lse, ref_lse, rtol=0, atol=0)
    token_dim = 2 if layout == "HND" else 1
    smoothed = exact_kernel[-1]
    assert smoothed.mean(dim=token_dim).abs().max() < 1e-5, "the kernel must see zero-mean V"
    if is_causal and seqlen_q > seqlen_kv:
        blind = out.narrow(token_dim, 0, seqlen_q - seqlen_kv)
        assert torch.all(blind == 0), "rows that see no key must stay 0, not the V mean"


def test_without_return_lse_only_the_output_comes_back(exact_kernel):
    q = torch.randn(1, 2, 8, 16, dtype=torch.float64)
    out = _smooth_v.attention(q, q, q, "HND", False, None, False, smooth_k=True,
                              qk_quant_gran="per_thread", attn_mask=None, dropout_p=0.0)
    assert isinstance(out, torch.Tensor) and out.shape == q.shape
