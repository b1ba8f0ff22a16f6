"""The transformers attention function's own decisions (CPU): what it sends to SDPA routing and what
it hands to transformers' SDPA function whole."""

import types

import pytest
import torch

import sageattention
from sageattention import sdpa_route, transformers_attention

pytest.importorskip("transformers")


@pytest.fixture
def routed(monkeypatch):
    calls = []

    def record(query, key, value, **kwargs):
        calls.append(kwargs)
        return query.new_zeros(query.shape[0], query.shape[1], query.shape[2], value.shape[-1])

    monkeypatch.setattr(sdpa_route, "scaled_dot_product_attention", record)
    return calls


@pytest.fixture
def delegated(monkeypatch):
    from transformers.integrations import sdpa_attention

    calls = []
    monkeypatch.setattr(sdpa_attention, "sdpa_attention_forward",
                        lambda module, q, k, v, mask, **kwargs: calls.append((mask, kwargs)) or ("sdpa", None))
    return calls


def qkv(q_len=7, kv_len=7):
    return torch.zeros(2, 4, q_len, 64), torch.zeros(2, 2, kv_len, 64), torch.zeros(2, 2, kv_len, 64)


@pytest.mark.parametrize("module_causal, is_causal, q_len, expected", [
    (True, None, 7, True), (False, None, 7, False), (True, False, 7, False), (True, None, 1, False),
])
def test_causal_flag_and_gqa_follow_transformers_sdpa(routed, delegated, module_causal, is_causal, q_len, expected):
    module = types.SimpleNamespace(is_causal=module_causal)
    out, weights = transformers_attention.sage_attention_forward(
        module, *qkv(q_len), None, scaling=0.2, is_causal=is_causal, position_ids=None)
    assert out.shape == (2, q_len, 4, 64) and weights is None and not delegated
    assert routed == [{"is_causal": expected, "scale": 0.2, "enable_gqa": True}]


@pytest.mark.parametrize("extra, reason", [
    ({"attention_mask": torch.ones(2, 1, 7, 7, dtype=torch.bool)}, "attn_mask"),
    ({"dropout": 0.1}, "dropout"),
    ({"position_bias": torch.zeros(1, 4, 7, 7)}, "transformers_feature"),
    ({"softcap": 50.0}, "transformers_feature"),
    ({"output_attentions": True}, "transformers_feature"),
])
def test_features_only_transformers_handles_are_delegated_whole(routed, delegated, extra, reason):
    mask = extra.pop("attention_mask", None)
    stats = sageattention.sdpa_stats()
    stats.reset()
    out = transformers_attention.sage_attention_forward(types.SimpleNamespace(is_causal=True), *qkv(), mask, **extra)
    assert out == ("sdpa", None) and not routed and len(delegated) == 1
    assert delegated[0][0] is mask
    assert stats.fallbacks == {reason: 1}


def test_register_installs_function_and_mask_builder():
    from transformers import AttentionInterface
    from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS, sdpa_mask

    name = transformers_attention.register("sage_test")
    assert AttentionInterface._global_mapping[name] is transformers_attention.sage_attention_forward
    assert ALL_MASK_ATTENTION_FUNCTIONS._global_mapping[name] is sdpa_mask


def test_a_patched_sdpa_counts_delegated_calls_itself(routed, delegated):
    # transformers' SDPA function calls torch SDPA, which the patch counts: not counted twice.
    with sageattention.sdpa_patched() as stats:
        transformers_attention.sage_attention_forward(types.SimpleNamespace(is_causal=True), *qkv(),
                                                      torch.ones(2, 1, 7, 7, dtype=torch.bool))
    assert len(delegated) == 1 and stats.total == 0
