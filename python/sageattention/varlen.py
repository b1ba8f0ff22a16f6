"""``sageattn_varlen``: attention over a batch of sequences of different lengths packed along the
token axis (the flash-attn varlen convention), with upstream sageattention 2.x's signature.

The kernels run the packed batch in one call (docs/design/varlen.md): every kernel reads the
sequence boundaries from the device ``cu_seqlens``, and each sequence is its own attention
problem (its own K and V smoothing and quantization scales, causal bottom-right within it), so one
sequence never changes another's result. Nothing is read back to the host: with CUDA
``cu_seqlens`` the call is capturable in a CUDA graph and traces into one operator
(``sageattention::varlen_forward``) under torch.compile.

``attend_packed`` (one dense ``sageattn`` per sequence, from host boundaries) is the reference the
tests and ``scripts/bench_varlen.py`` compare the kernel path with.
"""

import math
import operator

import torch

from . import _compat_kwargs, _validate, core, ops

__all__ = ["sageattn_varlen", "attend_packed"]

_NAME = "sageattn_varlen"


def _check_packed(q, k, v):
    for name, t in (("q", q), ("k", k), ("v", v)):
        if not isinstance(t, torch.Tensor):
            raise TypeError(f"{_NAME}: {name} must be a torch.Tensor, got {type(t).__name__}")
        if t.dim() != 3:
            raise ValueError(
                f"{_NAME}: {name} must be 3-D [total_tokens, heads, head_dim], got shape {tuple(t.shape)}")
    # The packed tensors are one NHD batch of one: the dense checks cover dtype, device, heads, dims
    # (but packed calls may have no tokens at all).
    head_dim = _validate.check_tensor_shapes(q.unsqueeze(0), k.unsqueeze(0), v.unsqueeze(0), _validate.LAYOUT_NHD,
                                             allow_empty_tokens=True)
    _validate.check_tensor_devices(q, k, v)
    return head_dim


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
        value = operator.index(value)
    except TypeError:
        raise TypeError(f"{_NAME}: {name} must be a Python int, got {type(value).__name__}") from None
    if value < 0:
        raise ValueError(f"{_NAME}: {name} must be >= 0, got {value}")
    return value


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


def _on_device(name, cu, device):
    """CPU boundaries (checked on the host already) copied to q's device. A copy from host memory
    cannot be part of a CUDA graph, so it is refused while one is being captured."""
    if cu.device.type != "cpu":
        return cu
    if torch.cuda.is_available() and torch.cuda.is_current_stream_capturing():
        raise RuntimeError(f"{_NAME}: {name} is a CPU tensor, which cannot be copied to the GPU inside CUDA "
                           "graph capture; pass it on q's device")
    return cu.to(device)


def attend_packed(q, k, v, bounds_q, bounds_k, is_causal=False, sm_scale=None, smooth_k=True, kernel="auto"):
    """One dense ``sageattn`` per sequence, for host boundaries (lists of ints): the reference of
    the kernel path. Sequences with no queries are skipped; queries with no keys output zeros (as
    rows that see no key do)."""
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
                            smooth_k=smooth_k, kernel=kernel)
        pieces.append(out.squeeze(0))
    return torch.cat(pieces) if len(pieces) > 1 else pieces[0]


def sageattn_varlen(q, k, v, cu_seqlens_q, cu_seqlens_k, max_seqlen_q, max_seqlen_k, is_causal=False,
                    sm_scale=None, smooth_k=True, *, return_lse=False, kernel="auto", rotate_qk=True, **kwargs):
    """Attention over packed variable-length sequences, in one call of the kernels.

    Args:
        q: [total_q, Hq, D]; k, v: [total_k, Hkv, D]; fp16/bf16 CUDA, Hq % Hkv == 0 (GQA/MQA).
        cu_seqlens_q, cu_seqlens_k: int32 [batch + 1], 0 first, non-decreasing, last = total_q /
            total_k; sequence i is q[cu_q[i]:cu_q[i+1]] against k, v[cu_k[i]:cu_k[i+1]]. Zero-length
            sequences are allowed (no queries: nothing; no keys: zero output rows, LSE -inf).
            On q's device (nothing is read back: no synchronization, capturable in CUDA graphs; the
            contents are trusted as in flash-attn, and wrong ones give wrong output, never an
            out-of-bounds access) or on the CPU (checked, then copied to the device).
        max_seqlen_q, max_seqlen_k: Python ints, upper bounds of the lengths (checked against CPU
            boundaries; CUDA ones are trusted: a longer sequence is cut to the bound).
        is_causal: bottom-right aligned per sequence (query i of a sequence sees its keys
            j <= i + len_k - len_q).
        sm_scale: softmax scale, default 1/sqrt(D). smooth_k: K smoothing per sequence (exact).
        return_lse: also return the LSE, float32 [Hq, total_q] (flash-attn's varlen layout), with
            sageattn's convention (natural log, smoothing undone, -inf for rows that see no key).
        kernel, rotate_qk: as in sageattn.
        **kwargs: ``tensor_layout="NHD"`` (the packed layout; callers pass it) and the keywords of
            _compat_kwargs (attn_mask=None only, dropout_p=0, flash-attn's softmax_scale / causal, ...);
            anything else raises TypeError.

    Returns [total_q, Hq, D] in q's dtype, or (out, lse) when return_lse. Upstream smooths K with
    one mean over the whole packed batch; per sequence is equally exact for the output.
    """
    extra = dict(kwargs)
    layout = extra.pop("tensor_layout", "NHD")
    if layout != "NHD":
        raise ValueError(f'{_NAME}: packed inputs [total_tokens, heads, head_dim] are "NHD"; got tensor_layout={layout!r}')
    sm_scale, is_causal, attn_mask, dropout_p = _compat_kwargs.resolve(_NAME, extra, sm_scale, is_causal)
    if attn_mask is not None:
        raise NotImplementedError(f"{_NAME} does not support attn_mask yet (it is never ignored silently); "
                                  "use is_causal, or sageattn on padded batches with attn_mask")
    _, sm_scale_checked, granularity, kernel_code = _validate.check_scalars(
        "NHD", is_causal, sm_scale, return_lse, smooth_k, "per_thread", attn_mask, dropout_p, kernel)
    _validate.check_flag("rotate_qk", rotate_qk)
    head_dim = _check_packed(q, k, v)
    _check_cu_seqlens("cu_seqlens_q", cu_seqlens_q, q.device)
    _check_cu_seqlens("cu_seqlens_k", cu_seqlens_k, q.device)
    if cu_seqlens_q.shape != cu_seqlens_k.shape:
        raise ValueError(f"{_NAME}: cu_seqlens_q and cu_seqlens_k must have the same length, got "
                         f"{cu_seqlens_q.shape[0]} and {cu_seqlens_k.shape[0]}")
    max_q = _check_max_seqlen("max_seqlen_q", max_seqlen_q)
    max_k = _check_max_seqlen("max_seqlen_k", max_seqlen_k)
    if cu_seqlens_q.device.type == "cpu":
        _check_boundaries("cu_seqlens_q", cu_seqlens_q.tolist(), q.shape[0], "max_seqlen_q", max_q)
    if cu_seqlens_k.device.type == "cpu":
        _check_boundaries("cu_seqlens_k", cu_seqlens_k.tolist(), k.shape[0], "max_seqlen_k", max_k)
    if q.shape[0] > 0 and max_q == 0:
        raise ValueError(f"{_NAME}: max_seqlen_q is 0 but q has {q.shape[0]} tokens")
    if sm_scale_checked is None:
        sm_scale_checked = 1.0 / math.sqrt(head_dim)  # as sageattn computes it

    if q.shape[0] == 0 or k.shape[0] == 0 or max_k == 0:
        # Nothing to compute: no queries, or no query sees a key (zeros, LSE -inf).
        out = q.new_zeros(q.shape[:2] + (v.shape[2],))
        lse = torch.full((q.shape[1], q.shape[0]), float("-inf"), dtype=torch.float32, device=q.device)
        return (out, lse) if return_lse else out

    align = _validate.ALIGN_ELEMENTS
    padded_head_dim = (head_dim + align - 1) // align * align
    q_in, k_in, v_in = (_validate.canonicalize(t.unsqueeze(0), padded_head_dim).squeeze(0) for t in (q, k, v))
    cu_q = _on_device("cu_seqlens_q", cu_seqlens_q, q.device)
    cu_k = _on_device("cu_seqlens_k", cu_seqlens_k, q.device)
    eager = (ops.eager_fast_path_ok(q_in, k_in, v_in) and type(cu_q) is torch.Tensor
             and type(cu_k) is torch.Tensor)
    run = ops.call_varlen_eager if eager else ops.varlen_forward
    out, lse = run(q_in, k_in, v_in, cu_q, cu_k, max_q, max_k, bool(is_causal), float(sm_scale_checked),
                   bool(return_lse), bool(smooth_k), granularity, kernel_code, True, bool(rotate_qk))
    if padded_head_dim != head_dim:
        out = out.narrow(2, 0, head_dim).clone(memory_format=torch.contiguous_format)
    return (out, lse) if return_lse else out
