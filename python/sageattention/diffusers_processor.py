"""A diffusers attention processor whose attention runs through ``sageattn``.

    from sageattention.diffusers_processor import SageAttnProcessor
    pipe.transformer.set_attn_processor(SageAttnProcessor())

It does what diffusers' ``AttnProcessor2_0`` does around the attention call (optional spatial and
group norms, the q/k/v and output projections, q/k norms, residual connection and output rescaling,
the mask preparation of ``attn.prepare_attention_mask``) and sends the attention itself through
``sageattention.scaled_dot_product_attention``: ``sageattn`` where it computes the same attention,
torch SDPA otherwise (a mask, CPU, fp32, ...), counted in ``sageattention.sdpa_stats()``. diffusers
itself is not imported: the processor only uses the attributes of the ``attn`` module it is given.
"""

from . import sdpa_route

__all__ = ["SageAttnProcessor"]


def _optional(attn, name):
    return getattr(attn, name, None)


class SageAttnProcessor:
    """Processor for diffusers' ``Attention`` modules (self- and cross-attention)."""

    def __call__(self, attn, hidden_states, encoder_hidden_states=None, attention_mask=None, temb=None):
        residual = hidden_states
        if _optional(attn, "spatial_norm") is not None:
            hidden_states = attn.spatial_norm(hidden_states, temb)
        image_shape = None
        if hidden_states.dim() == 4:  # [B, C, H, W] feature maps attend over H*W tokens
            image_shape = hidden_states.shape
            hidden_states = hidden_states.flatten(2).transpose(1, 2)
        batch, tokens, _ = hidden_states.shape if encoder_hidden_states is None else encoder_hidden_states.shape

        if attention_mask is not None:
            attention_mask = attn.prepare_attention_mask(attention_mask, tokens, batch)
            # prepare_attention_mask repeats the mask per head along the batch axis; SDPA wants heads apart.
            attention_mask = attention_mask.view(batch, attn.heads, -1, attention_mask.shape[-1])
        if _optional(attn, "group_norm") is not None:
            hidden_states = attn.group_norm(hidden_states.transpose(1, 2)).transpose(1, 2)

        query = attn.to_q(hidden_states)
        if encoder_hidden_states is None:
            encoder_hidden_states = hidden_states
        elif getattr(attn, "norm_cross", False):
            encoder_hidden_states = attn.norm_encoder_hidden_states(encoder_hidden_states)
        key = attn.to_k(encoder_hidden_states)
        value = attn.to_v(encoder_hidden_states)

        head_dim = key.shape[-1] // attn.heads
        query, key, value = (t.view(batch, -1, attn.heads, head_dim).transpose(1, 2) for t in (query, key, value))
        if _optional(attn, "norm_q") is not None:
            query = attn.norm_q(query)
        if _optional(attn, "norm_k") is not None:
            key = attn.norm_k(key)

        hidden_states = sdpa_route.scaled_dot_product_attention(query, key, value, attn_mask=attention_mask)
        hidden_states = hidden_states.transpose(1, 2).reshape(batch, -1, attn.heads * head_dim)
        hidden_states = hidden_states.to(query.dtype)

        hidden_states = attn.to_out[0](hidden_states)  # projection
        hidden_states = attn.to_out[1](hidden_states)  # dropout
        if image_shape is not None:
            hidden_states = hidden_states.transpose(-1, -2).reshape(image_shape)
        if getattr(attn, "residual_connection", False):
            hidden_states = hidden_states + residual
        return hidden_states / getattr(attn, "rescale_output_factor", 1.0)
