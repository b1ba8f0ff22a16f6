"""Route ``torch.nn.functional.scaled_dot_product_attention`` through ``sageattn``.

    stats = sageattention.patch_sdpa(min_seq_len=1024)   # every F.sdpa call from now on
    ...
    sageattention.unpatch_sdpa()

    with sageattention.sdpa_patched() as stats:          # only inside the block
        logits = model(input_ids).logits
    print(stats)   # SdpaStats(routed=48, fallbacks={'attn_mask': 2})

Calls go to ``sageattn`` only where it computes the same attention, to the SDPA that was in place
otherwise; ``sdpa_route`` has the rules and the counter keys. The patch replaces the attribute of
``torch.nn.functional``, so it reaches every caller that looks SDPA up there at call time (torch's own
modules, transformers, diffusers); code that bound the function earlier with
``from torch.nn.functional import scaled_dot_product_attention`` keeps the original.
"""

import contextlib

import torch

from . import sdpa_route

__all__ = ["patch_sdpa", "unpatch_sdpa", "sdpa_patched", "is_sdpa_patched"]


def is_sdpa_patched():
    return torch.nn.functional.scaled_dot_product_attention is sdpa_route.scaled_dot_product_attention


def patch_sdpa(*, min_seq_len=0, predicate=None, route_masks=False):
    """Makes ``torch.nn.functional.scaled_dot_product_attention`` route through ``sageattn``.

    Args:
        min_seq_len: calls with fewer queries or keys than this stay on SDPA (short sequences are
            often faster there: our call has a quantization pre-pass).
        predicate: optional ``predicate(query, key, value, *, attn_mask, dropout_p, is_causal,
            scale, enable_gqa) -> bool``, asked last for calls that could be routed; False keeps
            the call on SDPA.
        route_masks: also route calls with an ``attn_mask`` (bool or additive). Off by default:
            query rows whose keys are all masked then give zeros, where SDPA's CUDA kernels give
            the mean of V or NaN (sdpa_route's docstring).

    Returns the ``SdpaStats`` the routing records into from now on (fresh counters). Patching again
    only replaces the filters and counters; the original SDPA stays the fallback.
    """
    current = torch.nn.functional.scaled_dot_product_attention
    fallback = sdpa_route.current_state().fallback if is_sdpa_patched() else current
    state = sdpa_route.RoutingState(fallback, min_seq_len=min_seq_len, predicate=predicate, route_masks=route_masks)
    sdpa_route.configure(state)
    torch.nn.functional.scaled_dot_product_attention = sdpa_route.scaled_dot_product_attention
    return state.stats


def unpatch_sdpa():
    """Puts the original SDPA back. Returns False if it was not patched."""
    if not is_sdpa_patched():
        return False
    fallback = sdpa_route.current_state().fallback
    torch.nn.functional.scaled_dot_product_attention = fallback
    sdpa_route.configure(sdpa_route.RoutingState(fallback))
    return True


@contextlib.contextmanager
def sdpa_patched(*, min_seq_len=0, predicate=None, route_masks=False):
    """``patch_sdpa`` for the duration of a ``with`` block, which yields the block's own counters;
    afterwards SDPA, the filters and the counters are exactly as before (nesting works)."""
    previous_function = torch.nn.functional.scaled_dot_product_attention
    previous_state = sdpa_route.current_state()
    stats = patch_sdpa(min_seq_len=min_seq_len, predicate=predicate, route_masks=route_masks)
    try:
        yield stats
    finally:
        torch.nn.functional.scaled_dot_product_attention = previous_function
        sdpa_route.configure(previous_state)
