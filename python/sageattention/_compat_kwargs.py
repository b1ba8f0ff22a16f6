"""The ``**kwargs`` of upstream sageattention's functions: each keyword honoured or refused.

Upstream's per-kernel functions end in ``**kwargs`` and drop whatever lands there, so a caller's
mask, causal flag or scale can vanish without a word. Real callers put two families there:

- SDPA-style ``attn_mask`` and ``dropout_p`` (ComfyUI / KJNodes pass ``attn_mask=mask``, usually
  None): checked by ``sageattn`` (None / 0 run, anything else raises NotImplementedError);
- flash-attn-style arguments, because yunchang / xDiT ring attention call the sage function with
  flash-attn's keywords (``dropout_p, softmax_scale, causal, window_size, softcap, alibi_slopes,
  return_softmax``): ``softmax_scale`` and ``causal`` are honoured as ``sm_scale`` and
  ``is_causal`` (flash-attn >= 2.1 aligns causal masks bottom-right, as we do), the others run
  only with their "feature off" value.

Any other keyword raises TypeError, as a function without ``**kwargs`` would.
"""

__all__ = ["resolve"]

_WINDOW_OFF = (-1, -1)


def _merge_scale(function_name, sm_scale, softmax_scale):
    if softmax_scale is None:
        return sm_scale
    if sm_scale is not None and sm_scale != softmax_scale:
        raise ValueError(
            f"{function_name}: sm_scale={sm_scale} and softmax_scale={softmax_scale} disagree "
            "(softmax_scale is flash-attn's name for sm_scale; pass one of them)")
    return softmax_scale


def _merge_causal(function_name, is_causal, causal):
    # is_causal defaults to False, so only a True that causal contradicts is a visible conflict.
    if is_causal and not causal:
        raise ValueError(
            f"{function_name}: is_causal=True and causal={causal} disagree (causal is flash-attn's "
            "name for is_causal; pass one of them)")
    return bool(is_causal) or causal


def _refuse_unless_off(function_name, kwargs, name, is_off, feature):
    if name in kwargs and not is_off(kwargs[name]):
        raise NotImplementedError(
            f"{function_name}: {feature} ({name}={kwargs[name]!r}) is not supported; it is never "
            "ignored silently")


def resolve(function_name, kwargs, sm_scale, is_causal):
    """Returns (sm_scale, is_causal, attn_mask, dropout_p) after folding in the keywords of
    ``kwargs`` described in the module docstring; raises for anything that cannot be honoured."""
    extra = dict(kwargs)
    attn_mask = extra.pop("attn_mask", None)
    dropout_p = extra.pop("dropout_p", 0.0)
    sm_scale = _merge_scale(function_name, sm_scale, extra.pop("softmax_scale", None))
    if "causal" in extra:
        is_causal = _merge_causal(function_name, is_causal, extra.pop("causal"))
    _refuse_unless_off(function_name, extra, "window_size",
                       lambda w: w is None or tuple(w) == _WINDOW_OFF, "sliding-window attention")
    _refuse_unless_off(function_name, extra, "softcap", lambda c: c is None or c == 0,
                       "logit soft-capping")
    _refuse_unless_off(function_name, extra, "alibi_slopes", lambda a: a is None, "ALiBi")
    _refuse_unless_off(function_name, extra, "return_softmax", lambda r: not r,
                       "returning the attention probabilities")
    for name in ("window_size", "softcap", "alibi_slopes", "return_softmax"):
        extra.pop(name, None)
    if extra:
        raise TypeError(
            f"{function_name}() got unexpected keyword argument(s) {', '.join(sorted(extra))}. "
            "Upstream sageattention accepts and drops unknown keywords; this package refuses them "
            "so that no argument is silently ignored.")
    return sm_scale, is_causal, attn_mask, dropout_p
