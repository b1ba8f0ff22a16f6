"""``sageattn_varlen``: attention over a batch of sequences of different lengths packed along the
token axis (the flash-attn varlen convention), with upstream sageattention 2.x's signature.

Interim implementation (docs/design/varlen.md has the plan for the kernel path): the kernels have
no varlen path yet, so the call reads the cumulative lengths on the host (one device-to-host copy
when they are CUDA tensors) and runs one dense
``sageattn`` call per sequence. It is exact (each sequence is its own attention problem, with its
own K smoothing and bottom-right causal mask), but it launches per sequence and therefore:

- cannot run during CUDA graph capture (raises RuntimeError; lengths read on the host would be
  frozen into the graph);
- graph-breaks under torch.compile at the host copy; ``attend_packed`` (the loop over host
  lengths) traces without breaks, specialized to the lengths it sees.

A kernel path with device-side lengths will replace ``attend_packed`` behind the same signature.
"""

import operator

import torch

from . import _compat_kwargs, _validate, core

__all__ = ["sageattn_varlen", "attend_packed", "host_boundaries"]

_NAME = "sageattn_varlen"


def _check_packed(q, k, v):
    for name, t in (("q", q), ("k", k), ("v", v)):
        if not isinstance(t, torch.Tensor):
            raise TypeError(f"{_NAME}: {name} must be a torch.Tensor, got {type(t).__name__}")
        if t.dim() != 3:
            raise ValueError(
                f"{_NAME}: {name} must be 3-D [total_tokens, heads, head_dim], got shape {tuple(t.shape)}")
    # The packed tensors are one NHD batch of one: the dense checks cover dtype, device, heads, dims.
    core.validate_call(q.unsqueeze(0), k.unsqueeze(0), v.unsqueeze(0), "NHD")


def _check_cu_seqlens(name, cu, device):
    if not isinstance(cu, torch.Tensor):
        raise TypeError(f"{_NAME}: {name} must be a torch.Tensor, got {type(cu).__name__}")
    if cu.dtype != torch.int32:
        raise ValueError(f"{_NAME}: {name} must be torch.int32 (flash-attn's convention), got {cu.dtype}; "
                         "cast it with .int()")
    if cu.dim() != 1 or cu.shape[0] < 2:
        raise ValueError(f"{_NAME}: {name} must be 1-D [batch + 1] with batch >= 1, got shape {tuple(cu.shape)}")
    if cu.device.type != "cpu" and cu.device != device:
        raise ValueError(f"{_NAME}: {name} is on {cu.device}; it must be on the device of q ({device}) or on the CPU")


def _check_max_seqlen(name, value):
    if isinstance(value, (bool, torch.Tensor)):
        raise TypeError(f"{_NAME}: {name} must be a Python int, got {type(value).__name__}")
    try:
        return operator.index(value)
    except TypeError:
        raise TypeError(f"{_NAME}: {name} must be a Python int, got {type(value).__name__}") from None


def _check_boundaries(name, bounds, total, max_name, max_seqlen):
    if bounds[0] != 0:
        raise ValueError(f"{_NAME}: {name}[0] must be 0, got {bounds[0]}")
    lengths = [b - a for a, b in zip(bounds, bounds[1:])]
    if min(lengths) < 0:
        raise ValueError(f"{_NAME}: {name} must be non-decreasing, got {bounds}")
    if bounds[-1] != total:
        raise ValueError(f"{_NAME}: {name}[-1] ({bounds[-1]}) must equal the number of packed tokens ({total})")
    if max(lengths) > max_seqlen:
        raise ValueError(f"{_NAME}: {max_name} ({max_seqlen}) is below the longest sequence ({max(lengths)})")


def host_boundaries(cu_seqlens_q, cu_seqlens_k):
    """The cumulative lengths as Python lists: one device-to-host copy for CUDA tensors (a
    synchronization), none for CPU tensors. Refuses to run while a CUDA graph is being captured."""
    on_cuda = cu_seqlens_q.device.type == "cuda" or cu_seqlens_k.device.type == "cuda"
    if torch.cuda.is_available() and torch.cuda.is_current_stream_capturing():
        raise RuntimeError(
            f"{_NAME} cannot be captured in a CUDA graph: the interim implementation reads the "
            "sequence lengths on the host and launches one kernel per sequence, so a captured graph "
            "would replay the lengths of the capture. Capture sageattn on padded batches instead.")
    if on_cuda and cu_seqlens_q.shape == cu_seqlens_k.shape:
        both = torch.stack((cu_seqlens_q, cu_seqlens_k.to(cu_seqlens_q.device))).tolist()
        return both[0], both[1]
    return cu_seqlens_q.tolist(), cu_seqlens_k.tolist()


def attend_packed(q, k, v, bounds_q, bounds_k, is_causal=False, sm_scale=None, smooth_k=True):
    """The dense loop behind ``sageattn_varlen`` for host boundaries (lists of ints). Sequences
    with no queries are skipped; queries with no keys output zeros (as rows that see no key do)."""
    pieces = []
    for i in range(len(bounds_q) - 1):
        q0, q1, k0, k1 = bounds_q[i], bounds_q[i + 1], bounds_k[i], bounds_k[i + 1]
        if q1 == q0:
            continue
        if k1 == k0:
            pieces.append(q.new_zeros((q1 - q0, q.shape[1], v.shape[2])))
            continue
        out = core.sageattn(q.narrow(0, q0, q1 - q0).unsqueeze(0), k.narrow(0, k0, k1 - k0).unsqueeze(0),
                            v.narrow(0, k0, k1 - k0).unsqueeze(0), "NHD", is_causal, sm_scale,
                            smooth_k=smooth_k)
        pieces.append(out.squeeze(0))
    return torch.cat(pieces) if len(pieces) > 1 else pieces[0]


def sageattn_varlen(q, k, v, cu_seqlens_q, cu_seqlens_k, max_seqlen_q, max_seqlen_k, is_causal=False,
                    sm_scale=None, smooth_k=True, **kwargs):
    """Attention over packed variable-length sequences.

    Args:
        q: [total_q, Hq, D]; k, v: [total_k, Hkv, D]; fp16/bf16 CUDA, Hq % Hkv == 0 (GQA/MQA).
        cu_seqlens_q, cu_seqlens_k: int32 [batch + 1], 0 first, non-decreasing, last = total_q /
            total_k; sequence i is q[cu_q[i]:cu_q[i+1]] against k, v[cu_k[i]:cu_k[i+1]]. Zero-length
            sequences are allowed (no queries: nothing; no keys: zero output rows). On q's device or
            on the CPU (CPU tensors avoid the synchronizing copy).
        max_seqlen_q, max_seqlen_k: Python ints, upper bounds of the lengths (checked).
        is_causal: bottom-right aligned per sequence (query i of a sequence sees its keys
            j <= i + len_k - len_q).
        sm_scale: softmax scale, default 1/sqrt(D). smooth_k: K smoothing per sequence (exact).
        **kwargs: ``tensor_layout="NHD"`` (the packed layout; callers pass it) and the keywords of
            _compat_kwargs (attn_mask=None only, dropout_p=0, flash-attn's softmax_scale / causal, ...);
            anything else raises TypeError.

    Returns [total_q, Hq, D] in q's dtype. Upstream smooths K with one mean over the whole packed
    batch; per sequence is equally exact for the output.
    """
    extra = dict(kwargs)
    layout = extra.pop("tensor_layout", "NHD")
    if layout != "NHD":
        raise ValueError(f'{_NAME}: packed inputs [total_tokens, heads, head_dim] are "NHD"; got tensor_layout={layout!r}')
    sm_scale, is_causal, attn_mask, dropout_p = _compat_kwargs.resolve(_NAME, extra, sm_scale, is_causal)
    if attn_mask is not None:
        raise NotImplementedError(f"{_NAME} does not support attn_mask yet (it is never ignored silently); "
                                  "use is_causal, or sageattn on padded batches with attn_mask")
    _validate.check_scalars("NHD", is_causal, sm_scale, False, smooth_k, "per_thread", attn_mask,
                            dropout_p, "auto")
    _check_packed(q, k, v)
    _check_cu_seqlens("cu_seqlens_q", cu_seqlens_q, q.device)
    _check_cu_seqlens("cu_seqlens_k", cu_seqlens_k, q.device)
    if cu_seqlens_q.shape != cu_seqlens_k.shape:
        raise ValueError(f"{_NAME}: cu_seqlens_q and cu_seqlens_k must have the same length, got "
                         f"{cu_seqlens_q.shape[0]} and {cu_seqlens_k.shape[0]}")
    max_q = _check_max_seqlen("max_seqlen_q", max_seqlen_q)
    max_k = _check_max_seqlen("max_seqlen_k", max_seqlen_k)
    bounds_q, bounds_k = host_boundaries(cu_seqlens_q, cu_seqlens_k)
    _check_boundaries("cu_seqlens_q", bounds_q, q.shape[0], "max_seqlen_q", max_q)
    _check_boundaries("cu_seqlens_k", bounds_k, k.shape[0], "max_seqlen_k", max_k)
    return attend_packed(q, k, v, bounds_q, bounds_k, is_causal, sm_scale, smooth_k)
