"""``scaled_dot_product_attention``: torch SDPA's signature and semantics, computed by ``sageattn``
where that gives the same attention, by the original SDPA everywhere else.

A call goes to ``sageattn`` only when it means exactly the same thing there. Everything else goes to
the SDPA that was in place before (``torch.nn.functional.scaled_dot_product_attention`` unless the
patch chained onto another one), with the reason counted:

| reason              | why the call stays on SDPA                                                   |
|---------------------|------------------------------------------------------------------------------|
| ``attn_mask``       | a mask, unless ``route_masks=True``; a mask with ``is_causal`` always (SDPA refuses the pair) |
| ``dropout``         | ``dropout_p != 0`` (inference kernels)                                       |
| ``tensor_subclass`` | inputs with ``__torch_function__`` (DTensor, ...): their own SDPA rules apply |
| ``not_4d``          | SDPA also takes 3-D and 5-D+ inputs; ours are [B, H, N, D] only              |
| ``heads``           | Hq != Hkv without ``enable_gqa`` (SDPA broadcasts or raises), or Hq % Hkv != 0 |
| ``causal_top_left`` | ``is_causal`` with Nq > Nkv: SDPA aligns the mask top-left, ours bottom-right |
| ``min_seq_len``     | the user's filter: Nq or Nkv below ``min_seq_len``                           |
| ``device``, ``dtype``, ``requires_grad``, ``unsupported`` | ``supports()`` said no (CPU tensors; fp32/fp64; autograd inputs with grad mode on; anything else, e.g. head dim > 256) |
| ``predicate``       | the user's predicate returned False                                          |

Masks are routed only when asked (``patch_sdpa(route_masks=True)``): ``sageattn`` takes SDPA's
``attn_mask`` (bool or additive, broadcastable to [B, H, Nq, Nkv]), with one difference on purpose:
a query row whose keys are all masked gives zeros there, where SDPA's CUDA kernels give the mean of
V (measured, torch 2.11) or NaN. Such rows are usually padding whose outputs nobody reads, but the
patch promises SDPA's meaning by default (docs/design/masks.md).

``is_causal`` with Nq < Nkv is routed exactly: in SDPA's top-left alignment query i sees keys
j <= i, so keys from Nq on are never seen and the call equals a bottom-right causal call on the
first Nq keys (a view, no copy). SDPA's layout [B, H, N, D] is ``tensor_layout="HND"``, its
``scale`` is ``sm_scale``, and ``enable_gqa`` maps query head h to key head h // (Hq // Hkv), as
``sageattn`` does.

Everything here inspects shapes, dtypes, devices and flags only, so torch.compile traces it
(fullgraph) and the counters are updated on every call, compiled or not.
"""

import torch

from . import _validate, core
from ._supports import supports

__all__ = ["scaled_dot_product_attention", "SdpaStats", "RoutingState", "sdpa_stats"]


class SdpaStats:
    """Counters of routed and fallback calls. ``fallbacks`` maps a reason (see the module docstring)
    to a count; ``last_fallback`` is (reason, detail) of the most recent fallback."""

    def __init__(self):
        self.routed = 0
        self.fallbacks = {}
        self.last_fallback = None

    def record_fallback(self, reason, detail):
        self.fallbacks[reason] = self.fallbacks.get(reason, 0) + 1
        self.last_fallback = (reason, detail)

    @property
    def total(self):
        return self.routed + sum(self.fallbacks.values())

    def reset(self):
        self.routed = 0
        self.fallbacks = {}
        self.last_fallback = None

    def as_dict(self):
        return {"routed": self.routed, "fallbacks": dict(self.fallbacks), "total": self.total}

    def __repr__(self):
        return f"SdpaStats(routed={self.routed}, fallbacks={self.fallbacks})"


class RoutingState:
    """What ``scaled_dot_product_attention`` does now: where fallbacks go, the user's filters, and
    which counters it records into. Replaced as a whole (never mutated) so a nested patch can put
    the previous one back."""

    def __init__(self, fallback, min_seq_len=0, predicate=None, stats=None, route_masks=False):
        if isinstance(min_seq_len, bool) or not isinstance(min_seq_len, int):
            raise TypeError(f"min_seq_len must be an int, got {type(min_seq_len).__name__}")
        if min_seq_len < 0:
            raise ValueError(f"min_seq_len must be >= 0, got {min_seq_len}")
        if predicate is not None and not callable(predicate):
            raise TypeError(f"predicate must be callable or None, got {type(predicate).__name__}")
        if not isinstance(route_masks, bool):
            raise TypeError(f"route_masks must be a bool, got {type(route_masks).__name__}")
        self.route_masks = route_masks
        self.fallback = fallback
        self.min_seq_len = min_seq_len
        self.predicate = predicate
        self.stats = SdpaStats() if stats is None else stats


_state = RoutingState(torch.nn.functional.scaled_dot_product_attention)


def configure(state):
    """Installs a RoutingState and returns the previous one (used by ``sdpa_patch``)."""
    global _state
    previous, _state = _state, state
    return previous


def current_state():
    return _state


def sdpa_stats():
    """The counters the routing records into now (a fresh set per ``patch_sdpa`` / ``sdpa_patched``)."""
    return _state.stats


def _supports_failure_reason(tensors):
    """A stable counter key for a call ``supports()`` refused; the message goes in the detail."""
    if any(t.device.type != "cuda" for t in tensors):
        return "device"
    if any(t.dtype not in _validate.SUPPORTED_DTYPES for t in tensors):
        return "dtype"
    if torch.is_grad_enabled() and any(t.requires_grad for t in tensors):
        return "requires_grad"
    return "unsupported"


def _causal_keys(query, key, value, is_causal):
    """Top-left causal with fewer queries than keys: the keys from Nq on are never seen, so the
    first Nq keys under bottom-right alignment give the same attention."""
    seqlen_q = query.shape[2]
    if is_causal and seqlen_q < key.shape[2]:
        return key.narrow(2, 0, seqlen_q), value.narrow(2, 0, seqlen_q)
    return key, value


def _fallback_reason(state, query, key, value, attn_mask, dropout_p, is_causal, scale, enable_gqa):
    """None when sageattn computes this call exactly as SDPA defines it, else (reason, detail).
    The checks run in the order of the table in the module docstring."""
    if attn_mask is not None and is_causal:
        return "attn_mask", "an attention mask together with is_causal (SDPA refuses the pair)"
    if attn_mask is not None and not state.route_masks:
        return "attn_mask", "an attention mask (patch_sdpa(route_masks=True) computes masked calls with sageattn)"
    if isinstance(dropout_p, bool) or not isinstance(dropout_p, (int, float)) or dropout_p != 0:
        return "dropout", f"dropout_p={dropout_p}"
    if torch.overrides.has_torch_function((query, key, value)):
        return "tensor_subclass", f"{type(query).__name__} inputs"
    if query.dim() != 4 or key.dim() != 4 or value.dim() != 4:
        return "not_4d", f"shapes {tuple(query.shape)}, {tuple(key.shape)}, {tuple(value.shape)}"
    heads_q, heads_kv = query.shape[1], key.shape[1]
    if (heads_q % heads_kv != 0) if enable_gqa else (heads_q != heads_kv):
        return "heads", f"{heads_q} query heads, {heads_kv} key heads, enable_gqa={enable_gqa}"
    seqlen_q, seqlen_kv = query.shape[2], key.shape[2]
    if is_causal and seqlen_q > seqlen_kv:
        return "causal_top_left", f"is_causal with {seqlen_q} queries > {seqlen_kv} keys"
    if seqlen_q < state.min_seq_len or seqlen_kv < state.min_seq_len:
        return "min_seq_len", f"{seqlen_q} queries, {seqlen_kv} keys, min_seq_len={state.min_seq_len}"
    key, value = _causal_keys(query, key, value, is_causal)
    ok, why = supports(query, key, value, "HND", is_causal, scale, attn_mask=attn_mask)
    if not ok:
        return _supports_failure_reason((query, key, value)), why
    if state.predicate is not None and not state.predicate(
            query, key, value, attn_mask=attn_mask, dropout_p=dropout_p, is_causal=is_causal,
            scale=scale, enable_gqa=enable_gqa):
        return "predicate", "the predicate returned False"
    return None


def record_call(reason, detail):
    """Counts one call (reason None: routed) in the counters current when the call runs."""
    stats = _state.stats
    if reason is None:
        stats.routed += 1
    else:
        stats.record_fallback(reason, detail)


# Traced by Dynamo, the counter update would read the count as a Python int, a constant to Dynamo:
# every call would change it and force a recompile. Run at trace time instead (a "constant result"
# call): compiled code counts each call site once per compilation, eager code every call.
record_call = torch._dynamo.assume_constant_result(record_call)


def scaled_dot_product_attention(query, key, value, attn_mask=None, dropout_p=0.0, is_causal=False,
                                 *, scale=None, enable_gqa=False):
    """Drop-in for ``torch.nn.functional.scaled_dot_product_attention`` (same signature, same
    result up to the 8-bit quantization error): ``sageattn`` where it computes the same attention,
    the original SDPA otherwise (see the module docstring for the rules and counters)."""
    state = _state
    refusal = _fallback_reason(state, query, key, value, attn_mask, dropout_p, is_causal, scale,
                               enable_gqa)
    if refusal is None:
        record_call(None, "")
        key, value = _causal_keys(query, key, value, is_causal)
        if attn_mask is None:  # the call as before masks existed (tests record its exact arguments)
            return core.sageattn(query, key, value, "HND", is_causal, scale)
        return core.sageattn(query, key, value, "HND", is_causal, scale, attn_mask=attn_mask)
    record_call(*refusal)
    if enable_gqa:
        return state.fallback(query, key, value, attn_mask, dropout_p, is_causal, scale=scale,
                              enable_gqa=True)
    # Without enable_gqa the keyword is left out, so a fallback that predates it (torch < 2.5, or
    # another library's patched SDPA) still works.
    return state.fallback(query, key, value, attn_mask, dropout_p, is_causal, scale=scale)
