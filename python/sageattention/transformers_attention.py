"""Hugging Face transformers (5.x): ``sageattn`` as an attention implementation of its registry.

    import sageattention.transformers_attention as sage_hf
    sage_hf.register()                                   # under the name "sage"
    model = AutoModelForCausalLM.from_pretrained(name, attn_implementation="sage")

The attention function keeps transformers' SDPA contract (same arguments, output [B, N, H, D]) and
sends each call through ``sageattention.scaled_dot_product_attention``, which runs ``sageattn`` where
it computes the same attention and torch SDPA elsewhere; the calls are counted in
``sageattention.sdpa_stats()``. Masks are built as for "sdpa" (``register`` installs transformers'
SDPA mask builder under the same name): without one, transformers builds no mask at all for an
unknown implementation and padding would be ignored.
"""

from . import sdpa_patch, sdpa_route

__all__ = ["register", "sage_attention_forward", "NAME"]

NAME = "sage"

# Keywords with which transformers asks for attention features that only its own SDPA wrapper
# handles (position-bias masks, soft-capping, attention sinks): such calls are handed to it whole.
_DELEGATED_FEATURES = ("position_bias", "softcap", "s_aux")


def _delegation_reason(attention_mask, dropout, kwargs):
    if attention_mask is not None:
        return "attn_mask", "transformers built an attention mask"
    if dropout != 0:
        return "dropout", f"dropout={dropout}"
    asked = [name for name in _DELEGATED_FEATURES if kwargs.get(name) is not None]
    if asked or kwargs.get("output_attentions", False):
        return "transformers_feature", f"transformers asked for {asked or ['output_attentions']}"
    return None


def sage_attention_forward(module, query, key, value, attention_mask, dropout=0.0, scaling=None,
                           is_causal=None, **kwargs):
    """transformers' attention-function contract: query [B, Hq, Nq, D], key/value [B, Hkv, Nkv, D]
    -> (output [B, Nq, Hq, D], None). Calls with a mask, dropout or a transformers-only feature go
    to transformers' own SDPA function unchanged (it picks the fastest SDPA form for masks)."""
    delegation = _delegation_reason(attention_mask, dropout, kwargs)
    if delegation is not None:
        from transformers.integrations.sdpa_attention import sdpa_attention_forward

        if not sdpa_patch.is_sdpa_patched():  # else the patched SDPA counts the call itself
            sdpa_route.record_call(*delegation)
        return sdpa_attention_forward(module, query, key, value, attention_mask, dropout=dropout,
                                      scaling=scaling, is_causal=is_causal, **kwargs)
    if is_causal is None:
        is_causal = getattr(module, "is_causal", True)
    # As in transformers' SDPA function: a single query token (decoding) attends to every key.
    is_causal = bool(is_causal) and query.shape[2] > 1
    out = sdpa_route.scaled_dot_product_attention(query, key, value, is_causal=is_causal, scale=scaling,
                                                  enable_gqa=query.shape[1] != key.shape[1])
    return out.transpose(1, 2).contiguous(), None


def register(name=NAME):
    """Registers ``sage_attention_forward`` and the SDPA mask builder under ``name``."""
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

    AttentionInterface.register(name, sage_attention_forward)
    AttentionMaskInterface.register(name, sdpa_mask)
    return name
